"""What a model-extraction attack queries: the victim interface and how answers become targets.

A victim answers a batch of inputs with *training targets* for the surrogate: a probability
vector per input (soft labels) when it returns probabilities, or a one-hot vector (hard labels)
when it returns only the top-1 label. Two victims implement the interface:
:class:`~mlwarden.attacks.extraction.local_victim.LocalVictim` (a local model behind a simulated
output policy) and :class:`~mlwarden.attacks.extraction.http_victim.HttpVictim` (a prediction API
over HTTP). Both read answers with :func:`targets_from_response`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlwarden.errors import AttackError
from mlwarden.models.base import Classifier, ModelInfo

__all__ = [
    "Answer",
    "QueryRefused",
    "Victim",
    "VictimClassifier",
    "targets_from_response",
]


class QueryRefused(Exception):
    """The victim refused further queries (quota exhausted, key blocked, budget spent)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.partial: Answer | None = None


@dataclass
class Answer:
    """The victim's answer to one batch.

    Attributes
    ----------
    targets
        Shape ``(n, n_classes)``: probability rows (soft) or one-hot rows (hard).
    hard
        Whether the rows are one-hot labels (label-only or top-1 outputs).
    alerts
        Alerts the gateway attached to the response (``[]`` for local victims).
    """

    targets: np.ndarray
    hard: bool
    alerts: list[dict[str, Any]] = field(default_factory=list)


def _normalise(values: np.ndarray) -> tuple[np.ndarray, bool]:
    """Rows rescaled to sum 1; a row that rounded to all zeros (no class reached 0.5 at 0
    decimals) says only "unsure" and becomes uniform. ``hard``: every row is one-hot."""
    n_classes = values.shape[1]
    sums = values.sum(axis=1, keepdims=True)
    out = np.where(sums > 0, values / np.where(sums > 0, sums, 1.0), 1.0 / n_classes)
    hard = bool(np.all((out == 0) | (out == 1)))
    return out.astype(np.float32), hard


def _fill_rest(kept: np.ndarray, keep: np.ndarray) -> np.ndarray:
    n_classes = kept.shape[1]
    rest = np.clip(1.0 - kept.sum(axis=1, keepdims=True), 0.0, 1.0)
    others = n_classes - keep.shape[1]
    mask = np.ones_like(kept, dtype=bool)
    mask[np.arange(len(kept))[:, None], keep] = False
    out = kept + (mask * rest / others if others else 0.0)
    sums = out.sum(axis=1, keepdims=True)
    return (out / np.where(sums > 0, sums, 1.0)).astype(np.float32)


def targets_from_response(
    outputs: dict[str, Any], n: int, n_classes: int
) -> tuple[np.ndarray, bool]:
    """Training targets from a gateway response's ``outputs`` (see ``mlwarden serve``).

    Accepts ``{"probabilities": [[...]]}``, ``{"top_k": [[{"label", "probability"}]]}`` or
    ``{"labels": [...]}``.

    Raises
    ------
    AttackError
        The outputs have none of these forms, or the wrong number of rows or classes.
    """
    if "probabilities" in outputs:
        probs = np.asarray(outputs["probabilities"], dtype=np.float64)
        if probs.shape != (n, n_classes):
            raise AttackError(
                f"the API returned probabilities of shape {probs.shape}; expected ({n}, {n_classes})"
            )
        return _normalise(np.clip(probs, 0.0, None))
    if "top_k" in outputs:
        rows = outputs["top_k"]
        if len(rows) != n or any(not row for row in rows):
            raise AttackError(f"the API returned {len(rows)} top-k rows for {n} inputs")
        k = len(rows[0])
        kept = np.zeros((n, n_classes))
        keep = np.zeros((n, k), dtype=np.int64)
        for i, row in enumerate(rows):
            for j, entry in enumerate(row[:k]):
                label = int(entry["label"])
                if not 0 <= label < n_classes:
                    raise AttackError(f"the API returned label {label} outside [0, {n_classes})")
                keep[i, j] = label
                kept[i, label] = float(entry.get("probability", 1.0))
        if k == 1:
            return np.eye(n_classes, dtype=np.float32)[keep[:, 0]], True
        return _fill_rest(kept, keep), False
    if "labels" in outputs:
        labels = np.asarray(outputs["labels"], dtype=np.int64)
        if labels.shape != (n,) or labels.min() < 0 or labels.max() >= n_classes:
            raise AttackError(f"the API returned labels {labels.tolist()[:5]}... for {n} inputs")
        return np.eye(n_classes, dtype=np.float32)[labels], True
    raise AttackError(
        f"the API response's outputs have keys {sorted(outputs)}; expected probabilities, "
        "top_k or labels"
    )


class Victim(ABC):
    """A model the attack can query, counting every query it answers."""

    input_shape: tuple[int, ...]
    n_classes: int
    clip_range: tuple[float, float]

    def __init__(self) -> None:
        self.queries = 0
        self.requests = 0
        self.alerts: list[dict[str, Any]] = []
        self.first_alert_at: int | None = None

    def query(self, x: np.ndarray) -> Answer:
        """Answer ``x``; raises :class:`QueryRefused` when the victim stops answering.

        Inputs answered before a refusal stay counted; the returned answer may cover fewer
        rows than ``x`` only through a refusal, never silently.
        """
        answer = self._query(np.asarray(x, dtype=np.float32))
        return answer

    def _count(self, n: int, alerts: list[dict[str, Any]]) -> None:
        self.queries += n
        self.requests += 1
        if alerts:
            if self.first_alert_at is None:
                self.first_alert_at = self.queries
            self.alerts.extend(alerts)

    @abstractmethod
    def _query(self, x: np.ndarray) -> Answer:
        """Answer a batch."""

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op for local victims
        """Release connections (nothing to release by default)."""

    def __enter__(self) -> Victim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def description(self) -> str:
        """What the victim is, for reports (never holds a secret)."""
        return type(self).__name__


class VictimClassifier(Classifier):
    """A :class:`Victim` (a served model) as a black-box :class:`Classifier` for evasion attacks.

    Every call is a query to the victim, counted by it; the gateway's rate limits are waited
    out as the victim does, and a refusal (quota spent, key blocked) stops the attack with an
    :class:`~mlwarden.errors.AttackError` that says how many queries were answered. When the
    victim answers with labels only (the gateway's ``label`` output mode, or top-1), rows are
    one-hot and :attr:`label_only` is true: score-based attacks (Square) have nothing to climb,
    so ``assess`` plans only decision-based ones (HopSkipJump) for it.

    Parameters
    ----------
    victim
        The model to query; its input description becomes the classifier's.
    batch_size
        Inputs per :meth:`Victim.query` call (the victim splits them into requests).
    """

    def __init__(self, victim: Victim, *, batch_size: int = 256) -> None:
        super().__init__(
            input_shape=victim.input_shape,
            n_classes=victim.n_classes,
            clip_range=victim.clip_range,
            batch_size=batch_size,
        )
        self.victim = victim
        self.info = ModelInfo(name=victim.description, format="served", path=victim.description)
        probe = np.full((1, *victim.input_shape), sum(victim.clip_range) / 2, dtype=np.float32)
        self.label_only = self._answer(probe).hard

    def _answer(self, x: np.ndarray) -> Answer:
        try:
            return self.victim.query(x)
        except QueryRefused as refused:
            raise AttackError(
                f"{self.victim.description} stopped answering after {self.victim.queries} "
                f"queries ({refused}); raise the key's quota or lower max_samples / the "
                "attacks' query budgets"
            ) from None

    def _predict_proba_batch(self, x: np.ndarray) -> np.ndarray:
        return self._answer(x).targets
