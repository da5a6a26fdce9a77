"""STRIP: a run-time detector of trojaned (backdoor-triggered) inputs (Gao, Xu, Wang, Chen,
Ranasinghe and Nepal, ACSAC 2019).

An input is superimposed on ``n_overlays`` clean images held back at :meth:`fit` time; the
model's predictions on the blends are averaged in entropy. A clean input's class is destroyed
by the overlay, so the predictions scatter and the entropy is high; a trigger keeps pulling
every blend to the target class, so the entropy stays low. The score is the *negative* mean
entropy (in nats), so that higher is more suspicious as for every :class:`Detector`.

Blending follows the paper's superimposition (``cv2.addWeighted(x, 1, overlay, 1, 0)``):
``clip(x + overlay_weight · overlay)`` to the model's valid range.
"""

from __future__ import annotations

import numpy as np
import torch

from mlwarden.defenses.detectors.base import Detector
from mlwarden.errors import ConfigError, DataError
from mlwarden.models.base import Classifier, DifferentiableClassifier

__all__ = ["STRIP", "mean_entropy"]


def mean_entropy(log_proba: torch.Tensor) -> torch.Tensor:
    """Mean Shannon entropy (nats) over axis 1 of ``(B, N, K)`` log-probabilities."""
    return -(log_proba.exp() * log_proba).sum(dim=-1).mean(dim=1)


class STRIP(Detector):
    """Negative mean prediction entropy of an input blended with clean overlays.

    Parameters
    ----------
    classifier
        The protected model (black-box models work too; scores are then not differentiable).
    n_overlays
        Clean images blended with each input (``N`` in the paper; 20 is enough there).
    overlay_weight
        Weight of the overlay in the superimposition (1 in the paper).
    seed
        Seed of the draw of overlays from the clean data.
    batch_size
        Inputs scored at once (each becomes ``n_overlays`` model inputs).

    Attributes
    ----------
    overlays_
        ``(n_overlays, *input_shape)`` clean images drawn at :meth:`fit`.
    """

    name = "strip"

    def __init__(
        self,
        classifier: Classifier | None = None,
        *,
        n_overlays: int = 20,
        overlay_weight: float = 1.0,
        seed: int = 0,
        batch_size: int = 128,
    ) -> None:
        super().__init__(classifier, batch_size=batch_size)
        self.n_overlays = n_overlays
        self.overlay_weight = overlay_weight
        self.seed = seed

    def _validate_params(self) -> None:
        super()._validate_params()
        n = self.n_overlays
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"{self.name}: n_overlays must be an integer >= 1, got {n!r}")
        w = self.overlay_weight
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 < w <= 1:
            raise ConfigError(f"{self.name}: overlay_weight must be in (0, 1], got {w!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"{self.name}: seed must be an integer >= 0, got {self.seed!r}")

    def _fit(self, x: np.ndarray, y: np.ndarray | None) -> None:
        if len(x) < self.n_overlays:
            raise DataError(
                f"{self.name}: fit needs at least n_overlays={self.n_overlays} clean inputs, "
                f"got {len(x)}"
            )
        rng = np.random.default_rng(self.seed)
        chosen = np.sort(rng.choice(len(x), size=self.n_overlays, replace=False))
        self.overlays_ = np.ascontiguousarray(x[chosen], dtype=np.float32)

    def _log_proba(self, blends: torch.Tensor) -> torch.Tensor:
        assert self.classifier is not None
        if isinstance(self.classifier, DifferentiableClassifier):
            return torch.log_softmax(self.classifier.logits(blends), dim=-1)
        proba = self.classifier.predict_proba(blends.detach().cpu().numpy())
        return torch.from_numpy(np.log(np.clip(proba, 1e-12, 1.0))).to(blends.device)

    def score_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """``−mean entropy`` of the model's predictions on ``x`` blended with each overlay."""
        self._check_fitted()
        assert self.classifier is not None
        low, high = self.classifier.clip_range
        overlays = torch.from_numpy(self.overlays_).to(x.device, x.dtype)
        blends = (x[:, None] + self.overlay_weight * overlays[None]).clamp(low, high)
        log_proba = self._log_proba(blends.reshape(-1, *x.shape[1:]))
        return -mean_entropy(log_proba.reshape(len(x), len(overlays), -1))

    def _state(self) -> dict[str, np.ndarray]:
        return {"overlays": self.overlays_}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        overlays = arrays.get("overlays")
        if overlays is None or overlays.dtype != np.float32:
            raise DataError(f"{self.name}: saved state lacks float32 overlays")
        self.overlays_ = overlays
