"""The one projected-gradient loop: attacks, trainers and adaptive evaluations all call it.

Projected gradient ascent (Madry et al., 2018) is the inner loop of PGD, of APGD, of adversarial
training (PGD and TRADES) and of the adaptive attack on detectors. They differ only in what they
ascend, where they start and how they step, so those are the arguments here and the loop exists
once (the shape of Foolbox 3's ``gradient_descent_base``):

* an **objective** maps a batch of iterates to a per-sample value to ascend and a per-sample
  success mask (``objective(x_adv, index) -> (value, success)``; ``index`` says which of the
  caller's samples the rows are, since finished samples leave the batch);
* a **start** (the input itself, a uniform draw from the ε-ball, or anything the caller builds);
* a **step rule** (fixed steps along the normalised gradient, or a stateful rule such as APGD's
  momentum with step-size halving) that returns the next iterate, projected by :func:`project`.

Every iterate is projected onto the ε-ball around the input and into the valid range, so the
returned points satisfy the budget by construction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import torch
from torch.nn import functional as F

from mlwarden.attacks.base import project
from mlwarden.errors import AttackError

__all__ = [
    "LOSSES",
    "DescentResult",
    "EOTDraws",
    "FixedStep",
    "Objective",
    "Projector",
    "StepRule",
    "attack_loss",
    "check_loss",
    "classification_objective",
    "dlr_loss",
    "normalized_step",
    "on_rows",
    "per_sample_loss",
    "projected_gradient_descent",
    "random_start",
    "targeted_dlr_loss",
]

LOSSES: tuple[str, ...] = ("ce", "margin", "dlr")
"""Per-sample attack losses: cross-entropy, Carlini–Wagner margin, difference of logits ratio."""

Objective = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""``objective(x_adv, index) -> (value, success)``: per-sample value to ascend (differentiable
in ``x_adv``) and per-sample success (bool); ``index`` holds the rows' positions in the batch."""

Projector = Callable[[torch.Tensor], torch.Tensor]


def dlr_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The difference-of-logits-ratio loss of Croce & Hein (2020), per sample, to ascend.

    ``-(z_y - max_{j≠y} z_j) / (z_π1 - z_π3)`` with ``π`` the logits sorted in decreasing
    order: invariant to shifting and rescaling the logits, so a model whose logits are scaled
    up (saturated softmax, defensive distillation) gives the attack the same gradient direction.
    It needs three classes; with two the ratio is ±1 and has no gradient, so two-class models
    get the Carlini–Wagner margin ``max_{j≠y} z_j - z_y`` instead.
    """
    true_logit = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], float("-inf")).amax(dim=1)
    if logits.shape[1] < 3:
        return others - true_logit
    sorted_logits, _ = logits.sort(dim=1, descending=True)
    scale = (sorted_logits[:, 0] - sorted_logits[:, 2]).clamp_min(1e-12)
    return -(true_logit - others) / scale


def targeted_dlr_loss(
    logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """APGD-T's targeted DLR loss (Croce & Hein, 2020), per sample, to ascend.

    ``-(z_y - z_t) / (z_π1 - (z_π3 + z_π4)/2)``: it rises as the target logit ``z_t`` overtakes
    the true one ``z_y``, at any logit scale. With fewer than four classes the denominator
    uses the lowest logits there are (two classes: the margin itself, unscaled).
    """
    true_logit = logits.gather(1, labels[:, None]).squeeze(1)
    target_logit = logits.gather(1, targets[:, None]).squeeze(1)
    k = logits.shape[1]
    if k < 3:
        return target_logit - true_logit
    sorted_logits, _ = logits.sort(dim=1, descending=True)
    tail = sorted_logits[:, 2 : min(4, k)].mean(dim=1)
    scale = (sorted_logits[:, 0] - tail).clamp_min(1e-12)
    return -(true_logit - target_logit) / scale


def check_loss(attack: str, loss: object) -> None:
    """Raise :class:`~mlwarden.errors.AttackError` unless ``loss`` is one of :data:`LOSSES`."""
    if loss not in LOSSES:
        raise AttackError(f"{attack}: loss must be one of {list(LOSSES)}, got {loss!r}")


def per_sample_loss(
    logits: torch.Tensor, goal: torch.Tensor, *, targeted: bool, loss: str
) -> torch.Tensor:
    """The per-sample loss an attacker ascends, shape ``(n,)``.

    Untargeted (``goal`` = true labels): cross-entropy, the Carlini–Wagner margin
    ``max_{j≠y} z_j - z_y``, or DLR. Targeted (``goal`` = target labels): the loss that rises as
    the target class wins: ``-CE(z, t)``, ``z_t - max_{j≠t} z_j``, or the targeted DLR
    ``(z_t - max_{j≠t} z_j) / (z_π1 - (z_π3 + z_π4)/2)`` (Croce & Hein, 2020).
    """
    if loss == "ce":
        value = F.cross_entropy(logits, goal, reduction="none")
        return -value if targeted else value
    goal_logit = logits.gather(1, goal[:, None]).squeeze(1)
    others = logits.scatter(1, goal[:, None], float("-inf")).amax(dim=1)
    if loss == "margin":
        return goal_logit - others if targeted else others - goal_logit
    if loss != "dlr":
        raise ValueError(f"loss must be one of {list(LOSSES)}, got {loss!r}")
    if not targeted:
        return dlr_loss(logits, goal)
    k = logits.shape[1]
    if k < 3:  # the ratio would be ±1, without gradient: the plain margin
        return goal_logit - others
    sorted_logits, _ = logits.sort(dim=1, descending=True)
    tail = sorted_logits[:, 2 : min(4, k)].mean(dim=1)
    scale = (sorted_logits[:, 0] - tail).clamp_min(1e-12)
    return (goal_logit - others) / scale


def attack_loss(
    logits: torch.Tensor, goal: torch.Tensor, *, targeted: bool, loss: str
) -> torch.Tensor:
    """The summed :func:`per_sample_loss` (a scalar whose gradient is every sample's own)."""
    return per_sample_loss(logits, goal, targeted=targeted, loss=loss).sum()


def normalized_step(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """The steepest-ascent direction of unit ``norm`` for ``grad``."""
    if norm == "linf":
        return grad.sign()
    flat = grad.flatten(1).norm(p=2, dim=1).clamp_min(1e-12)
    return grad / flat.view(-1, *([1] * (grad.dim() - 1)))


def random_start(
    x: torch.Tensor, eps: float, norm: str, generator: torch.Generator
) -> torch.Tensor:
    """A point drawn uniformly from the ``norm`` ε-ball around ``x`` (not yet clipped)."""
    if norm == "linf":
        noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return x + (2 * noise - 1) * eps
    direction = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    direction = normalized_step(direction, "l2")
    dims = x[0].numel()
    radius = torch.rand(len(x), generator=generator, device=x.device, dtype=x.dtype) ** (1 / dims)
    return x + direction * (eps * radius).view(-1, *([1] * (x.dim() - 1)))


class StepRule(Protocol):
    """How the loop moves from one iterate to the next.

    ``step`` gets the current (detached) iterates, the objective's gradient and value at them,
    and the projection onto the feasible set; it returns the next iterates. ``select`` drops
    the rows whose mask is false (samples that finished), so stateful rules stay aligned.
    ``final`` picks, per remaining row, the point returned for a sample that never succeeded,
    given the last iterate and its value (the last iterate itself, or the best one seen).
    """

    def step(
        self, x_adv: torch.Tensor, grad: torch.Tensor, value: torch.Tensor, project: Projector
    ) -> torch.Tensor: ...

    def select(self, keep: torch.Tensor) -> None: ...

    def final(self, x_last: torch.Tensor, value_last: torch.Tensor) -> torch.Tensor: ...


@dataclass
class FixedStep:
    """``x ← Π(x + α·d)`` with ``d`` the unit-``norm`` steepest-ascent direction (PGD's rule)."""

    step_size: float
    norm: str

    def step(
        self, x_adv: torch.Tensor, grad: torch.Tensor, value: torch.Tensor, project: Projector
    ) -> torch.Tensor:
        return project(x_adv + self.step_size * normalized_step(grad, self.norm))

    def select(self, keep: torch.Tensor) -> None:
        return None

    def final(self, x_last: torch.Tensor, value_last: torch.Tensor) -> torch.Tensor:
        return x_last


@dataclass(frozen=True)
class DescentResult:
    """What :func:`projected_gradient_descent` found for each sample of the batch.

    Attributes
    ----------
    x_adv
        Per sample: the first successful iterate (with ``early_stop``), else the step rule's
        choice (:meth:`StepRule.final`: the last iterate, or the best one seen).
    success
        Per sample: some scored iterate met the objective's success test.
    queries
        Per sample: objective evaluations (forward passes) spent on it.
    """

    x_adv: torch.Tensor
    success: torch.Tensor
    queries: torch.Tensor


def projected_gradient_descent(
    objective: Objective,
    x: torch.Tensor,
    *,
    eps: float,
    norm: str,
    steps: int,
    clip_range: tuple[float, float],
    step_rule: StepRule,
    start: torch.Tensor | None = None,
    early_stop: bool = False,
    score_last: bool = True,
) -> DescentResult:
    """Ascend ``objective`` inside the ``norm`` ε-ball around ``x`` for ``steps`` steps.

    Parameters
    ----------
    objective
        ``objective(x_adv, index) -> (value, success)``; see :data:`Objective`.
    x
        The clean batch (the centre of every ball).
    eps, norm, clip_range
        The feasible set: the ``norm`` ball of radius ``eps`` around ``x``, inside ``clip_range``.
    steps
        Gradient steps; iterates ``0..steps`` are scored (``steps + 1`` objective calls, or
        ``steps`` when ``score_last`` is false).
    step_rule
        How to step (:class:`FixedStep` for PGD).
    start
        The first iterate (projected here); ``x`` itself when omitted.
    early_stop
        A sample leaves the batch at its first successful iterate, which is what it returns.
        Without it, success is only read off the last iterate.
    score_last
        Evaluate the last iterate. Callers that score the result themselves (an attack's final
        prediction, a training step) pass ``False`` and save one forward pass.

    Returns
    -------
    DescentResult
    """

    def feasible(points: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
        return project(points, centre, eps, norm, clip_range)

    n = len(x)
    device = x.device
    index = torch.arange(n, device=device)
    centre = x.detach()
    x_adv = feasible((x if start is None else start).detach(), centre)
    best = x_adv.clone()
    success = torch.zeros(n, dtype=torch.bool, device=device)
    queries = torch.zeros(n, dtype=torch.int64, device=device)
    for step in range(steps + 1):
        last = step == steps
        if last and not score_last:
            best[index] = x_adv
            break
        x_adv.requires_grad_(True)
        value, hit = objective(x_adv, index)
        queries[index] += 1
        hit = hit.detach()
        if last or (early_stop and hit.any()):
            won = index[hit]
            best[won] = x_adv.detach()[hit]
            success[won] = True
        if last:
            chosen = step_rule.final(x_adv.detach(), value.detach())
            best[index[~hit]] = chosen[~hit]
            break
        if early_stop and bool(hit.all()):
            break
        (grad,) = torch.autograd.grad(value.sum(), x_adv)
        with torch.no_grad():
            x_adv = x_adv.detach()
            if early_stop and hit.any():
                keep = ~hit
                x_adv, grad, value, centre, index = (
                    x_adv[keep],
                    grad[keep],
                    value[keep],
                    centre[keep],
                    index[keep],
                )
                step_rule.select(keep)
            x_adv = step_rule.step(
                x_adv, grad, value.detach(), partial(feasible, centre=centre)
            ).detach()
    return DescentResult(x_adv=best, success=success, queries=queries)


def classification_objective(
    logits_fn: Callable[[torch.Tensor], torch.Tensor],
    goal: torch.Tensor,
    *,
    targeted: bool,
    loss: str,
    eot_samples: int = 1,
) -> Objective:
    """The objective of an evasion attack: ascend ``loss``; success is the attack's goal met.

    ``goal`` holds the true labels (untargeted: success is any other prediction) or the target
    labels (targeted: success is predicting the target). With ``eot_samples > 1`` the model is
    taken to be randomized: the value is the mean loss over that many forward passes
    (Expectation over Transformation, Athalye et al. 2018) and an iterate counts as a success
    only when every pass meets the goal, so one lucky draw never stops the attack early.
    """

    draws = EOTDraws(logits_fn, eot_samples)

    def objective(x_adv: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        labels = goal[index]
        value = torch.zeros(len(x_adv), dtype=x_adv.dtype, device=x_adv.device)
        hit = torch.ones(len(x_adv), dtype=torch.bool, device=x_adv.device)
        for logits in draws(x_adv):
            pred = logits.argmax(1)
            hit &= pred == labels if targeted else pred != labels
            value = value + per_sample_loss(logits, labels, targeted=targeted, loss=loss)
        return value / eot_samples, hit

    return objective


class EOTDraws:
    """``eot_samples`` forward passes of a randomized model, as few calls as the model allows.

    A model whose randomness is drawn per sample (input noise, dropout, random resizing of each
    input) gives independent draws to identical rows of one batch, so the draws can be stacked
    into one call of ``eot_samples × n`` rows (at most :attr:`max_rows` per call): on small
    models the per-call overhead, not the arithmetic, is what EOT costs, and this made the
    randomized suite several times faster. Whether rows draw independently is checked once,
    on the first call, by passing the same input twice in one batch; a model that draws once
    per call (the same transformation for the whole batch) is called once per draw instead,
    so every draw stays independent.
    """

    max_rows = 1024
    """Rows per stacked call. Larger calls stop paying on a CPU: a forward and backward pass of
    the digits CNN cost about 38 µs a row from 256 to 2,048 rows and 53 µs at 4,096."""

    def __init__(self, logits_fn: Callable[[torch.Tensor], torch.Tensor], eot_samples: int) -> None:
        self.logits_fn = logits_fn
        self.eot_samples = eot_samples
        self.per_sample: bool | None = None if eot_samples > 1 else False

    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The ``eot_samples`` logits of ``x``, each of shape ``(n, classes)``."""
        if self.per_sample is None:
            with torch.no_grad():
                twice = self.logits_fn(x[:1].expand(2, *x.shape[1:]).contiguous())
            self.per_sample = not torch.equal(twice[0], twice[1])
        if not self.per_sample or len(x) == 0:
            return [self.logits_fn(x) for _ in range(self.eot_samples)]
        per_call = max(1, min(self.eot_samples, self.max_rows // len(x)))
        out: list[torch.Tensor] = []
        remaining = self.eot_samples
        while remaining:
            k = min(per_call, remaining)
            stacked = self.logits_fn(x.repeat(k, *([1] * (x.dim() - 1))))
            out.extend(stacked.split(len(x)))
            remaining -= k
        return out


def on_rows(objective: Objective, rows: torch.Tensor) -> Objective:
    """``objective`` for the sub-batch ``x[rows]``: its indices map back through ``rows``.

    Restarts and cascades attack only the samples not yet broken; this keeps the objective's
    per-sample data (labels, targets) indexed by the caller's full batch.
    """

    def restricted(x_adv: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return objective(x_adv, rows[index])

    return restricted
