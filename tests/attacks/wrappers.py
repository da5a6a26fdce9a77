"""Classifier wrappers the attack tests share: counting queries, hiding scores."""

from __future__ import annotations

import numpy as np

from mlwarden.models import Classifier
from mlwarden.models.base import GradientFreeView


class CountingClassifier(GradientFreeView):
    """Delegates to ``inner`` (scores only, no gradients) and counts the inputs it scores."""

    def __init__(self, inner: Classifier) -> None:
        super().__init__(inner)
        self.inputs_scored = 0

    def _predict_proba_batch(self, x: np.ndarray) -> np.ndarray:
        self.inputs_scored += len(x)
        return super()._predict_proba_batch(x)
