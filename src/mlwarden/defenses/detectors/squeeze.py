"""Feature squeezing (Xu, Evans and Qi, NDSS 2018).

Squeezing removes detail an adversary relies on: bit-depth reduction maps every feature to
``2^b`` levels, median smoothing replaces each pixel by the median of its ``k×k`` window. A
clean input's prediction barely moves when squeezed; an adversarial one's often does. The score
is the largest L1 distance between the softmax output on the input and on each squeezed version.
Both squeezers are piecewise constant, so their gradient is taken as the identity (BPDA,
Athalye et al., 2018) when an adaptive attacker differentiates the score.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from mlwarden.defenses.detectors.base import Detector
from mlwarden.errors import ConfigError
from mlwarden.models.base import Classifier, DifferentiableClassifier

__all__ = ["FeatureSqueezing", "median_smooth", "reduce_bit_depth"]


def reduce_bit_depth(x: torch.Tensor, bits: int, clip_range: tuple[float, float]) -> torch.Tensor:
    """Quantise ``x`` to ``2^bits`` evenly spaced levels across ``clip_range``."""
    low, high = clip_range
    levels = 2**bits - 1
    unit = ((x - low) / (high - low)).clamp(0, 1)
    return torch.round(unit * levels) / levels * (high - low) + low


def median_smooth(x: torch.Tensor, size: int) -> torch.Tensor:
    """Median over each ``size×size`` window, per channel, edges replicated.

    For an even size the window spans ``size // 2`` pixels before the centre and the upper
    median is taken, as ``scipy.ndimage.median_filter`` does (the filter Xu et al. used).
    """
    if x.dim() == 3:
        return median_smooth(x[:, None], size)[:, 0]
    before, after = size // 2, size - 1 - size // 2
    padded = F.pad(x, (before, after, before, after), mode="replicate")
    windows = padded.unfold(2, size, 1).unfold(3, size, 1)
    flat = windows.reshape(*windows.shape[:4], size * size)
    return flat.sort(dim=-1).values[..., (size * size) // 2]


class FeatureSqueezing(Detector):
    """Feature-squeezing detector (Xu et al., 2018).

    Parameters
    ----------
    classifier
        The protected model; black-box models work too (no gradients are needed to score).
    bit_depth
        Bits per feature after reduction (``None`` to skip this squeezer).
    median_size
        Window of the median filter, for image inputs ``(C, H, W)`` or ``(H, W)`` only
        (``None``, the default, skips it). Xu et al. used 2×2 on MNIST and CIFAR-10; on very
        small images (8×8 digits) it changes clean predictions so much that the calibrated
        threshold hides every attack, so it is opt-in.
    batch_size
        Inputs scored at once.
    """

    name = "feature-squeezing"

    def __init__(
        self,
        classifier: Classifier | None = None,
        *,
        bit_depth: int | None = 3,
        median_size: int | None = None,
        batch_size: int = 512,
    ) -> None:
        super().__init__(classifier, batch_size=batch_size)
        self.bit_depth = bit_depth
        self.median_size = median_size

    def _validate_params(self) -> None:
        super()._validate_params()
        for label, value, low in (
            ("bit_depth", self.bit_depth, 1),
            ("median_size", self.median_size, 2),
        ):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < low
            ):
                raise ConfigError(
                    f"{self.name}: {label} must be an integer >= {low} or null, got {value!r}"
                )
        if self.bit_depth is None and self._median_size() is None:
            raise ConfigError(
                f"{self.name}: no squeezer applies; set bit_depth (and median_size for images)"
            )

    def _median_size(self) -> int | None:
        assert self.classifier is not None
        shape = self.classifier.input_shape
        is_image = len(shape) == 3 or (len(shape) == 2 and min(shape) > 1)
        return self.median_size if is_image else None

    def squeeze(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The squeezed versions of ``x``, with identity gradients (BPDA)."""
        assert self.classifier is not None
        out = []
        if self.bit_depth is not None:
            out.append(reduce_bit_depth(x, self.bit_depth, self.classifier.clip_range))
        size = self._median_size()
        if size is not None:
            out.append(median_smooth(x, size))
        return [x + (s - x).detach() for s in out]

    def attack_views(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The squeezed inputs (with straight-through gradients)."""
        return self.squeeze(x)

    def _fit(self, x: np.ndarray, y: np.ndarray | None) -> None:
        """Feature squeezing learns nothing; only the threshold needs clean data."""

    def _proba(self, x: torch.Tensor) -> torch.Tensor:
        classifier = self.classifier
        if isinstance(classifier, DifferentiableClassifier):
            return F.softmax(classifier.logits(x), dim=1)
        assert classifier is not None
        proba = classifier.predict_proba(x.detach().cpu().numpy())
        return torch.from_numpy(proba).to(x.device)

    def score_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """``max_s ‖softmax(f(x)) − softmax(f(s(x)))‖₁`` over the squeezers ``s``."""
        reference = self._proba(x)
        distances = [(reference - self._proba(s)).abs().sum(dim=1) for s in self.squeeze(x)]
        return torch.stack(distances).amax(dim=0)
