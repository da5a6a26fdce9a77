"""STRIP for text: a run-time check for trigger phrases by word-replacement entropy.

The text version of STRIP (Gao, Xu, Wang, Chen, Ranasinghe and Nepal, 2019; extended to text
by Gao et al. 2021, "Design and Evaluation of a Multi-Domain Trojan Detection Method on Deep
Neural Networks"): each input is perturbed ``n_perturbations`` times by replacing every word,
with probability ``replace_rate``, by a word drawn from clean texts held back at :meth:`fit`.
A clean input loses the words its class rested on and the predictions scatter (high entropy);
a triggered input keeps at least one trigger word in most perturbations and the model keeps
answering the target class (low entropy). The score is the negative mean prediction entropy
(nats), so higher is more suspicious; :meth:`calibrate` sets the threshold at a false-positive
rate on clean holdout texts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mlwarden.errors import ConfigError, DataError
from mlwarden.models.base import Classifier
from mlwarden.params import KeywordParams

__all__ = ["TextSTRIP"]


class TextSTRIP(KeywordParams):
    """Negative mean prediction entropy of an input under random word replacement.

    Parameters
    ----------
    classifier
        The protected text model (black-box is enough).
    n_perturbations
        Perturbed copies of each input.
    replace_rate
        Probability that each word is replaced.
    seed
        Seed of the word pool draws.
    """

    def __init__(
        self,
        classifier: Classifier,
        *,
        n_perturbations: int = 20,
        replace_rate: float = 0.5,
        seed: int = 0,
    ) -> None:
        self.classifier = classifier
        self.n_perturbations = n_perturbations
        self.replace_rate = replace_rate
        self.seed = seed

    def _validate(self) -> None:
        n = self.n_perturbations
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"n_perturbations must be a positive integer, got {n!r}")
        if not (isinstance(self.replace_rate, int | float) and 0 < self.replace_rate < 1):
            raise ConfigError(f"replace_rate must be in (0, 1), got {self.replace_rate!r}")

    def fit(self, clean_texts: Sequence[str] | np.ndarray) -> TextSTRIP:
        """Keep the words of ``clean_texts`` as the replacement pool."""
        self._validate()
        pool = [w for t in clean_texts for w in str(t).split()]
        if not pool:
            raise DataError("TextSTRIP.fit needs clean texts with at least one word")
        self.pool_ = np.array(pool, dtype=object)
        return self

    def score(self, texts: Sequence[str] | np.ndarray) -> np.ndarray:
        """``(n,)`` negative mean entropies (higher: more likely triggered)."""
        if not hasattr(self, "pool_"):
            raise DataError("call TextSTRIP.fit on clean texts before score")
        rng = np.random.default_rng(self.seed)
        perturbed: list[str] = []
        for text in texts:
            words = np.array(str(text).split() or [""], dtype=object)
            for _ in range(self.n_perturbations):
                swap = rng.random(len(words)) < self.replace_rate
                copy = words.copy()
                copy[swap] = self.pool_[rng.integers(len(self.pool_), size=int(swap.sum()))]
                perturbed.append(" ".join(copy))
        proba = self.classifier.predict_proba(np.array(perturbed, dtype=object))
        proba = np.clip(np.asarray(proba, dtype=np.float64), 1e-12, 1.0)
        entropy = -(proba * np.log(proba)).sum(axis=1)
        return -entropy.reshape(len(texts), self.n_perturbations).mean(axis=1)

    def calibrate(self, clean_holdout: Sequence[str] | np.ndarray, fpr: float = 0.01) -> TextSTRIP:
        """Set :attr:`threshold_` so that a fraction ``fpr`` of clean holdout texts score above."""
        if not 0 < fpr < 1:
            raise ConfigError(f"fpr must be in (0, 1), got {fpr!r}")
        self.threshold_ = float(np.quantile(self.score(clean_holdout), 1.0 - fpr))
        self.fpr_ = fpr
        return self

    def predict(self, texts: Sequence[str] | np.ndarray) -> np.ndarray:
        """Boolean per text: scored above the calibrated threshold (flagged as triggered)."""
        if not hasattr(self, "threshold_"):
            raise DataError("call TextSTRIP.calibrate before predict")
        return self.score(texts) > self.threshold_
