"""Projected Gradient Descent (Madry et al., 2018), in L∞ and L2.

Iterated gradient steps projected back onto the ε-ball, from a random start, with random
restarts and per-sample early stopping: a sample leaves the working batch as soon as it is
adversarial, so the attack costs at most ``steps`` forward+backward passes and usually less.
"""

from __future__ import annotations

import torch

from mlwarden.attacks.base import Attack, Norm
from mlwarden.attacks.evasion.gradient_descent import (
    FixedStep,
    check_loss,
    classification_objective,
    on_rows,
    projected_gradient_descent,
    random_start,
)
from mlwarden.errors import AttackError
from mlwarden.models.base import Classifier, DifferentiableClassifier

__all__ = ["PGD"]


class PGD(Attack):
    """Projected Gradient Descent with random restarts and per-sample early stopping.

    Parameters
    ----------
    eps, norm, targeted, seed, batch_size
        See :class:`~mlwarden.attacks.base.Attack`.
    steps
        Gradient steps per restart.
    step_size
        Step length in the attack norm; ``2.5 * eps / steps`` when omitted (Madry et al.).
    restarts
        Random restarts; a restart only attacks samples that are still not adversarial.
    random_start
        Start from a uniform point in the ε-ball instead of the input itself.
    early_stop
        Stop working on a sample once it is adversarial (it keeps that adversarial point);
        inputs the model already gets wrong are returned unchanged at the cost of one query.
    loss
        ``"ce"`` (cross-entropy), ``"margin"`` (Carlini-Wagner) or ``"dlr"`` (Croce & Hein).
    """

    name = "pgd"
    needs_gradients = True

    def __init__(
        self,
        *,
        eps: float,
        norm: Norm = "linf",
        targeted: bool = False,
        steps: int = 20,
        step_size: float | None = None,
        restarts: int = 1,
        random_start: bool = True,
        early_stop: bool = True,
        loss: str = "ce",
        seed: int = 0,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(eps=eps, norm=norm, targeted=targeted, seed=seed, batch_size=batch_size)
        self.steps = steps
        self.step_size = step_size
        self.restarts = restarts
        self.random_start = random_start
        self.early_stop = early_stop
        self.loss = loss

    def _validate_params(self) -> None:
        super()._validate_params()
        check_loss(self.name, self.loss)
        self._check_counts("steps", "restarts")
        if self.step_size is not None and not self.step_size > 0:
            raise AttackError(f"pgd: step_size must be > 0, got {self.step_size!r}")

    def _generate(
        self, classifier: Classifier, x: torch.Tensor, goal: torch.Tensor, *, seed: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        assert isinstance(classifier, DifferentiableClassifier)
        eps = float(self.eps)
        alpha = self.step_size if self.step_size is not None else 2.5 * eps / self.steps
        clip = classifier.clip_range
        generator = torch.Generator(device=x.device).manual_seed(seed)
        objective = classification_objective(
            classifier.logits, goal, targeted=self.targeted, loss=self.loss
        )
        best = x.clone()
        done = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        queries = torch.zeros(len(x), dtype=torch.int64, device=x.device)
        if self.early_stop and self.random_start and eps > 0:
            # inputs the model already gets wrong are adversarial as they are: keep them (one
            # query) instead of moving them to a random start that the model may get right
            with torch.no_grad():
                _, done = objective(x, torch.arange(len(x), device=x.device))
            queries += 1

        for restart in range(self.restarts):
            active = torch.nonzero(~done).squeeze(1)
            if active.numel() == 0:
                break
            x0 = x[active]
            final = restart == self.restarts - 1
            found = projected_gradient_descent(
                on_rows(objective, active),
                x0,
                eps=eps,
                norm=self.norm,
                steps=self.steps,
                clip_range=clip,
                step_rule=FixedStep(alpha, self.norm),
                start=random_start(x0, eps, self.norm, generator)
                if self.random_start and eps > 0
                else None,
                early_stop=self.early_stop,
                # the last iterate of the last restart is kept whatever it scores, and
                # generate() scores it
                score_last=not final,
            )
            queries[active] += found.queries
            keep = torch.ones_like(found.success) if final else found.success
            best[active[keep]] = found.x_adv[keep]
            done[active[found.success]] = True
        return best, queries
