"""Mahalanobis-distance out-of-distribution detector (Lee, Lee, Lee and Shin, NeurIPS 2018).

Penultimate-layer features of clean data are modelled as class-conditional Gaussians with
class means ``μ_c`` and one covariance ``Σ`` shared by all classes (tied). The score of an input
with features ``f`` is ``min_c (f − μ_c)ᵀ Σ⁻¹ (f − μ_c)``: its squared Mahalanobis distance to
the closest class. (The paper's input pre-processing and multi-layer ensemble are not used.)
"""

from __future__ import annotations

import numpy as np
import torch

from mlwarden.defenses.detectors.base import Detector
from mlwarden.defenses.detectors.features import penultimate_features
from mlwarden.errors import ConfigError, DataError
from mlwarden.models.base import Classifier

__all__ = ["MahalanobisDetector"]


class MahalanobisDetector(Detector):
    """Squared Mahalanobis distance to the nearest class mean in penultimate-feature space.

    Parameters
    ----------
    classifier
        The protected white-box model.
    ridge
        Added to the covariance diagonal, relative to its mean variance, so that ``Σ`` is
        invertible when features are degenerate (dead ReLUs).
    batch_size
        Inputs scored at once.

    Attributes
    ----------
    means_
        ``(n_classes, d)`` class means (NaN rows for classes absent from the fit data).
    precision_
        ``(d, d)`` inverse of the tied covariance.
    """

    name = "mahalanobis"
    needs_gradients = True

    def __init__(
        self, classifier: Classifier | None = None, *, ridge: float = 1e-3, batch_size: int = 512
    ) -> None:
        super().__init__(classifier, batch_size=batch_size)
        self.ridge = ridge

    def _validate_params(self) -> None:
        super()._validate_params()
        if (
            isinstance(self.ridge, bool)
            or not isinstance(self.ridge, (int, float))
            or not self.ridge >= 0
        ):
            raise ConfigError(f"{self.name}: ridge must be a number >= 0, got {self.ridge!r}")
        self._features = penultimate_features(self.classifier)  # type: ignore[arg-type]

    def _fit(self, x: np.ndarray, y: np.ndarray | None) -> None:
        assert self.classifier is not None
        if y is None:
            y = self.classifier.predict(x)
        feats = []
        with torch.no_grad():
            for start in range(0, len(x), self.batch_size):
                batch = torch.from_numpy(np.ascontiguousarray(x[start : start + self.batch_size]))
                feats.append(self._features(batch.to(self.device)).double().cpu())
        features = torch.cat(feats)
        n_classes = self.classifier.n_classes
        if y.max() >= n_classes:
            raise DataError(f"{self.name}: labels must be < n_classes={n_classes}")
        means = torch.full((n_classes, features.shape[1]), float("nan"), dtype=torch.float64)
        labels = torch.from_numpy(y)
        for c in range(n_classes):
            members = features[labels == c]
            if len(members):
                means[c] = members.mean(dim=0)
        centred = features - means[labels]
        covariance = centred.T @ centred / len(features)
        scale = float(covariance.diagonal().mean()) or 1.0
        covariance += self.ridge * scale * torch.eye(len(covariance), dtype=torch.float64)
        self.means_ = means.numpy()
        self.precision_ = torch.linalg.pinv(covariance, hermitian=True).numpy()

    def score_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """``min_c (f(x) − μ_c)ᵀ Σ⁻¹ (f(x) − μ_c)`` per input."""
        present = ~np.isnan(self.means_).any(axis=1)
        means = torch.from_numpy(self.means_[present]).to(x.device, torch.float32)
        precision = torch.from_numpy(self.precision_).to(x.device, torch.float32)
        features = self._features(x).float()
        diff = features[:, None, :] - means[None]
        distances = torch.einsum("nkd,de,nke->nk", diff, precision, diff)
        return distances.amin(dim=1)

    def _state(self) -> dict[str, np.ndarray]:
        return {"means": self.means_, "precision": self.precision_}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        try:
            self.means_, self.precision_ = arrays["means"], arrays["precision"]
        except KeyError as exc:
            raise DataError(f"{self.name}: saved state lacks {exc}") from None
