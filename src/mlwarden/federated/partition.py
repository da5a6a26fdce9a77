"""Split one dataset among federated clients: IID, Dirichlet label skew, or K classes per client.

A partition spec is a string, as ``mlwarden fl train --partition`` takes it:

* ``iid``: a seeded shuffle cut into near-equal parts (every client sees every class in the
  population's proportions);
* ``dirichlet:ALPHA``: for each class, the share each client gets is drawn from
  ``Dirichlet(ALPHA, ..., ALPHA)`` (Hsu, Qi and Brown, 2019, "Measuring the Effects of
  Non-Identical Data Distribution for Federated Visual Classification"): small ALPHA (0.1) gives
  clients few classes each, large ALPHA (100) approaches IID;
* ``by-class:K``: every client holds exactly K classes (McMahan et al., 2017, "Communication-
  Efficient Learning of Deep Networks from Decentralized Data", the pathological non-IID split):
  classes are dealt round-robin from a seeded shuffle, and a class's samples are cut evenly among
  the clients holding it.

Every partition is disjoint and covers every sample of the data it splits (``by-class`` covers
the classes it deals; with ``n_clients * K`` below the number of classes it is refused).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from mlwarden.data.dataset import Dataset
from mlwarden.errors import ConfigError

__all__ = ["PARTITION_KINDS", "Partition", "parse_partition", "partition_dataset"]

PARTITION_KINDS: tuple[str, ...] = ("iid", "dirichlet:ALPHA", "by-class:K")

_MIN_SAMPLES_PER_CLIENT = 1  # a cross-device client may hold one sample
_DIRICHLET_DRAWS = 100  # redraws before giving up on a client left (almost) empty


@dataclass(frozen=True)
class Partition:
    """A parsed partition spec.

    Attributes
    ----------
    kind
        ``"iid"``, ``"dirichlet"`` or ``"by-class"``.
    alpha
        The Dirichlet concentration (``dirichlet`` only).
    classes_per_client
        K (``by-class`` only).
    """

    kind: str
    alpha: float | None = None
    classes_per_client: int | None = None

    def __str__(self) -> str:
        if self.kind == "dirichlet":
            return f"dirichlet:{self.alpha:g}"
        if self.kind == "by-class":
            return f"by-class:{self.classes_per_client}"
        return self.kind


def parse_partition(spec: str) -> Partition:
    """The :class:`Partition` ``spec`` names (``iid``, ``dirichlet:ALPHA``, ``by-class:K``).

    Raises
    ------
    ConfigError
        An unknown kind, or an ALPHA or K that is not a positive number.
    """
    text = spec.strip().lower()
    if text == "iid":
        return Partition("iid")
    match = re.fullmatch(r"dirichlet:(.+)", text)
    if match:
        try:
            alpha = float(match.group(1))
        except ValueError:
            alpha = math.nan
        if not (math.isfinite(alpha) and alpha > 0):
            raise ConfigError(
                f"--partition {spec!r}: the Dirichlet ALPHA must be a positive number "
                "(e.g. dirichlet:0.5)"
            )
        return Partition("dirichlet", alpha=alpha)
    match = re.fullmatch(r"by-class:(.+)", text)
    if match:
        if not match.group(1).isdigit() or int(match.group(1)) < 1:
            raise ConfigError(
                f"--partition {spec!r}: K must be a positive whole number of classes per "
                "client (e.g. by-class:2)"
            )
        return Partition("by-class", classes_per_client=int(match.group(1)))
    raise ConfigError(
        f"--partition {spec!r} is unknown; choose one of: {', '.join(PARTITION_KINDS)}"
    )


def partition_dataset(
    data: Dataset, partition: str | Partition, n_clients: int, *, seed: int
) -> list[Dataset]:
    """Split ``data`` among ``n_clients`` clients as ``partition`` says.

    Parameters
    ----------
    data
        The pooled training data.
    partition
        A spec (see the module docstring) or a parsed :class:`Partition`.
    n_clients
        How many clients (at least 2).
    seed
        Seed of every draw: the same seed gives the same split.

    Returns
    -------
    list of Dataset
        One dataset per client, named ``<data.name>#client<i>of<n>``, samples in their original
        order.

    Raises
    ------
    ConfigError
        Fewer than 2 clients, fewer than 2 samples per client, ``by-class`` K above the number
        of classes or dealing fewer classes than the data has, or a Dirichlet draw that keeps
        leaving a client (almost) empty.
    """
    parsed = parse_partition(partition) if isinstance(partition, str) else partition
    if not isinstance(n_clients, int) or n_clients < 2:
        raise ConfigError(f"--clients must be a whole number ≥ 2, got {n_clients!r}")
    if len(data) < _MIN_SAMPLES_PER_CLIENT * n_clients:
        raise ConfigError(
            f"{data.name} has {len(data)} samples: too few for {n_clients} clients "
            f"(at least {_MIN_SAMPLES_PER_CLIENT} each)"
        )
    rng = np.random.default_rng(seed)
    if parsed.kind == "iid":
        parts = np.array_split(rng.permutation(len(data)), n_clients)
    elif parsed.kind == "dirichlet":
        parts = _dirichlet(data.y, data.n_classes, n_clients, float(parsed.alpha or 0), rng)
    else:
        parts = _by_class(
            data.y, data.n_classes, n_clients, int(parsed.classes_per_client or 0), rng
        )
    return [
        data.subset(
            np.sort(np.asarray(idx, dtype=np.int64)), name=f"{data.name}#client{i}of{n_clients}"
        )
        for i, idx in enumerate(parts)
    ]


def _dirichlet(
    y: np.ndarray, n_classes: int, n_clients: int, alpha: float, rng: np.random.Generator
) -> list[np.ndarray]:
    by_class = [rng.permutation(np.flatnonzero(y == c)) for c in range(n_classes)]
    for _ in range(_DIRICHLET_DRAWS):
        parts: list[list[np.ndarray]] = [[] for _ in range(n_clients)]
        for members in by_class:
            if len(members) == 0:
                continue
            shares = rng.dirichlet(np.full(n_clients, alpha))
            cuts = (np.cumsum(shares)[:-1] * len(members)).astype(np.int64)
            for client, chunk in enumerate(np.split(members, cuts)):
                parts[client].append(chunk)
        merged = [np.concatenate(p) if p else np.empty(0, np.int64) for p in parts]
        if min(len(p) for p in merged) >= _MIN_SAMPLES_PER_CLIENT:
            return merged
    raise ConfigError(
        f"dirichlet:{alpha:g} left a client with fewer than {_MIN_SAMPLES_PER_CLIENT} samples in "
        f"{_DIRICHLET_DRAWS} draws; use a larger ALPHA or fewer clients"
    )


def _by_class(
    y: np.ndarray, n_classes: int, n_clients: int, k: int, rng: np.random.Generator
) -> list[np.ndarray]:
    if k > n_classes:
        raise ConfigError(f"by-class:{k} asks for more classes than the data has ({n_classes})")
    if n_clients * k < n_classes:
        raise ConfigError(
            f"by-class:{k} with {n_clients} clients deals {n_clients * k} class slots but the "
            f"data has {n_classes} classes; some would be left out: raise K or --clients"
        )
    order = rng.permutation(n_classes)
    holders: dict[int, list[int]] = {int(c): [] for c in order}
    for client in range(n_clients):
        for j in range(k):
            holders[int(order[(client * k + j) % n_classes])].append(client)
    parts: list[list[np.ndarray]] = [[] for _ in range(n_clients)]
    for cls, clients in holders.items():
        members = rng.permutation(np.flatnonzero(y == cls))
        for client, chunk in zip(clients, np.array_split(members, len(clients)), strict=True):
            parts[client].append(chunk)
    merged = [np.concatenate(p) for p in parts]
    if min(len(p) for p in merged) < _MIN_SAMPLES_PER_CLIENT:
        raise ConfigError(
            f"by-class:{k} with {n_clients} clients leaves a client with fewer than "
            f"{_MIN_SAMPLES_PER_CLIENT} samples; use fewer clients"
        )
    return merged
