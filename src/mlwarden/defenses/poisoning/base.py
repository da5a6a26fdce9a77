"""The poisoned-data detector contract and what every detector returns.

A :class:`PoisonDetector` is constructed with keyword-only hyperparameters (stored only) and
``detect(features, labels)`` returns :class:`SampleFlags`: one score per sample, the flagged
ones, and why. Representation detectors are registered in :data:`POISON_DETECTORS` by name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from mlwarden.errors import DataError
from mlwarden.params import KeywordParams
from mlwarden.registry import Registry

__all__ = [
    "POISON_DETECTORS",
    "PoisonDetector",
    "SampleFlags",
    "check_features",
    "precision_recall",
]


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


def check_features(features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``features`` as ``(n, d)`` float64 and ``labels`` as an array, one label per row.

    Raises
    ------
    DataError
        ``features`` is not 2-D or does not have one row per label.
    """
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    if features.ndim != 2 or len(features) != len(labels):
        raise DataError(
            f"features must be (n, d) with one label each, got {features.shape} and {labels.shape}"
        )
    return features, labels


class PoisonDetector(KeywordParams, ABC):
    """Base class of the detectors that read a model's hidden representations of the data.

    Subclasses set :attr:`name`, take keyword-only hyperparameters in ``__init__`` (stored
    only, read back by ``get_params``) and implement :meth:`detect`.
    """

    name: ClassVar[str]

    @abstractmethod
    def detect(self, features: np.ndarray, labels: np.ndarray) -> SampleFlags:
        """Score every sample of ``(n, d)`` ``features`` with training ``labels``; flag some."""


POISON_DETECTORS: Registry[type[PoisonDetector]] = Registry("poison detector")
"""Representation-based poisoned-data detectors by name."""
