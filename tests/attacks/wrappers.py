"""Classifier wrappers the attack tests share: counting queries, hiding scores."""

from __future__ import annotations

import numpy as np

from mlwarden.models import Classifier


class CountingClassifier(Classifier):
    """Delegates to ``inner`` and counts the inputs it is asked to score."""

    def __init__(self, inner: Classifier) -> None:
        super().__init__(
            input_shape=inner.input_shape,
            n_classes=inner.n_classes,
            clip_range=inner.clip_range,
            batch_size=inner.batch_size,
        )
        self.inner = inner
        self.inputs_scored = 0

    def _predict_proba_batch(self, x: np.ndarray) -> np.ndarray:
        self.inputs_scored += len(x)
        return self.inner.predict_proba(x)
