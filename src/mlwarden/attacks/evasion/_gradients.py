"""Loss and step helpers shared by the gradient attacks."""

from __future__ import annotations

import torch
from torch.nn import functional as F

__all__ = ["attack_loss", "normalized_step", "random_start"]


def attack_loss(
    logits: torch.Tensor, goal: torch.Tensor, *, targeted: bool, loss: str
) -> torch.Tensor:
    """The summed per-sample loss the attacker ascends.

    Untargeted: cross-entropy of the true label, or the Carlini-Wagner margin
    ``max_{j != y} z_j - z_y``. Targeted: the negated version towards the target label.
    """
    if loss == "ce":
        value = F.cross_entropy(logits, goal, reduction="none")
    else:
        goal_logit = logits.gather(1, goal[:, None]).squeeze(1)
        others = logits.scatter(1, goal[:, None], float("-inf")).amax(dim=1)
        value = others - goal_logit
    return (-value if targeted else value).sum()


def normalized_step(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """The steepest-ascent direction of unit ``norm`` for ``grad``."""
    if norm == "linf":
        return grad.sign()
    flat = grad.flatten(1).norm(p=2, dim=1).clamp_min(1e-12)
    return grad / flat.view(-1, *([1] * (grad.dim() - 1)))


def random_start(
    x: torch.Tensor, eps: float, norm: str, generator: torch.Generator
) -> torch.Tensor:
    """A point drawn uniformly from the ``norm`` ε-ball around ``x``."""
    if norm == "linf":
        noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return x + (2 * noise - 1) * eps
    direction = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    direction = normalized_step(direction, "l2")
    dims = x[0].numel()
    radius = torch.rand(len(x), generator=generator, device=x.device, dtype=x.dtype) ** (1 / dims)
    return x + direction * (eps * radius).view(-1, *([1] * (x.dim() - 1)))
