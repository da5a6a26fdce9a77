"""Adversarial training: PGD (Madry et al., 2018) or TRADES (Zhang et al., 2019).

Every training batch is replaced by (PGD) or regularised with (TRADES) adversarial examples
found by projected gradient ascent inside the ε-ball, so the model learns to classify the worst
case in the ball. ε can ramp up linearly over the first epochs (warm-up), which keeps a model
trained from scratch from collapsing to a constant prediction. After every epoch the held-out
clean and PGD robust accuracy at the target ε are recorded.

The trainer also works inside a user's own loop::

    trainer = AdversarialTrainer(eps=0.1, norm="linf")
    for x, y in loader:
        x_adv = trainer.perturb(model, x, y)        # PGD examples for this batch
        loss = F.cross_entropy(model(x_adv), y)     # or: loss = trainer.batch_loss(model, x, y)
        optimizer.zero_grad(); loss.backward(); optimizer.step()
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from mlwarden.attacks.base import NORMS
from mlwarden.attacks.evasion.gradient_descent import (
    FixedStep,
    Objective,
    classification_objective,
    projected_gradient_descent,
    random_start,
)
from mlwarden.defenses.training.base import (
    RobustTrainer,
    _check_positive_float,
    _check_positive_int,
    evaluate_accuracy,
    pgd_robust_accuracy,
    set_mode,
)
from mlwarden.errors import ConfigError

__all__ = ["METHODS", "AdversarialTrainer"]

METHODS: tuple[str, ...] = ("pgd", "trades")


class AdversarialTrainer(RobustTrainer):
    """PGD adversarial training (Madry et al., 2018), with TRADES (Zhang et al., 2019) as an option.

    Parameters
    ----------
    eps
        Target perturbation budget in ``norm``, in input units.
    norm
        ``"linf"`` or ``"l2"``.
    method
        ``"pgd"``: minimise the cross-entropy on PGD examples (Madry et al.). ``"trades"``:
        minimise ``CE(f(x), y) + β·KL(f(x) ‖ f(x'))`` with ``x'`` maximising the KL term.
    steps
        PGD steps used to craft each training batch.
    step_size
        PGD step length; ``2.5·ε/steps`` when omitted.
    trades_beta
        TRADES' trade-off β between accuracy and robustness (6 in the paper).
    warmup_epochs
        Epochs over which the training ε rises linearly from 0 to ``eps`` (0: no warm-up).
    eval_steps
        PGD steps of the held-out robust-accuracy measurement after each epoch.
    epochs, batch_size, lr, weight_decay, clip_range, eval_samples, seed
        See :class:`~mlwarden.defenses.training.base.RobustTrainer`.

    Attributes
    ----------
    module_
        The trained module (the one passed to :meth:`fit`, trained in place).
    history_
        One :class:`~mlwarden.defenses.training.base.EpochRecord` per epoch.
    """

    def __init__(
        self,
        *,
        eps: float,
        norm: str = "linf",
        method: str = "pgd",
        steps: int = 7,
        step_size: float | None = None,
        trades_beta: float = 6.0,
        warmup_epochs: float = 0,
        eval_steps: int = 20,
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
        self.eps = eps
        self.norm = norm
        self.method = method
        self.steps = steps
        self.step_size = step_size
        self.trades_beta = trades_beta
        self.warmup_epochs = warmup_epochs
        self.eval_steps = eval_steps

    def _validate_params(self) -> None:
        super()._validate_params()
        _check_positive_float("eps", self.eps)
        if self.norm not in NORMS:
            raise ConfigError(f"norm must be one of {list(NORMS)}, got {self.norm!r}")
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {list(METHODS)}, got {self.method!r}")
        _check_positive_int("steps", self.steps)
        _check_positive_int("eval_steps", self.eval_steps)
        if self.step_size is not None:
            _check_positive_float("step_size", self.step_size)
        _check_positive_float("trades_beta", self.trades_beta)
        _check_positive_float("warmup_epochs", self.warmup_epochs, allow_zero=True)

    def eps_at(self, progress: float) -> float:
        """The training ε after ``progress`` epochs (linear warm-up, then constant)."""
        if self.warmup_epochs <= 0 or progress >= self.warmup_epochs:
            return float(self.eps)
        return float(self.eps) * max(progress, 0.0) / float(self.warmup_epochs)

    def perturb(
        self,
        module: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        eps: float | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Adversarial examples for one training batch, detached from the graph.

        For ``method="pgd"`` they maximise the cross-entropy from a uniform random start; for
        ``"trades"`` they maximise ``KL(f(x) ‖ f(x'))`` from ``x + 0.001·N(0, I)``. The module is
        put in evaluation mode while attacking and its mode is restored; parameter gradients
        are not touched, so this can sit inside any training loop.

        Parameters
        ----------
        module
            The model being trained (logits out).
        x, y
            A batch of inputs in ``clip_range`` and their integer labels.
        eps
            Overrides the trainer's ε (for example the warm-up value).
        generator
            Source of the random start; a generator seeded with ``seed`` when omitted.
        """
        budget = float(self.eps if eps is None else eps)
        if budget <= 0:
            return x.detach().clone()
        gen = (
            generator
            if generator is not None
            else torch.Generator(device=x.device).manual_seed(self.seed)
        )
        alpha = self.step_size if self.step_size is not None else 2.5 * budget / self.steps
        clip = (float(self.clip_range[0]), float(self.clip_range[1]))
        x = x.detach()
        was_training = set_mode(module, False)
        if self.method == "trades":
            with torch.no_grad():
                target = F.softmax(module(x), dim=1)
            noise = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
            start = x + 0.001 * noise

            objective: Objective = _kl_objective(module, target)
        else:
            start = random_start(x, budget, self.norm, gen)
            objective = classification_objective(module, y, targeted=False, loss="ce")
        found = projected_gradient_descent(
            objective,
            x,
            eps=budget,
            norm=self.norm,
            steps=self.steps,
            clip_range=clip,
            step_rule=FixedStep(alpha, self.norm),
            start=start,
            score_last=False,
        )
        set_mode(module, was_training)
        return found.x_adv.detach()

    def batch_loss(
        self,
        module: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        progress: float = math.inf,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The adversarial training loss of one batch at the ε scheduled for ``progress``.

        PGD: ``CE(f(x'), y)``. TRADES: ``CE(f(x), y) + β·KL(f(x) ‖ f(x'))`` (batch mean).
        """
        eps = self.eps_at(progress)
        x_adv = self.perturb(module, x, y, eps=eps, generator=generator)
        if self.method == "pgd":
            return F.cross_entropy(module(x_adv), y)
        logits = module(x)
        log_adv = F.log_softmax(module(x_adv), dim=1)
        robust = F.kl_div(log_adv, F.softmax(logits, dim=1), reduction="batchmean")
        return F.cross_entropy(logits, y) + self.trades_beta * robust

    def evaluate(
        self, module: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> dict[str, float]:
        return {
            "clean_accuracy": evaluate_accuracy(module, x, y),
            "robust_accuracy": pgd_robust_accuracy(
                module,
                x,
                y,
                eps=float(self.eps),
                norm=self.norm,
                steps=self.eval_steps,
                clip_range=(float(self.clip_range[0]), float(self.clip_range[1])),
                generator=generator,
            ),
        }

    def _epoch_extras(self, progress: float) -> dict[str, Any]:
        return {"eps": self.eps_at(progress)}


def _kl_objective(module: nn.Module, target: torch.Tensor) -> Objective:
    """TRADES' inner objective: ``KL(f(x) ‖ f(x'))`` per sample; it never "succeeds"."""

    def objective(x_adv: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_adv = F.log_softmax(module(x_adv), dim=1)
        value = F.kl_div(log_adv, target[index], reduction="none").sum(dim=1)
        return value, torch.zeros(len(x_adv), dtype=torch.bool, device=x_adv.device)

    return objective
