"""Dataset statistics that need no model: outliers, duplicates and likely label errors.

* :func:`feature_outliers`: per class, the squared Mahalanobis distance of each sample to its
  class mean under a Ledoit–Wolf shrunk covariance (Ledoit and Wolf, 2004), turned into a
  robust z-score (median and MAD of the class's distances); samples far from their own class
  are flagged.
* :func:`find_duplicates`: exact duplicates (identical bytes) and near-duplicates (RMS
  difference at most ``near_tolerance``, as a fraction of the data's range), grouped by
  union-find; the extra copies are flagged, and every member of a group whose labels disagree.
* :func:`label_errors`: confident learning (Northcutt, Jiang and Chuang, JAIR 2021) from
  out-of-sample predicted probabilities: per-class thresholds, the confident joint, its
  calibration, and *prune by noise rate*.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from mlwarden.data.dataset import Dataset
from mlwarden.defenses.poisoning.base import SampleFlags
from mlwarden.errors import ConfigError, DataError

__all__ = [
    "confident_joint",
    "cross_val_probabilities",
    "feature_outliers",
    "find_duplicates",
    "label_errors",
    "robust_z",
]

_MAX_OUTLIER_DIMS = 50


def robust_z(values: np.ndarray, *, min_scale: float = 0.0) -> np.ndarray:
    """``(v − median) / max(1.4826 · MAD, min_scale)``; zeros when that scale is 0."""
    values = np.asarray(values, dtype=np.float64)
    median = np.median(values)
    scale = max(1.4826 * float(np.median(np.abs(values - median))), min_scale)
    if scale == 0:
        return np.zeros_like(values)
    return (values - median) / scale


def _flat(data: Dataset) -> np.ndarray:
    return data.x.reshape(len(data), -1).astype(np.float64)


def feature_outliers(data: Dataset, *, z_threshold: float = 3.5) -> SampleFlags:
    """Flag samples whose Mahalanobis distance to their class is a robust-z outlier.

    Inputs with more than 50 features are first projected on their top 50 principal
    components (computed over the whole dataset).
    """
    from sklearn.covariance import LedoitWolf

    if not z_threshold > 0:
        raise ConfigError(f"z_threshold must be > 0, got {z_threshold!r}")
    flat = _flat(data)
    if flat.shape[1] > _MAX_OUTLIER_DIMS:
        centred = flat - flat.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        flat = centred @ vt[:_MAX_OUTLIER_DIMS].T
    scores = np.zeros(len(data))
    for c in np.unique(data.y):
        members = np.flatnonzero(data.y == c)
        if len(members) < 3:
            continue
        points = flat[members]
        model = LedoitWolf().fit(points)
        scores[members] = robust_z(model.mahalanobis(points))
    return SampleFlags(
        detector="feature-outliers",
        scores=scores,
        flagged=scores > z_threshold,
        reason=f"its distance to its class's feature distribution has robust z > {z_threshold:g}",
        details={"z_threshold": z_threshold},
    )


def _union_find_groups(n: int, pairs: np.ndarray) -> np.ndarray:
    """Group id (smallest member index) of each of ``n`` items linked by ``pairs``."""
    parent = np.arange(n)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    for a, b in pairs:
        ra, rb = root(int(a)), root(int(b))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.array([root(i) for i in range(n)])


def find_duplicates(
    data: Dataset, *, near_tolerance: float = 0.01, block_size: int = 1024
) -> SampleFlags:
    """Flag exact and near-duplicate samples, and duplicates whose labels conflict.

    Parameters
    ----------
    near_tolerance
        Two samples are near-duplicates when the root-mean-square difference of their features
        is at most ``near_tolerance × (high − low)`` of the data's ``clip_range``; 0 finds
        exact duplicates only.
    block_size
        Rows compared at once (memory is ``block_size × n`` distances).

    Returns
    -------
    SampleFlags
        ``scores`` is ``1 − RMS distance to the nearest other sample / range`` (1 for an exact
        copy); ``details`` lists the groups (``exact`` and ``conflicting_labels`` per group).
    """
    import torch

    if not near_tolerance >= 0:
        raise ConfigError(f"near_tolerance must be >= 0, got {near_tolerance!r}")
    flat = _flat(data)
    n, d = flat.shape
    span = float(data.clip_range[1] - data.clip_range[0])
    points = torch.from_numpy(flat)
    nearest = np.full(n, np.inf)
    pairs: list[np.ndarray] = []
    for start in range(0, n, block_size):
        block = points[start : start + block_size]
        rms = (torch.cdist(block, points) / np.sqrt(d)).numpy()
        rows = np.arange(len(block))
        rms[rows, start + rows] = np.inf
        nearest[start : start + len(block)] = rms.min(axis=1)
        i, j = np.nonzero(rms <= near_tolerance * span)
        i = i + start
        keep = i < j
        if keep.any():
            pairs.append(np.stack([i[keep], j[keep]], axis=1))
    # exact byte equality also catches copies the floating-point distance misses
    _, inverse = np.unique(
        np.ascontiguousarray(flat).view(np.dtype((np.void, flat.dtype.itemsize * d))).ravel(),
        return_inverse=True,
    )
    order = np.argsort(inverse, kind="stable")
    same = inverse[order][1:] == inverse[order][:-1]
    pairs.append(np.stack([order[:-1][same], order[1:][same]], axis=1))
    groups = _union_find_groups(n, np.concatenate(pairs) if pairs else np.zeros((0, 2), int))
    flagged = np.zeros(n, dtype=bool)
    table: list[dict[str, Any]] = []
    for group in np.unique(groups):
        members = np.flatnonzero(groups == group)
        if len(members) < 2:
            continue
        labels = data.y[members]
        conflicting = bool(len(np.unique(labels)) > 1)
        exact = bool(np.all(flat[members] == flat[members[0]]))
        flagged[members if conflicting else members[1:]] = True
        table.append(
            {
                "indices": [int(m) for m in members],
                "labels": [int(v) for v in labels],
                "exact": exact,
                "conflicting_labels": conflicting,
            }
        )
    scores = 1.0 - np.minimum(nearest, span) / span if span > 0 else np.zeros(n)
    return SampleFlags(
        detector="duplicates",
        scores=scores,
        flagged=flagged,
        reason="an exact or near copy of another sample (all copies when their labels conflict)",
        details={"groups": table, "near_tolerance": near_tolerance},
    )


def cross_val_probabilities(
    data: Dataset,
    *,
    folds: int = 5,
    seed: int = 0,
    make_model: Callable[[], Any] | None = None,
) -> np.ndarray:
    """Out-of-sample class probabilities, ``(n, n_classes)``, by stratified k-fold.

    Parameters
    ----------
    make_model
        A factory of scikit-learn classifiers with ``predict_proba``; the default is a
        multinomial logistic regression on the flattened, standardised features.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    counts = np.bincount(data.y, minlength=data.n_classes)
    present = counts[counts > 0]
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ConfigError(f"folds must be an integer >= 2, got {folds!r}")
    if present.min() < folds:
        raise DataError(
            f"a class has only {int(present.min())} samples, fewer than folds={folds}; "
            "lower --folds or add samples"
        )
    factory = make_model or (
        lambda: make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    )
    flat = _flat(data)
    probabilities = np.zeros((len(data), data.n_classes))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in splitter.split(flat, data.y):
        model = factory().fit(flat[train], data.y[train])
        classes = np.asarray(model.classes_, dtype=np.int64)
        probabilities[np.ix_(test, classes)] = model.predict_proba(flat[test])
    return probabilities


def confident_joint(labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """The confident joint ``C[i, j]`` of Northcutt et al. (2021), uncalibrated.

    The threshold of class ``j`` is the mean predicted probability of ``j`` over the samples
    labelled ``j``. A sample labelled ``i`` is counted in ``C[i, j]`` for the ``j`` of highest
    probability among the classes whose threshold it reaches (not counted if it reaches none).
    """
    labels = np.asarray(labels)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    k = probabilities.shape[1]
    thresholds = np.array(
        [probabilities[labels == j, j].mean() if np.any(labels == j) else np.inf for j in range(k)]
    )
    above = probabilities >= thresholds[None, :]
    masked = np.where(above, probabilities, -np.inf)
    has = above.any(axis=1)
    guess = masked.argmax(axis=1)
    joint = np.zeros((k, k), dtype=np.int64)
    np.add.at(joint, (labels[has], guess[has]), 1)
    return joint


def label_errors(
    data: Dataset,
    probabilities: np.ndarray | None = None,
    *,
    folds: int = 5,
    seed: int = 0,
) -> SampleFlags:
    """Likely label errors by confident learning with *prune by noise rate*.

    The confident joint is calibrated so that each row sums to the class's size and the whole
    to ``n`` (``Q = C̃ / n``); then for every pair ``i ≠ j`` the ``round(n·Q[i, j])`` samples
    labelled ``i`` with the largest margin ``p_j − p_i`` are flagged (Northcutt, Jiang and
    Chuang, "Confident Learning: Estimating Uncertainty in Dataset Labels", JAIR 2021).

    Parameters
    ----------
    probabilities
        Out-of-sample predicted probabilities ``(n, n_classes)``; computed with
        :func:`cross_val_probabilities` when omitted.
    """
    if probabilities is None:
        probabilities = cross_val_probabilities(data, folds=folds, seed=seed)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    n, k = len(data), data.n_classes
    if probabilities.shape != (n, k):
        raise DataError(f"probabilities must have shape ({n}, {k}), got {probabilities.shape}")
    labels = data.y
    joint = confident_joint(labels, probabilities).astype(np.float64)
    class_counts = np.bincount(labels, minlength=k).astype(np.float64)
    row_sums = joint.sum(axis=1, keepdims=True)
    calibrated = np.divide(
        joint * class_counts[:, None], row_sums, out=np.zeros_like(joint), where=row_sums > 0
    )
    noise_matrix = calibrated / max(calibrated.sum(), 1.0)
    flagged = np.zeros(n, dtype=bool)
    margin_of = np.zeros(n)
    for i in range(k):
        members = np.flatnonzero(labels == i)
        for j in range(k):
            if i == j or not len(members):
                continue
            count = min(len(members), int(np.round(n * noise_matrix[i, j])))
            if count == 0:
                continue
            margins = probabilities[members, j] - probabilities[members, i]
            top = members[np.argsort(-margins, kind="stable")[:count]]
            flagged[top] = True
    given = probabilities[np.arange(n), labels]
    other = probabilities.copy()
    other[np.arange(n), labels] = -np.inf
    margin_of = other.max(axis=1) - given
    return SampleFlags(
        detector="label-errors",
        scores=margin_of,
        flagged=flagged,
        reason="its label disagrees with confident out-of-sample predictions (confident learning)",
        details={
            "estimated_noise_rate": float(1.0 - np.trace(noise_matrix)),
            "confident_joint": joint.astype(int).tolist(),
        },
    )
