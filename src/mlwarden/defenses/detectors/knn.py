"""k-nearest-neighbour distance detector for tabular and black-box models.

It needs no model internals: the score of an input is its mean Euclidean distance to the ``k``
nearest clean reference inputs, so inputs far from the data the model was built for stand out
(a distance-based out-of-distribution test; see Sun, Ming, Zhu and Li, ICML 2022, for the same
idea on deep features).
"""

from __future__ import annotations

import numpy as np
import torch

from mlwarden.defenses.detectors.base import Detector
from mlwarden.errors import ConfigError, DataError
from mlwarden.models.base import Classifier

__all__ = ["KNNDetector"]


class KNNDetector(Detector):
    """Mean distance to the ``k`` nearest clean inputs.

    Parameters
    ----------
    classifier
        Optional; only used to validate input shapes.
    k
        Neighbours averaged.
    max_reference
        At most this many clean inputs are kept as references (a seeded draw).
    seed
        Seeds that draw.
    batch_size
        Inputs scored at once.

    Attributes
    ----------
    reference_
        The kept clean inputs, flattened, ``(m, d)``.
    """

    name = "knn"
    needs_classifier = False

    def __init__(
        self,
        classifier: Classifier | None = None,
        *,
        k: int = 5,
        max_reference: int = 5000,
        seed: int = 0,
        batch_size: int = 512,
    ) -> None:
        super().__init__(classifier, batch_size=batch_size)
        self.k = k
        self.max_reference = max_reference
        self.seed = seed

    def _validate_params(self) -> None:
        super()._validate_params()
        for label, value, low in (
            ("k", self.k, 1),
            ("max_reference", self.max_reference, 1),
            ("seed", self.seed, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(
                    f"{self.name}: {label} must be an integer >= {low}, got {value!r}"
                )

    def _fit(self, x: np.ndarray, y: np.ndarray | None) -> None:
        flat = x.reshape(len(x), -1).astype(np.float32)
        if len(flat) < self.k:
            raise DataError(f"{self.name}: needs at least k={self.k} clean inputs, got {len(flat)}")
        if len(flat) > self.max_reference:
            rng = np.random.default_rng(self.seed)
            flat = flat[np.sort(rng.choice(len(flat), self.max_reference, replace=False))]
        self.reference_ = flat

    def score_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """Mean distance from each input to its ``k`` nearest references."""
        reference = torch.from_numpy(self.reference_).to(x.device)
        flat = x.reshape(len(x), -1).float()
        with torch.no_grad():  # pick neighbours by squared distance via one matrix product
            squared = (
                (flat * flat).sum(1, keepdim=True)
                - 2 * flat @ reference.T
                + (reference * reference).sum(1)[None]
            )
            nearest = squared.topk(self.k, dim=1, largest=False).indices
        # exact (and differentiable) distances to the chosen neighbours only
        return (flat[:, None, :] - reference[nearest]).norm(dim=2).mean(dim=1)

    def _state(self) -> dict[str, np.ndarray]:
        return {"reference": self.reference_}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        if "reference" not in arrays:
            raise DataError(f"{self.name}: saved state lacks 'reference'")
        self.reference_ = arrays["reference"].astype(np.float32)
