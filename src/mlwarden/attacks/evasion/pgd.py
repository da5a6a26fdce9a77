"""Projected Gradient Descent (Madry et al., 2018), in L∞ and L2.

Iterated gradient steps projected back onto the ε-ball, from a random start, with random
restarts and per-sample early stopping: a sample leaves the working batch as soon as it is
adversarial, so the attack costs at most ``steps`` forward+backward passes and usually less.
"""

from __future__ import annotations

import torch

from mlwarden.attacks.base import Attack, Norm, project
from mlwarden.attacks.evasion._gradients import attack_loss, normalized_step, random_start
from mlwarden.attacks.evasion.fgsm import _check_loss
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
        ``"ce"`` (cross-entropy) or ``"margin"`` (Carlini-Wagner).
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
        _check_loss(self.name, self.loss)
        if not isinstance(self.steps, int) or self.steps < 1:
            raise AttackError(f"pgd: steps must be an integer >= 1, got {self.steps!r}")
        if not isinstance(self.restarts, int) or self.restarts < 1:
            raise AttackError(f"pgd: restarts must be an integer >= 1, got {self.restarts!r}")
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
        best = x.clone()
        done = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        queries = torch.zeros(len(x), dtype=torch.int64, device=x.device)
        if self.early_stop and self.random_start and eps > 0:
            # inputs the model already gets wrong are adversarial as they are: keep them (one
            # query) instead of moving them to a random start that the model may get right
            with torch.no_grad():
                pred = classifier.logits(x).argmax(1)
            queries += 1
            done = pred == goal if self.targeted else pred != goal

        for restart in range(self.restarts):
            active = torch.nonzero(~done).squeeze(1)
            if active.numel() == 0:
                break
            x0, lab = x[active], goal[active]
            if self.random_start and eps > 0:
                xa = project(random_start(x0, eps, self.norm, generator), x0, eps, self.norm, clip)
            else:
                xa = x0.clone()
            for step in range(self.steps + 1):
                if step == self.steps and restart == self.restarts - 1:
                    # the last iterate is kept whatever it scores, and generate() scores it
                    best[active] = xa.detach()
                    break
                xa.requires_grad_(True)
                logits = classifier.logits(xa)
                queries[active] += 1
                if step == self.steps or self.early_stop:
                    pred = logits.argmax(1)
                    hit = pred == lab if self.targeted else pred != lab
                    if step == self.steps or hit.any():
                        won = active[hit]
                        best[won] = xa.detach()[hit]
                        done[won] = True
                    if step == self.steps:
                        break
                    if self.early_stop and hit.all():
                        break
                loss = attack_loss(logits, lab, targeted=self.targeted, loss=self.loss)
                (grad,) = torch.autograd.grad(loss, xa)
                with torch.no_grad():
                    xa = xa.detach() + alpha * normalized_step(grad, self.norm)
                    xa = project(xa, x0, eps, self.norm, clip)
                if self.early_stop and hit.any():
                    keep = ~hit
                    xa, x0, lab, active = xa[keep], x0[keep], lab[keep], active[keep]
        return best, queries
