"""Fast Gradient Sign Method (Goodfellow, Shlens and Szegedy, 2015).

One step of size ε along the sign of the loss gradient (L∞), or along the normalised gradient
(L2, the "fast gradient method").
"""

from __future__ import annotations

import torch

from mlwarden.attacks.base import Attack, Norm
from mlwarden.attacks.evasion.gradient_descent import attack_loss, check_loss, normalized_step
from mlwarden.models.base import Classifier, DifferentiableClassifier

__all__ = ["FGSM"]


class FGSM(Attack):
    """Fast Gradient Sign Method: ``x + ε·sign(∇ₓ L(x, y))``.

    Parameters
    ----------
    eps, norm, targeted, seed, batch_size
        See :class:`~mlwarden.attacks.base.Attack`.
    loss
        ``"ce"`` (cross-entropy), ``"margin"`` (Carlini-Wagner) or ``"dlr"`` (Croce & Hein).
    """

    name = "fgsm"
    needs_gradients = True

    def __init__(
        self,
        *,
        eps: float,
        norm: Norm = "linf",
        targeted: bool = False,
        loss: str = "ce",
        seed: int = 0,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(eps=eps, norm=norm, targeted=targeted, seed=seed, batch_size=batch_size)
        self.loss = loss

    def _validate_params(self) -> None:
        super()._validate_params()
        check_loss(self.name, self.loss)

    def _generate(
        self, classifier: Classifier, x: torch.Tensor, goal: torch.Tensor, *, seed: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        assert isinstance(classifier, DifferentiableClassifier)
        xa = x.detach().clone().requires_grad_(True)
        loss = attack_loss(classifier.logits(xa), goal, targeted=self.targeted, loss=self.loss)
        (grad,) = torch.autograd.grad(loss, xa)
        step = normalized_step(grad, self.norm) * self.eps
        return x + step, torch.ones(len(x), dtype=torch.int64)
