"""Fast Minimum-Norm attack (FMN; Pintor, Roli, Brendel & Biggio, NeurIPS 2021), untargeted and
towards the most likely wrong classes (FMN-T).

Fixed-budget attacks (PGD, APGD) ask "is there an adversarial point within ε?"; a minimum-norm
attack asks "how close is the nearest one?". FMN answers with a projected gradient descent on
the logit margin whose ball radius ``ε_k`` adapts at every step: while the iterate is not yet
adversarial the radius grows (first to the linear estimate ``‖δ‖ + margin / ‖∇‖_dual`` of the
distance to the boundary, then by a factor ``1 + γ_k``); once it is, the radius shrinks
(``min(ε_k (1 - γ_k), ‖δ*‖)``) to pull the iterate back towards the input. Step size ``α_k``
and ``γ_k`` follow cosine annealing. It plays FAB-T's part in AutoAttack's suite: a method
with a different search dynamic, so a point the loss-ascent attacks miss through a bad step
size or a flat loss can still be found.

Evaluated at a fixed budget ``eps`` (as ``assess`` does), a sample is broken when FMN finds an
adversarial point of norm at most ``eps``; the attack stops on it at once (the shared loop's
early stop), and :attr:`FMN.last_min_norms_` holds the smallest adversarial norm each sample
reached (``inf`` where none was found).

Runs on the shared loop of :mod:`mlwarden.attacks.evasion.gradient_descent`; the radius
schedule is the :class:`FMNStep` rule.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from mlwarden.attacks.base import Attack, Norm
from mlwarden.attacks.evasion.gradient_descent import (
    Objective,
    Projector,
    normalized_step,
    on_rows,
    projected_gradient_descent,
)
from mlwarden.models.base import Classifier, DifferentiableClassifier

__all__ = ["FMN", "FMNStep"]

_GAMMA = (0.05, 0.001)
"""Initial and final radius factor ``γ`` (the paper's defaults)."""


def _cosine(start: float, end: float, step: int, steps: int) -> float:
    """Cosine annealing from ``start`` (step 0) to ``end`` (step ``steps``)."""
    return end + (start - end) * (1 + math.cos(math.pi * step / max(steps, 1))) / 2


def _norms(delta: torch.Tensor, norm: str) -> torch.Tensor:
    flat = delta.flatten(1)
    return flat.abs().amax(dim=1) if norm == "linf" else flat.norm(p=2, dim=1)


class FMNStep:
    """FMN's step rule: an adaptive radius ``ε_k`` around the input, gradient steps of size ``α_k``.

    ``value`` is the margin the attack ascends (``max_{j≠y} z_j - z_y`` untargeted,
    ``z_t - z_y`` towards target ``t``): the iterate is adversarial where it is positive.

    Parameters
    ----------
    x
        The clean batch (the centre of every radius); rows leave with :meth:`select`.
    norm
        ``"linf"`` or ``"l2"``.
    steps
        The iteration budget the annealing schedules are laid out on.
    alpha
        Initial step size along the L2-normalised gradient (annealed to ``alpha / 100``).
    clip_range
        The valid input range: coordinates at its edge pushed outwards are left out of the step.
    """

    def __init__(
        self,
        *,
        x: torch.Tensor,
        norm: str,
        steps: int,
        alpha: float,
        clip_range: tuple[float, float],
    ) -> None:
        self.norm = norm
        self.clip_range = clip_range
        self.steps = steps
        self.alpha = alpha
        self._x = x
        n = len(x)
        self._radius = torch.zeros(n, dtype=x.dtype, device=x.device)
        self._best_norm = torch.full((n,), math.inf, dtype=x.dtype, device=x.device)
        self._best_x = x.clone()
        self._iteration = 0

    @property
    def best_norms(self) -> torch.Tensor:
        """Per remaining row: the smallest adversarial norm reached (``inf`` if none)."""
        return self._best_norm

    def select(self, keep: torch.Tensor) -> None:
        self._x = self._x[keep]
        self._radius = self._radius[keep]
        self._best_norm = self._best_norm[keep]
        self._best_x = self._best_x[keep]

    def _record(self, x_adv: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """Keep each row's smallest adversarial iterate; return the iterates' norms."""
        size = _norms(x_adv - self._x, self.norm)
        smaller = (value > 0) & (size < self._best_norm)
        self._best_norm = torch.where(smaller, size, self._best_norm)
        self._best_x[smaller] = x_adv[smaller]
        return size

    def step(
        self, x_adv: torch.Tensor, grad: torch.Tensor, value: torch.Tensor, project: Projector
    ) -> torch.Tensor:
        k = self._iteration + 1
        self._iteration = k
        gamma = _cosine(*_GAMMA, k, self.steps)
        alpha = _cosine(self.alpha, self.alpha / 100, k, self.steps)
        delta = x_adv - self._x
        size = self._record(x_adv, value)
        adversarial = value > 0
        found = torch.isfinite(self._best_norm)
        # not adversarial: grow the radius (to the boundary's linear estimate before any hit)
        dual = (
            grad.flatten(1).abs().sum(dim=1) if self.norm == "linf" else grad.flatten(1).norm(dim=1)
        )
        estimate = size + (-value).clamp_min(0) / dual.clamp_min(1e-12)
        # (the estimate is exact for a linear model, so it lands on the boundary itself, which
        # is not adversarial: overshoot it by the same factor the radius grows by)
        grown = torch.where(found, self._radius, estimate) * (1 + gamma)
        shrunk = torch.minimum(self._radius * (1 - gamma), self._best_norm)
        self._radius = torch.where(adversarial, shrunk, grown)
        # coordinates pinned at the input range's edge and pushed outwards would be clipped
        # away: leave them out of the direction, so the step's length goes where it can move
        low, high = self.clip_range
        blocked = ((x_adv <= low) & (grad < 0)) | ((x_adv >= high) & (grad > 0))
        moved = delta + alpha * normalized_step(grad.masked_fill(blocked, 0.0), "l2")
        return project(self._x + _into_radius(moved, self._radius, self.norm))

    def final(self, x_last: torch.Tensor, value_last: torch.Tensor) -> torch.Tensor:
        """The smallest adversarial point found (the input where there is none)."""
        self._record(x_last, value_last)
        found = torch.isfinite(self._best_norm).view(-1, *([1] * (x_last.dim() - 1)))
        return torch.where(found, self._best_x, self._x)


def _into_radius(delta: torch.Tensor, radius: torch.Tensor, norm: str) -> torch.Tensor:
    """Project each row of ``delta`` onto its own ``norm`` ball of ``radius``."""
    shape = (-1, *([1] * (delta.dim() - 1)))
    r = radius.view(shape)
    if norm == "linf":
        return torch.maximum(torch.minimum(delta, r), -r)
    size = delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(shape)
    return delta * (r / size).clamp(max=1.0)


class FMN(Attack):
    """Fast Minimum-Norm attack (Pintor et al., NeurIPS 2021), evaluated at the budget ``eps``.

    Parameters
    ----------
    eps, norm, targeted, seed, batch_size
        See :class:`~mlwarden.attacks.base.Attack`. ``eps`` is the budget a point must fit in
        to count; the search itself is not bounded by it.
    steps
        Iterations per run (100, as FAB-T in AutoAttack).
    target_classes
        Untargeted, 0 runs one FMN on the untargeted margin; ``k >= 1`` runs FMN-T towards each
        of the ``k`` most likely wrong classes in turn, on the samples not yet broken (with
        ``targeted=True`` the given targets are used instead).
    alpha
        Initial step size along the L2-normalised gradient, annealed to ``alpha / 100``
        (``None``: the width of the input range, the paper's 1 for inputs in ``[0, 1]``).
    minimize
        Run every step to shrink each sample's adversarial norm (the minimum-norm attack proper,
        recorded in :attr:`last_min_norms_`) instead of stopping at the first adversarial point
        within ``eps`` (what a fixed-budget evaluation needs, and cheaper).

    Attributes
    ----------
    last_min_norms_
        After :meth:`generate`: per sample, the smallest adversarial norm found (0 for inputs
        already misclassified, ``inf`` where none was found). Without ``minimize`` it is only
        an upper bound, the norm of the point the attack stopped at.
    """

    name = "fmn"
    needs_gradients = True

    def __init__(
        self,
        *,
        eps: float,
        norm: Norm = "linf",
        targeted: bool = False,
        steps: int = 100,
        target_classes: int = 0,
        alpha: float | None = None,
        minimize: bool = False,
        seed: int = 0,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(eps=eps, norm=norm, targeted=targeted, seed=seed, batch_size=batch_size)
        self.steps = steps
        self.target_classes = target_classes
        self.alpha = alpha
        self.minimize = minimize
        self.last_min_norms_: np.ndarray = np.zeros(0)

    def _validate_params(self) -> None:
        super()._validate_params()
        self._check_counts("steps")
        if (
            isinstance(self.target_classes, bool)
            or not isinstance(self.target_classes, int)
            or self.target_classes < 0
        ):
            from mlwarden.errors import AttackError

            raise AttackError(
                f"{self.name}: target_classes must be an integer >= 0, got {self.target_classes!r}"
            )
        if self.alpha is not None and not (isinstance(self.alpha, (int, float)) and self.alpha > 0):
            from mlwarden.errors import AttackError

            raise AttackError(f"{self.name}: alpha must be a number > 0, got {self.alpha!r}")

    def _generate(
        self, classifier: Classifier, x: torch.Tensor, goal: torch.Tensor, *, seed: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        assert isinstance(classifier, DifferentiableClassifier)
        low, high = classifier.clip_range
        span = float(high - low)
        alpha = span if self.alpha is None else float(self.alpha)
        best = x.clone()
        done = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        min_norms = torch.full((len(x),), math.inf, dtype=x.dtype, device=x.device)
        queries = torch.ones(len(x), dtype=torch.int64, device=x.device)
        with torch.no_grad():
            logits = classifier.logits(x)
        if self.targeted:
            runs: list[torch.Tensor | None] = [None]
        else:
            done |= logits.argmax(1) != goal
            min_norms[done] = 0.0
            best[done] = x[done]
            if self.target_classes == 0:
                runs = [None]
            else:
                ranking = logits.argsort(dim=1, descending=True)
                wrong = ranking[ranking != goal[:, None]].view(len(x), -1)
                count = min(self.target_classes, classifier.n_classes - 1)
                runs = [wrong[:, r] for r in range(count)]
        outer = span if self.norm == "linf" else span * math.sqrt(x[0].numel())
        budget = float(self.eps) * (1 + 1e-6) + 1e-7
        misclassified = done.clone()
        for targets in runs:
            # the fixed-budget search drops broken samples; the minimum-norm one keeps them all
            active = torch.nonzero(~(misclassified if self.minimize else done)).squeeze(1)
            if active.numel() == 0 or (self.eps == 0 and not self.minimize):
                break
            objective = _margin_objective(
                classifier, goal, targets, float(self.eps), self.norm, x, self.targeted
            )
            rule = FMNStep(
                x=x[active], norm=self.norm, steps=self.steps, alpha=alpha, clip_range=(low, high)
            )

            found = projected_gradient_descent(
                on_rows(objective, active),
                x[active],
                eps=outer,
                norm=self.norm,
                steps=self.steps,
                clip_range=(low, high),
                step_rule=rule,
                early_stop=not self.minimize,
            )
            queries[active] += found.queries
            if self.minimize:  # no row left early: the rule's records cover every active one
                smaller = rule.best_norms < min_norms[active]
                min_norms[active[smaller]] = rule.best_norms[smaller]
                better = smaller & (rule.best_norms <= budget)
                best[active[better]] = found.x_adv[better]
                done[active[better]] = True
            else:
                hit = active[found.success]
                best[hit] = found.x_adv[found.success]
                done[hit] = True
                reached = _norms(found.x_adv - x[active], self.norm)
                min_norms[hit] = torch.minimum(min_norms[hit], reached[found.success])
        self.last_min_norms_ = min_norms.cpu().numpy()
        return best, queries


def _margin_objective(
    classifier: DifferentiableClassifier,
    labels: torch.Tensor,
    targets: torch.Tensor | None,
    eps: float,
    norm: str,
    x: torch.Tensor,
    targeted: bool,
) -> Objective:
    """The margin FMN ascends (positive when adversarial); success is adversarial within ``eps``."""

    def objective(x_adv: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = classifier.logits(x_adv)
        y = labels[index]
        if targets is None:
            own = logits.gather(1, y[:, None]).squeeze(1)
            other = logits.scatter(1, y[:, None], float("-inf")).amax(dim=1)
            value = other - own
        elif targeted:  # labels are the targets: the target must beat every other class
            own = logits.gather(1, y[:, None]).squeeze(1)
            other = logits.scatter(1, y[:, None], float("-inf")).amax(dim=1)
            value = own - other
        else:
            t = targets[index]
            value = logits.gather(1, t[:, None]).squeeze(1) - logits.gather(1, y[:, None]).squeeze(
                1
            )
        pred = logits.argmax(1)
        adversarial = pred == y if targeted else pred != y
        within = _norms(x_adv.detach() - x[index], norm) <= eps * (1 + 1e-6) + 1e-7
        return value, adversarial & within

    return objective
