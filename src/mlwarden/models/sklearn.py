"""scikit-learn adapter: a black-box classifier over any estimator with ``predict_proba``."""

from __future__ import annotations

from typing import Any

import numpy as np

from mlwarden.errors import ModelError
from mlwarden.models.base import Classifier

__all__ = ["SklearnClassifier"]


class SklearnClassifier(Classifier):
    """Wrap a fitted scikit-learn classifier.

    Inputs are flattened to ``(n, features)`` before they reach the estimator, so image-shaped
    data works with estimators trained on flattened pixels. Probability columns are reordered so
    column ``k`` is the probability of label ``k`` even when the estimator saw only some labels.
    """

    def __init__(
        self,
        estimator: Any,
        *,
        input_shape: tuple[int, ...],
        n_classes: int | None = None,
        clip_range: tuple[float, float] = (0.0, 1.0),
        batch_size: int = 4096,
    ) -> None:
        if not hasattr(estimator, "predict_proba"):
            raise ModelError(
                f"{type(estimator).__name__} has no predict_proba; mlwarden needs class "
                "probabilities (for SVC use probability=True, or wrap it in CalibratedClassifierCV)"
            )
        classes = getattr(estimator, "classes_", None)
        if classes is None:
            raise ModelError(f"{type(estimator).__name__} is not fitted (it has no classes_)")
        classes = np.asarray(classes)
        if not np.issubdtype(classes.dtype, np.integer) or classes.min() < 0:
            raise ModelError(
                f"the estimator's classes_ must be non-negative integer labels, got {classes[:5]!r}"
            )
        inferred = int(classes.max()) + 1
        super().__init__(
            input_shape=input_shape,
            n_classes=n_classes if n_classes is not None else inferred,
            clip_range=clip_range,
            batch_size=batch_size,
        )
        if inferred > self.n_classes:
            raise ModelError(
                f"the estimator predicts label {inferred - 1} >= n_classes={self.n_classes}"
            )
        self.estimator = estimator
        self._columns = classes.astype(np.int64)

    def _predict_proba_batch(self, x: np.ndarray) -> np.ndarray:
        raw = np.asarray(self.estimator.predict_proba(x.reshape(len(x), -1)), dtype=np.float32)
        proba = np.zeros((len(x), self.n_classes), dtype=np.float32)
        proba[:, self._columns] = raw
        return proba
