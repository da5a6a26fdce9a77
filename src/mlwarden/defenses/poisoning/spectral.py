"""Spectral signatures (Tran, Li and Mądry, NeurIPS 2018).

For each class, centre the representations of its samples and take the top right singular
vector ``v`` of the centred matrix; the outlier score of a sample is its squared projection
``((r − r̄)·v)²``. A backdoor leaves a "spectral signature": the poisoned samples' mean differs
from the clean mean along a direction that dominates the class covariance, so they score
highest. The paper removes the ``1.5·ε·n_c`` highest-scoring samples of every class, ``ε``
being an upper bound on the poisoned fraction of a class.
"""

from __future__ import annotations

import numpy as np

from mlwarden.defenses.poisoning.base import PoisonDetector, SampleFlags, check_features
from mlwarden.errors import ConfigError

__all__ = ["SpectralSignatures"]


class SpectralSignatures(PoisonDetector):
    """Score samples by their squared projection on their class's top singular vector.

    Parameters
    ----------
    expected_rate
        ``ε``: the largest fraction of any class believed poisoned, in ``(0, 1)``.
    removal_factor
        Remove ``removal_factor · ε · n_c`` samples per class (1.5 in the paper).
    """

    name = "spectral-signatures"

    def __init__(self, *, expected_rate: float = 0.3, removal_factor: float = 1.5) -> None:
        self.expected_rate = expected_rate
        self.removal_factor = removal_factor

    def _validate(self) -> None:
        rate, factor = self.expected_rate, self.removal_factor
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate < 1:
            raise ConfigError(f"expected_rate must be in (0, 1), got {rate!r}")
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or factor <= 0:
            raise ConfigError(f"removal_factor must be a number > 0, got {factor!r}")

    @staticmethod
    def scores(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """``((r − r̄_c)·v_c)²`` per sample, ``v_c`` the top right singular vector of class ``c``."""
        features, labels = check_features(features, labels)
        scores = np.zeros(len(labels))
        for c in np.unique(labels):
            members = np.flatnonzero(labels == c)
            if len(members) < 2:
                continue
            centred = features[members] - features[members].mean(axis=0)
            _, _, vt = np.linalg.svd(centred, full_matrices=False)
            scores[members] = (centred @ vt[0]) ** 2
        return scores

    def detect(self, features: np.ndarray, labels: np.ndarray) -> SampleFlags:
        """Score every sample and flag the ``1.5·ε·n_c`` highest of each class."""
        self._validate()
        scores = self.scores(features, labels)
        flagged = np.zeros(len(labels), dtype=bool)
        removed: dict[str, int] = {}
        for c in np.unique(labels):
            members = np.flatnonzero(labels == c)
            count = min(
                len(members), round(self.removal_factor * self.expected_rate * len(members))
            )
            if count:
                top = members[np.argsort(-scores[members], kind="stable")[:count]]
                flagged[top] = True
            removed[str(int(c))] = count
        return SampleFlags(
            detector=self.name,
            scores=scores,
            flagged=flagged,
            reason=(
                f"among the {self.removal_factor:g}·ε={self.removal_factor * self.expected_rate:.0%}"
                " of its class with the largest projection on the class's top singular vector"
            ),
            details={"removed_per_class": removed, "expected_rate": self.expected_rate},
        )
