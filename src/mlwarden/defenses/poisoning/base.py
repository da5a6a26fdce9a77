"""What every poisoned-data detector returns: one score per sample, the flagged ones, and why."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["SampleFlags", "precision_recall"]


@dataclass(frozen=True)
class SampleFlags:
    """The verdict of one detector over a training set.

    Attributes
    ----------
    detector
        Its name (``spectral-signatures``, ``activation-clustering``, ``label-errors`` ...).
    scores
        ``(n,)`` suspicion scores, higher is more suspicious (NaN where not scored).
    flagged
        ``(n,)`` booleans: the samples the detector would remove.
    reason
        One sentence saying why a flagged sample is flagged.
    details
        Detector-specific figures (per-class statistics), JSON values.
    """

    detector: str
    scores: np.ndarray
    flagged: np.ndarray
    reason: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def indices(self) -> np.ndarray:
        """Sorted indices of the flagged samples."""
        return np.flatnonzero(self.flagged)


def precision_recall(flagged: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Precision and recall of boolean ``flagged`` against boolean ``truth`` (same length).

    Precision is 0 when nothing is flagged and recall is 0 when nothing is poisoned (the
    ``zero_division=0`` convention of scikit-learn).
    """
    flagged = np.asarray(flagged, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    if flagged.shape != truth.shape:
        raise ValueError(f"flagged {flagged.shape} and truth {truth.shape} differ in shape")
    hits = int(np.sum(flagged & truth))
    n_flagged, n_true = int(flagged.sum()), int(truth.sum())
    return (hits / n_flagged if n_flagged else 0.0, hits / n_true if n_true else 0.0)
