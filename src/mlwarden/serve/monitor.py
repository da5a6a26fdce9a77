"""Per-key extraction monitoring: running statistics of each API key's query stream.

The gateway calls :meth:`ExtractionMonitor.observe` once per request with the inputs and the
model's full probabilities (before the output policy is applied). The monitor keeps, for each
``(key_id, model)`` pair, bounded running state and raises an :class:`Alert` when a statistic
crosses its threshold:

``prada``
    PRADA (Juuti, Szyller, Marchal and Asokan, "PRADA: Protecting against DNN Model Stealing
    Attacks", EuroS&P 2019). For every new query the minimum L2 distance to the key's earlier
    queries *of the same predicted class* joins a distance set ``D``; the query joins the
    class's growing set only when that distance exceeds the class threshold
    ``max(T_c, mean(D_c) - std(D_c))``. Benign queries drawn from a natural distribution give
    roughly normally distributed distances; synthetic queries built by small perturbations
    (Jacobian augmentation, Papernot et al. 2017) or random noise do not. The Shapiro–Wilk
    statistic ``W`` of ``D`` below ``δ`` (``prada_delta``, the paper's detection threshold)
    after ``prada_min_queries`` distances raises the alert.
``low_margin``
    The share of recent queries whose top-1 minus top-2 probability margin is below
    ``margin_threshold``: extraction attacks seek the decision boundary (Tramèr et al. 2016).
``near_duplicate``
    The share of recent queries lying within ``duplicate_radius`` (L2, per unit of input
    dimension) of an earlier query of the same key: small variations of one input.
``out_of_distribution``
    The share of recent queries whose distance to the nearest reference (training) sample
    exceeds the 99th percentile of the reference's own leave-one-out nearest-neighbour
    distance: the stream has drifted away from the data the model serves (a distribution
    distance between the window and the reference sample). Needs ``reference``.

Each alert kind maps to an action (``throttle``, ``label_only``, ``block`` or ``none``) that
the gateway applies to the key from then on; :meth:`ExtractionMonitor.action` gives the
strongest active one.

Cost and memory. Per ``(key, model)`` pair the monitor stores at most ``window`` recent
queries, ``prada_max_per_class`` growing-set entries per class and ``prada_window`` distances
(ring buffers), so memory is bounded per key, and at most ``max_tracked`` pairs are kept
(least recently used first out). One observation costs ``O((window + reference) · d)`` for the
distance computations and, every ``prada_test_every`` queries, one Shapiro–Wilk test
``O(prada_window · log prada_window)``.

Replicas. State is per process: with several gateway replicas each one monitors the share of
a key's traffic it receives (a load balancer with key affinity keeps a key on one replica).
Alerts still reach the shared audit log. Sharing the state would mean keeping the ring buffers
in Redis (one list per key and statistic), at the price of a round trip per query.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.stats

from mlwarden.errors import ConfigError
from mlwarden.serve.restriction import LADDER, Restriction

__all__ = [
    "ACTIONS",
    "ALERT_KINDS",
    "Alert",
    "ExtractionMonitor",
    "MonitorConfig",
]

ACTIONS: tuple[str, ...] = LADDER
"""Actions from the mildest to the strongest (:mod:`mlwarden.serve.restriction`)."""
ALERT_KINDS: tuple[str, ...] = ("prada", "low_margin", "near_duplicate", "out_of_distribution")


#: Largest sample the Shapiro–Wilk approximation covers (Royston, 1995; SciPy warns beyond).
_SHAPIRO_MAX_N = 5000


#: :func:`scipy.stats.shapiro` without its ``axis``/``nan_policy`` wrapper, whose argument
#: handling cost six times the test itself on the gateway's 1-D, NaN-free distance sets
_shapiro = getattr(scipy.stats.shapiro, "__wrapped__", scipy.stats.shapiro)


def _shapiro_w(distances: np.ndarray) -> float:
    """The Shapiro–Wilk ``W`` of the distance set, from :func:`scipy.stats.shapiro`.

    A set whose distances are all equal (a key repeating one query) has no defined ``W`` (SciPy
    warns); it counts as ``1.0``, no evidence against normality, and the ``near_duplicate``
    statistic is the one that catches it.
    """
    if float(np.ptp(distances)) == 0.0:
        return 1.0
    return float(_shapiro(distances).statistic)


@dataclass(frozen=True)
class Alert:
    """One statistic of one key's query stream crossed its threshold.

    Attributes
    ----------
    kind
        One of :data:`ALERT_KINDS`.
    key_id, model
        Whose stream, against which model (the key id, never the secret).
    score, threshold
        The measured statistic and the threshold it crossed (for ``prada``: ``W`` fell below).
    message
        One sentence for the audit log.
    action
        What the gateway should do with this key from now on.
    queries
        How many queries of this key the monitor had seen when the alert fired.
    """

    kind: str
    key_id: str
    model: str
    score: float
    threshold: float
    message: str
    action: str = "none"
    queries: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view."""
        return {
            "kind": self.kind,
            "key_id": self.key_id,
            "model": self.model,
            "score": self.score,
            "threshold": self.threshold,
            "message": self.message,
            "action": self.action,
            "queries": self.queries,
        }


_DEFAULT_ACTIONS: dict[str, str] = {
    "prada": "label_only",
    "low_margin": "throttle",
    "near_duplicate": "throttle",
    "out_of_distribution": "throttle",
}


@dataclass(frozen=True)
class MonitorConfig:
    """Thresholds, windows and actions of the :class:`ExtractionMonitor`.

    Parameters
    ----------
    window
        Recent queries per key kept for the share statistics and near-duplicate search.
    min_queries
        Queries a key must have sent before share statistics can alert.
    margin_threshold
        A query is *low-margin* when top-1 minus top-2 probability is below this.
    low_margin_share
        Alert when more than this share of the window is low-margin.
    duplicate_radius
        A query is a *near duplicate* when an earlier one lies within this L2 distance divided
        by ``sqrt(d)`` (root-mean-square difference per feature).
    duplicate_share
        Alert when more than this share of the window are near duplicates.
    ood_share
        Alert when more than this share of the window lies farther from the reference sample
        than the reference's 99th-percentile nearest-neighbour distance.
    reference_size
        At most this many reference samples are kept (seeded draw).
    prada_delta
        PRADA's detection threshold δ on the Shapiro–Wilk ``W`` (Juuti et al. 2019 use
        δ = 0.95 for MNIST).
    prada_min_queries
        Distances needed before the PRADA test runs.
    prada_window
        The distance set keeps the most recent this many distances; at most 5,000, the range
        of Royston's approximation behind :func:`scipy.stats.shapiro` (Royston, 1995).
    prada_max_per_class
        Each class's growing set keeps the most recent this many queries.
    prada_test_every
        Run the Shapiro–Wilk test every this many distances.
    actions
        Alert kind to action; kinds left out take the defaults
        (``prada``: ``label_only``, the others: ``throttle``).
    enabled
        Which alert kinds may fire (default: all).
    max_tracked
        At most this many ``(key, model)`` streams are tracked (least recently used dropped).
    seed
        Seed of the reference subsample.
    """

    window: int = 256
    min_queries: int = 64
    margin_threshold: float = 0.2
    low_margin_share: float = 0.3
    duplicate_radius: float = 0.05
    duplicate_share: float = 0.3
    ood_share: float = 0.3
    reference_size: int = 512
    prada_delta: float = 0.95
    prada_min_queries: int = 100
    prada_window: int = 1000
    prada_max_per_class: int = 500
    prada_test_every: int = 10
    actions: dict[str, str] = field(default_factory=dict)
    enabled: tuple[str, ...] = ALERT_KINDS
    max_tracked: int = 10_000
    seed: int = 0

    def __post_init__(self) -> None:
        for name in (
            "window",
            "min_queries",
            "reference_size",
            "prada_window",
            "prada_max_per_class",
            "prada_test_every",
            "max_tracked",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"monitor.{name} must be a positive integer, got {value!r}")
        if self.prada_window > _SHAPIRO_MAX_N:
            raise ConfigError(
                f"monitor.prada_window must be at most {_SHAPIRO_MAX_N} (the Shapiro-Wilk "
                f"approximation's range), got {self.prada_window}"
            )
        if self.prada_min_queries < 3 or self.prada_min_queries > self.prada_window:
            raise ConfigError(
                f"monitor.prada_min_queries must be in [3, prada_window={self.prada_window}], "
                f"got {self.prada_min_queries}"
            )
        for name in (
            "margin_threshold",
            "low_margin_share",
            "duplicate_share",
            "ood_share",
            "prada_delta",
        ):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not 0 <= value <= 1
            ):
                raise ConfigError(f"monitor.{name} must be a number in [0, 1], got {value!r}")
        if not isinstance(self.duplicate_radius, (int, float)) or self.duplicate_radius < 0:
            raise ConfigError(
                f"monitor.duplicate_radius must be a number >= 0, got {self.duplicate_radius!r}"
            )
        for kind, action in self.actions.items():
            if kind not in ALERT_KINDS:
                raise ConfigError(
                    f"monitor.actions: unknown alert kind {kind!r}; choose from {list(ALERT_KINDS)}"
                )
            Restriction.parse(action, where=f"monitor.actions.{kind}")
        unknown = [k for k in self.enabled if k not in ALERT_KINDS]
        if unknown:
            raise ConfigError(
                f"monitor.enabled: unknown alert kind(s) {unknown}; choose from {list(ALERT_KINDS)}"
            )

    def action_for(self, kind: str) -> str:
        """The action configured for alert ``kind``."""
        return self.actions.get(kind, _DEFAULT_ACTIONS[kind])

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> MonitorConfig:
        """Build from a configuration mapping (YAML), naming unknown settings."""
        values = dict(values or {})
        allowed = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - allowed)
        if unknown:
            raise ConfigError(f"monitor: unknown setting(s) {unknown}; allowed: {sorted(allowed)}")
        if "enabled" in values:
            values["enabled"] = tuple(values["enabled"])
        try:
            return cls(**values)
        except TypeError as exc:
            raise ConfigError(f"monitor: {exc}") from None


class _Ring:
    """A fixed-capacity ring buffer of rows (the most recent ``capacity`` kept)."""

    __slots__ = ("capacity", "count", "data", "head")

    def __init__(self, capacity: int, width: int, dtype: type = np.float32) -> None:
        self.capacity = capacity
        shape = (capacity, width) if width else (capacity,)
        self.data: np.ndarray = np.zeros(shape, dtype=dtype)
        self.head = 0
        self.count = 0

    def append(self, row: Any) -> None:
        self.data[self.head] = row
        self.head = (self.head + 1) % self.capacity
        self.count = min(self.count + 1, self.capacity)

    def values(self) -> np.ndarray:
        """The stored rows (in storage order; order is irrelevant to every statistic here)."""
        return self.data[: self.count]


class _RowRing(_Ring):
    """A ring of input rows that keeps each row's squared norm, for nearest-row distances."""

    __slots__ = ("sq",)

    def __init__(self, capacity: int, width: int) -> None:
        super().__init__(capacity, width)
        self.sq = np.zeros(capacity, dtype=np.float32)

    def append_row(self, row: np.ndarray, row_sq: float) -> None:
        self.sq[self.head] = row_sq
        self.append(row)

    def nearest(self, row: np.ndarray, row_sq: float) -> float:
        """L2 distance from ``row`` to the nearest stored row (``inf`` when empty)."""
        if not self.count:
            return math.inf
        d2 = self.sq[: self.count] - 2.0 * (self.data[: self.count] @ row)
        return math.sqrt(max(float(d2.min()) + row_sq, 0.0))


class _FlagRing(_Ring):
    """A ring of booleans that keeps how many are true (the share without a pass over it)."""

    __slots__ = ("true",)

    def __init__(self, capacity: int) -> None:
        super().__init__(capacity, 0, np.bool_)
        self.true = 0

    def append(self, row: Any) -> None:
        flag = bool(row)
        if self.count == self.capacity:
            self.true -= bool(self.data[self.head])
        self.true += flag
        super().append(flag)

    def share(self) -> float:
        """The share of stored flags that are true (0 when empty)."""
        return self.true / self.count if self.count else 0.0


@dataclass
class _PradaClass:
    growing: _RowRing
    distances: list[float] = field(default_factory=list)  # bounded: see _record_class_distance
    threshold: float = 0.0


class _Stream:
    """Everything the monitor keeps about one ``(key, model)`` stream."""

    def __init__(self, config: MonitorConfig, dim: int) -> None:
        self.lock = threading.Lock()
        self.dim = dim
        self.queries = 0
        self.recent = _RowRing(config.window, dim)
        self.low_margin = _FlagRing(config.window)
        self.duplicate = _FlagRing(config.window)
        self.ood = _FlagRing(config.window)
        self.prada_distances = _Ring(config.prada_window, 0, np.float64)
        self.prada_seen = 0  # distances ever added (the ring's count stops at its capacity)
        self.prada_classes: dict[int, _PradaClass] = {}
        self.prada_w: float | None = None
        self.buckets: set[int] = set()
        self.alerted: dict[str, Alert] = {}


class ExtractionMonitor:
    """Watch each API key's query stream for signs of model extraction.

    Parameters
    ----------
    config
        Thresholds, windows and actions (see :class:`MonitorConfig`).
    reference
        Samples of the data the model serves (e.g. its training split), any shape with the
        batch first; enables the ``out_of_distribution`` statistic for streams whose inputs
        have the same size (other models' streams skip it). At most
        ``config.reference_size`` are kept.

    Notes
    -----
    Thread-safe: one lock guards the stream table and one lock each stream, so requests of
    different keys proceed in parallel. See the module docstring for cost, memory and replicas.
    """

    def __init__(self, config: MonitorConfig | None = None, reference: np.ndarray | None = None):
        self.config = config or MonitorConfig()
        self._streams: OrderedDict[tuple[str, str], _Stream] = OrderedDict()
        self._lock = threading.Lock()
        self._reference: np.ndarray | None = None
        self._reference_sq: np.ndarray | None = None
        self._ood_radius = math.inf
        rng = np.random.default_rng(self.config.seed)
        self._hash_planes: dict[int, np.ndarray] = {}
        self._rng = rng
        if reference is not None:
            self._set_reference(np.asarray(reference, dtype=np.float32))

    # ----------------------------------------------------------------- reference sample
    def _set_reference(self, reference: np.ndarray) -> None:
        if reference.ndim < 2 or len(reference) < 3:
            raise ConfigError(
                f"reference must be a batch of at least 3 samples, got shape {reference.shape}"
            )
        flat = reference.reshape(len(reference), -1).astype(np.float32)
        if not np.isfinite(flat).all():
            raise ConfigError("reference contains NaN or inf values; clean it first")
        if len(flat) > self.config.reference_size:
            idx = self._rng.choice(len(flat), size=self.config.reference_size, replace=False)
            flat = flat[np.sort(idx)]
        sq = np.einsum("ij,ij->i", flat, flat)
        d2 = sq[:, None] + sq[None, :] - 2.0 * flat @ flat.T
        np.fill_diagonal(d2, np.inf)
        nearest = np.sqrt(np.maximum(d2.min(axis=1), 0.0))
        self._reference = flat
        self._reference_sq = sq
        self._ood_radius = float(np.quantile(nearest, 0.99))

    def _reference_fits(self, dim: int) -> bool:
        """Whether the reference sample has this stream's input size (another model's has not)."""
        return self._reference is not None and self._reference.shape[1] == dim

    def _hash(self, flat: np.ndarray) -> int:
        planes = self._hash_planes.get(flat.shape[0])
        if planes is None:
            planes = self._rng.standard_normal((16, flat.shape[0])).astype(np.float32)
            self._hash_planes[flat.shape[0]] = planes
        bits = (planes @ flat) > 0
        return int(np.packbits(bits).view(">u2")[0])

    # ---------------------------------------------------------------------- stream table
    def _stream(self, key_id: str, model: str, dim: int) -> _Stream:
        with self._lock:
            stream = self._streams.get((key_id, model))
            if stream is None or stream.dim != dim:
                stream = _Stream(self.config, dim)
                self._streams[(key_id, model)] = stream
                while len(self._streams) > self.config.max_tracked:
                    self._streams.popitem(last=False)
            else:
                self._streams.move_to_end((key_id, model))
            return stream

    def reset(self, key_id: str, model: str | None = None) -> None:
        """Forget a key's streams (all models when ``model`` is None)."""
        with self._lock:
            for pair in [p for p in self._streams if p[0] == key_id and model in (None, p[1])]:
                del self._streams[pair]

    # ---------------------------------------------------------------------- observation
    def observe(self, key_id: str, model: str, x: np.ndarray, probs: np.ndarray) -> list[Alert]:
        """Record one request's inputs and the model's full probabilities.

        Parameters
        ----------
        key_id
            The API key's id (never the secret).
        model
            The model's name.
        x
            The request's inputs, shape ``(n, *input_shape)``.
        probs
            The model's probabilities for ``x``, shape ``(n, n_classes)``.

        Returns
        -------
        list[Alert]
            Alerts raised by this request (each kind fires once per stream; afterwards its
            action stays active, see :meth:`action`).
        """
        x = np.asarray(x, dtype=np.float32)
        probs = np.asarray(probs, dtype=np.float32)
        if probs.ndim != 2 or len(probs) != len(x):
            raise ConfigError(
                f"observe: probs must have shape (n, n_classes) with n={len(x)}, got {probs.shape}"
            )
        flat = x.reshape(len(x), -1)
        if len(flat) == 0:
            return []
        stream = self._stream(key_id, model, flat.shape[1])
        alerts: list[Alert] = []
        with stream.lock:
            for row, p in zip(flat, probs, strict=True):
                self._observe_one(stream, row, p)
                alerts.extend(self._check(stream, key_id, model))
        return alerts

    def _observe_one(self, stream: _Stream, row: np.ndarray, p: np.ndarray) -> None:
        cfg = self.config
        stream.queries += 1
        top2 = np.partition(p, -2)[-2:] if len(p) > 1 else np.array([0.0, p[0]])
        predicted = int(np.argmax(p))
        stream.low_margin.append(float(top2[1] - top2[0]) < cfg.margin_threshold)

        row_sq = float(np.dot(row, row))
        nearest = stream.recent.nearest(row, row_sq)
        stream.duplicate.append(nearest / math.sqrt(stream.dim) <= cfg.duplicate_radius)
        stream.recent.append_row(row, row_sq)

        if self._reference_fits(stream.dim):
            assert self._reference is not None and self._reference_sq is not None
            d2 = self._reference_sq + row_sq - 2.0 * self._reference @ row
            nearest = math.sqrt(max(float(d2.min()), 0.0))
            stream.ood.append(nearest > self._ood_radius)
        if len(stream.buckets) < 4 * cfg.window:
            stream.buckets.add(self._hash(row))

        self._prada(stream, row, row_sq, predicted)

    def _prada(self, stream: _Stream, row: np.ndarray, row_sq: float, predicted: int) -> None:
        cfg = self.config
        klass = stream.prada_classes.get(predicted)
        if klass is None:
            klass = _PradaClass(growing=_RowRing(cfg.prada_max_per_class, stream.dim))
            stream.prada_classes[predicted] = klass
            klass.growing.append_row(row, row_sq)
            return
        distance = klass.growing.nearest(row, row_sq)
        stream.prada_distances.append(distance)
        stream.prada_seen += 1
        klass.distances.append(distance)
        if len(klass.distances) > cfg.prada_window:
            del klass.distances[: len(klass.distances) - cfg.prada_window]
        if distance > klass.threshold:
            klass.growing.append_row(row, row_sq)
            values = np.asarray(klass.distances)
            klass.threshold = max(klass.threshold, float(values.mean() - values.std()))
        # every prada_test_every distances, counted over the whole stream: the ring's own count
        # stops at prada_window, and testing on it ran the test on every query from then on
        count = stream.prada_seen
        if count >= cfg.prada_min_queries and (count % cfg.prada_test_every == 0):
            stream.prada_w = _shapiro_w(stream.prada_distances.values())

    def _check(self, stream: _Stream, key_id: str, model: str) -> list[Alert]:
        cfg = self.config
        raised: list[Alert] = []

        def fire(kind: str, score: float, threshold: float, message: str) -> None:
            if kind in stream.alerted or kind not in cfg.enabled:
                return
            alert = Alert(
                kind=kind,
                key_id=key_id,
                model=model,
                score=float(score),
                threshold=float(threshold),
                message=message,
                action=cfg.action_for(kind),
                queries=stream.queries,
            )
            stream.alerted[kind] = alert
            raised.append(alert)

        if stream.prada_w is not None and stream.prada_w < cfg.prada_delta:
            fire(
                "prada",
                stream.prada_w,
                cfg.prada_delta,
                f"PRADA: Shapiro-Wilk W={stream.prada_w:.3f} of the inter-query distances is "
                f"below delta={cfg.prada_delta:g} after {stream.queries} queries",
            )
        if stream.queries >= cfg.min_queries:
            for kind, ring, limit, what in (
                (
                    "low_margin",
                    stream.low_margin,
                    cfg.low_margin_share,
                    "near the decision boundary",
                ),
                ("near_duplicate", stream.duplicate, cfg.duplicate_share, "near duplicates"),
                ("out_of_distribution", stream.ood, cfg.ood_share, "far from the reference data"),
            ):
                if ring.count == 0:
                    continue
                share = ring.share()
                if share > limit:
                    fire(
                        kind,
                        share,
                        limit,
                        f"{share:.0%} of the last {ring.count} queries are {what} "
                        f"(threshold {limit:.0%})",
                    )
        return raised

    # ------------------------------------------------------------------------ reading
    def action(self, key_id: str, model: str) -> str:
        """The strongest action of the alerts raised so far on this stream (``none`` if none)."""
        with self._lock:
            stream = self._streams.get((key_id, model))
        if stream is None:
            return "none"
        with stream.lock:
            actions = [a.action for a in stream.alerted.values()]
        return Restriction.strictest(actions).value

    def state(self, key_id: str, model: str) -> dict[str, Any]:
        """Current statistics of one stream, for metrics and the audit log.

        Keys: ``queries``, ``low_margin_share``, ``duplicate_share``, ``ood_share`` (None
        without a reference), ``prada_w`` (None before the first test), ``coverage_buckets``
        (distinct random-projection buckets the key's queries fell into, capped at
        ``4 * window``), ``alerts`` (kinds raised) and ``action``.
        """
        with self._lock:
            stream = self._streams.get((key_id, model))
        if stream is None:
            return {
                "queries": 0,
                "low_margin_share": 0.0,
                "duplicate_share": 0.0,
                "ood_share": None,
                "prada_w": None,
                "coverage_buckets": 0,
                "alerts": [],
                "action": "none",
            }

        def share(ring: _FlagRing) -> float:
            return ring.share()

        with stream.lock:
            actions = [a.action for a in stream.alerted.values()]
            return {
                "queries": stream.queries,
                "low_margin_share": share(stream.low_margin),
                "duplicate_share": share(stream.duplicate),
                "ood_share": share(stream.ood) if self._reference_fits(stream.dim) else None,
                "prada_w": stream.prada_w,
                "coverage_buckets": len(stream.buckets),
                "alerts": sorted(stream.alerted),
                "action": Restriction.strictest(actions).value,
            }

    def __len__(self) -> int:
        with self._lock:
            return len(self._streams)
