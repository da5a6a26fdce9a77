"""Gaussian data augmentation, the base-model training of randomized smoothing.

A smoothed classifier is only as good as its base model is under noise: Cohen, Rosenfeld and
Kolter (2019) train the base model on inputs corrupted by the same ``N(0, σ²I)`` noise used at
certification time. After every epoch the held-out clean accuracy and the accuracy under noise
σ are recorded.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from mlwarden.defenses.training.base import (
    RobustTrainer,
    _check_positive_float,
    evaluate_accuracy,
)

__all__ = ["GaussianNoiseTrainer"]


class GaussianNoiseTrainer(RobustTrainer):
    """Train on inputs with Gaussian noise σ added (Cohen et al., 2019).

    Parameters
    ----------
    sigma
        Noise standard deviation, in input units; use the σ the model will be smoothed with.
    epochs, batch_size, lr, weight_decay, clip_range, eval_samples, seed
        See :class:`~mlwarden.defenses.training.base.RobustTrainer`. Noisy inputs are not
        clipped, matching the smoothed classifier.

    Attributes
    ----------
    module_, history_
        The trained module and one record per epoch (``noisy_accuracy`` is the base model's
        held-out accuracy under noise σ).
    """

    def __init__(
        self,
        *,
        sigma: float,
        epochs: int = 10,
        batch_size: int = 64,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        clip_range: tuple[float, float] = (0.0, 1.0),
        eval_samples: int = 500,
        seed: int = 0,
    ) -> None:
        super().__init__(
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            clip_range=clip_range,
            eval_samples=eval_samples,
            seed=seed,
        )
        self.sigma = sigma

    def _validate_params(self) -> None:
        super()._validate_params()
        _check_positive_float("sigma", self.sigma)

    def perturb(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``x`` plus ``N(0, σ²I)`` noise (for use in a custom training loop)."""
        gen = (
            generator
            if generator is not None
            else torch.Generator(device=x.device).manual_seed(self.seed)
        )
        noise = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
        return x.detach() + float(self.sigma) * noise

    def batch_loss(
        self,
        module: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        progress: float = math.inf,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Cross-entropy on the noisy batch."""
        return F.cross_entropy(module(self.perturb(x, generator=generator)), y)

    def evaluate(
        self, module: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> dict[str, float]:
        return {
            "clean_accuracy": evaluate_accuracy(module, x, y),
            "noisy_accuracy": evaluate_accuracy(module, self.perturb(x, generator=generator), y),
        }
