"""Auto-PGD: step-size-free PGD with momentum (Croce & Hein, ICML 2020), untargeted and targeted.

APGD replaces PGD's fixed step with a budget-aware schedule: it starts at ``2ε``, moves with
momentum (``α = 0.75``), and at checkpoints ``w_j`` (22 % of the iterations, then shrinking by
3 % down to 6 %) halves the step of every sample whose loss stopped rising (fewer than 75 % of
the steps since the last checkpoint increased it, or the best loss did not improve since a
checkpoint where the step was kept), restarting it from its best point. With the DLR loss,
which is invariant to the scale of the logits, it does not stall on saturated softmax outputs
the way cross-entropy PGD does; APGD-T ascends the targeted DLR loss towards each of the most
likely wrong classes in turn. Together with Square Attack they form AutoAttack's standard suite.

Both run on the shared loop of :mod:`mlwarden.attacks.evasion.gradient_descent`; the schedule
is the :class:`APGDStep` rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mlwarden.attacks.base import Attack, Norm
from mlwarden.attacks.evasion.gradient_descent import (
    Objective,
    Projector,
    check_loss,
    classification_objective,
    normalized_step,
    on_rows,
    projected_gradient_descent,
    targeted_dlr_loss,
)
from mlwarden.models.base import Classifier, DifferentiableClassifier

__all__ = ["APGD", "APGDDLR", "APGDStep", "APGDTargeted", "apgd_start"]

_MOMENTUM = 0.75
_OSCILLATION = 0.75


class APGDStep:
    """APGD's step rule: momentum, and step halving with a restart from the best point.

    Parameters
    ----------
    eps
        The budget; the initial step is ``2·eps``.
    norm
        ``"linf"`` (sign steps) or ``"l2"`` (normalised gradient steps).
    steps
        The iteration budget ``N_iter`` the checkpoints are laid out on.
    """

    def __init__(self, *, eps: float, norm: str, steps: int) -> None:
        self.eps = eps
        self.norm = norm
        self.steps = steps
        self._iteration = 0
        self._period = max(int(0.22 * steps), 1)
        self._min_period = max(int(0.06 * steps), 1)
        self._decrease = max(int(0.03 * steps), 1)
        self._since_check = 0

    def select(self, keep: torch.Tensor) -> None:
        if self._iteration == 0:  # no state yet: samples finished at their start
            return
        for name in (
            "_step_size",
            "_previous",
            "_best_x",
            "_best_grad",
            "_best_loss",
            "_best_at_check",
            "_reduced_at_check",
            "_history",
        ):
            setattr(self, name, getattr(self, name)[keep])

    def step(
        self, x_adv: torch.Tensor, grad: torch.Tensor, value: torch.Tensor, project: Projector
    ) -> torch.Tensor:
        n = len(x_adv)
        if self._iteration == 0:
            self._step_size = torch.full((n,), 2.0 * self.eps, device=x_adv.device)
            self._best_x, self._best_grad = x_adv.clone(), grad.clone()
            self._best_loss = value.clone()
            self._best_at_check = value.clone()
            self._reduced_at_check = torch.zeros(n, dtype=torch.bool, device=x_adv.device)
            self._history = torch.zeros(n, self.steps + 1, device=x_adv.device, dtype=value.dtype)
            self._history[:, 0] = value
            self._previous = x_adv
            self._iteration = 1
            return project(x_adv + self._scaled(normalized_step(grad, self.norm)))

        j = self._iteration
        self._history[:, j] = value
        improved = value > self._best_loss
        self._best_x[improved] = x_adv[improved]
        self._best_grad[improved] = grad[improved]
        self._best_loss[improved] = value[improved]
        self._since_check += 1
        if self._since_check == self._period:
            window = self._history[:, j - self._period : j + 1]
            increases = (window[:, 1:] > window[:, :-1]).sum(dim=1)
            halve = increases <= _OSCILLATION * self._period
            halve |= ~self._reduced_at_check & (self._best_at_check >= self._best_loss)
            self._reduced_at_check = halve
            self._best_at_check = self._best_loss.clone()
            if halve.any():
                self._step_size[halve] /= 2.0
                x_adv = x_adv.clone()
                grad = grad.clone()
                x_adv[halve] = self._best_x[halve]
                grad[halve] = self._best_grad[halve]
            self._period = max(self._period - self._decrease, self._min_period)
            self._since_check = 0
        z = project(x_adv + self._scaled(normalized_step(grad, self.norm)))
        following = project(
            x_adv + _MOMENTUM * (z - x_adv) + (1 - _MOMENTUM) * (x_adv - self._previous)
        )
        self._previous = x_adv
        self._iteration += 1
        return following

    def final(self, x_last: torch.Tensor, value_last: torch.Tensor) -> torch.Tensor:
        """The highest-loss point seen (APGD returns it when it finds no adversarial point).

        On a randomized model the loss is averaged over draws (EOT), so this is the point most
        likely to be misclassified, which the last iterate need not be.
        """
        if self._iteration == 0:
            return x_last
        better = value_last > self._best_loss
        return torch.where(_rows(better, x_last), x_last, self._best_x)

    def _scaled(self, direction: torch.Tensor) -> torch.Tensor:
        return self._step_size.view(-1, *([1] * (direction.dim() - 1))) * direction


def _rows(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.view(-1, *([1] * (like.dim() - 1)))


def apgd_start(x: torch.Tensor, eps: float, norm: str, generator: torch.Generator) -> torch.Tensor:
    """APGD's random start: a random direction scaled onto the ε-sphere (L∞: its corner box)."""
    if norm == "linf":
        t = 2 * torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) - 1
        size = t.flatten(1).abs().amax(dim=1).clamp_min(1e-12)
    else:
        t = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        size = t.flatten(1).norm(dim=1).clamp_min(1e-12)
    return x + eps * t / size.view(-1, *([1] * (x.dim() - 1)))


class _APGDBase(Attack):
    needs_gradients = True

    def __init__(
        self,
        *,
        eps: float,
        norm: Norm = "linf",
        targeted: bool = False,
        steps: int = 100,
        restarts: int = 1,
        eot_samples: int = 1,
        seed: int = 0,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(eps=eps, norm=norm, targeted=targeted, seed=seed, batch_size=batch_size)
        self.steps = steps
        self.restarts = restarts
        self.eot_samples = eot_samples

    def _validate_params(self) -> None:
        super()._validate_params()
        self._check_counts("steps", "restarts", "eot_samples")

    def _descend(
        self,
        objective: Objective,
        x: torch.Tensor,
        clip: tuple[float, float],
        generator: torch.Generator,
        state: _Best,
        score: Objective | None = None,
    ) -> None:
        """Run the restarts of one APGD on the samples not yet ``done``, updating in place.

        A sample no run breaks keeps the highest-``score`` point any run reached (``score``
        defaults to ``objective``; APGD-T compares its runs towards different targets on the
        untargeted loss). On a deterministic model that point is still classified correctly,
        but on a randomized one it is the point most likely to be misclassified, which the
        mean over draws must see: returning the clean input instead overstated robust accuracy
        by 15 points on a noisy-input CNN.
        """
        score = objective if score is None else score
        best, done, queries = state.x, state.done, state.queries
        eps = float(self.eps)
        for _ in range(self.restarts):
            active = torch.nonzero(~done).squeeze(1)
            if active.numel() == 0 or eps == 0:
                return
            x0 = x[active]
            found = projected_gradient_descent(
                on_rows(objective, active),
                x0,
                eps=eps,
                norm=self.norm,
                steps=self.steps,
                clip_range=clip,
                step_rule=APGDStep(eps=eps, norm=self.norm, steps=self.steps),
                start=apgd_start(x0, eps, self.norm, generator),
                early_stop=True,
            )
            queries[active] += found.queries * self.eot_samples
            best[active[found.success]] = found.x_adv[found.success]
            done[active[found.success]] = True
            missed = active[~found.success]
            if missed.numel():
                with torch.no_grad():
                    value, _ = score(found.x_adv[~found.success], missed)
                queries[missed] += self.eot_samples
                higher = value > state.value[missed]
                best[missed[higher]] = found.x_adv[~found.success][higher]
                state.value[missed[higher]] = value[higher]


class APGD(_APGDBase):
    """APGD with the cross-entropy or DLR loss (Croce & Hein, ICML 2020).

    Parameters
    ----------
    eps, norm, targeted, seed, batch_size
        See :class:`~mlwarden.attacks.base.Attack`.
    loss
        ``"ce"`` (APGD-CE), ``"dlr"`` (APGD-DLR, robust to rescaled logits) or ``"margin"``.
    steps
        Iterations per restart (100 in AutoAttack).
    restarts
        Random restarts; each only attacks samples not yet broken.
    eot_samples
        Forward passes averaged per iterate for randomized models (Expectation over
        Transformation); a sample stops only when every pass is fooled.
    """

    name = "apgd"

    def __init__(
        self,
        *,
        eps: float,
        norm: Norm = "linf",
        targeted: bool = False,
        loss: str = "ce",
        steps: int = 100,
        restarts: int = 1,
        eot_samples: int = 1,
        seed: int = 0,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(
            eps=eps,
            norm=norm,
            targeted=targeted,
            steps=steps,
            restarts=restarts,
            eot_samples=eot_samples,
            seed=seed,
            batch_size=batch_size,
        )
        self.loss = loss

    def _validate_params(self) -> None:
        super()._validate_params()
        check_loss(self.name, self.loss)

    def _generate(
        self, classifier: Classifier, x: torch.Tensor, goal: torch.Tensor, *, seed: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        assert isinstance(classifier, DifferentiableClassifier)
        generator = torch.Generator(device=x.device).manual_seed(seed)
        objective = classification_objective(
            classifier.logits,
            goal,
            targeted=self.targeted,
            loss=self.loss,
            eot_samples=self.eot_samples,
        )
        state = _initial(objective, x, self.eot_samples)
        self._descend(objective, x, classifier.clip_range, generator, state)
        return state.x, state.queries


class APGDDLR(APGD):
    """APGD on the DLR loss, registered on its own so a suite can run it beside APGD-CE.

    AutoAttack's version for randomized defences runs APGD-CE then APGD-DLR, both with EOT.
    """

    name = "apgd-dlr"

    def __init__(
        self,
        *,
        eps: float,
        norm: Norm = "linf",
        targeted: bool = False,
        loss: str = "dlr",
        steps: int = 100,
        restarts: int = 1,
        eot_samples: int = 1,
        seed: int = 0,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(
            eps=eps,
            norm=norm,
            targeted=targeted,
            loss=loss,
            steps=steps,
            restarts=restarts,
            eot_samples=eot_samples,
            seed=seed,
            batch_size=batch_size,
        )


class APGDTargeted(_APGDBase):
    """APGD-T: APGD on the targeted DLR loss towards each of the top wrong classes in turn.

    An untargeted attack (success is any misclassification) that, for the ``k``-th most likely
    wrong class at the clean input (``k = 1..target_classes``), ascends
    ``-(z_y - z_t) / (z_π1 - (z_π3 + z_π4)/2)`` on the samples still correctly classified
    (Croce & Hein, ICML 2020; AutoAttack uses 9 target classes, 100 steps, 1 restart each).

    Parameters
    ----------
    eps, norm, targeted, seed, batch_size
        See :class:`~mlwarden.attacks.base.Attack`. With ``targeted=True`` the target labels
        are given, and the attack is one targeted-DLR APGD towards them.
    target_classes
        How many of the most likely wrong classes to try (at most ``n_classes - 1``).
    steps, restarts, eot_samples
        As for :class:`APGD`, per target class.
    """

    name = "apgd-t"

    def __init__(
        self,
        *,
        eps: float,
        norm: Norm = "linf",
        targeted: bool = False,
        target_classes: int = 9,
        steps: int = 100,
        restarts: int = 1,
        eot_samples: int = 1,
        seed: int = 0,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(
            eps=eps,
            norm=norm,
            targeted=targeted,
            steps=steps,
            restarts=restarts,
            eot_samples=eot_samples,
            seed=seed,
            batch_size=batch_size,
        )
        self.target_classes = target_classes

    def _validate_params(self) -> None:
        super()._validate_params()
        self._check_counts("target_classes")

    def _generate(
        self, classifier: Classifier, x: torch.Tensor, goal: torch.Tensor, *, seed: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        assert isinstance(classifier, DifferentiableClassifier)
        generator = torch.Generator(device=x.device).manual_seed(seed)
        if self.targeted:  # the target is given: one targeted-DLR APGD towards it
            aimed = classification_objective(
                classifier.logits, goal, targeted=True, loss="dlr", eot_samples=self.eot_samples
            )
            state = _initial(aimed, x, self.eot_samples)
            self._descend(aimed, x, classifier.clip_range, generator, state)
            return state.x, state.queries
        untargeted = classification_objective(
            classifier.logits, goal, targeted=False, loss="ce", eot_samples=self.eot_samples
        )
        state = _initial(untargeted, x, self.eot_samples)
        with torch.no_grad():
            ranking = classifier.logits(x).argsort(dim=1, descending=True)
        wrong_ranked = _wrong_classes_by_rank(ranking, goal)
        for rank in range(min(self.target_classes, classifier.n_classes - 1)):
            objective = _targeted_dlr_objective(
                classifier, goal, wrong_ranked[:, rank], self.eot_samples
            )
            self._descend(objective, x, classifier.clip_range, generator, state, score=untargeted)
        return state.x, state.queries


@dataclass
class _Best:
    """Per sample: the point returned, its score, whether it is adversarial, queries spent."""

    x: torch.Tensor
    value: torch.Tensor
    done: torch.Tensor
    queries: torch.Tensor


def _initial(objective: Objective, x: torch.Tensor, eot_samples: int) -> _Best:
    """Score the clean inputs: those already adversarial are done (one query each)."""
    with torch.no_grad():
        value, done = objective(x, torch.arange(len(x), device=x.device))
    queries = torch.full((len(x),), eot_samples, dtype=torch.int64, device=x.device)
    return _Best(x=x.clone(), value=value.detach().clone(), done=done.clone(), queries=queries)


def _wrong_classes_by_rank(ranking: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per sample, the classes other than its label, most likely first."""
    keep = ranking != labels[:, None]
    return ranking[keep].view(len(ranking), -1)


def _targeted_dlr_objective(
    classifier: DifferentiableClassifier,
    labels: torch.Tensor,
    targets: torch.Tensor,
    eot_samples: int,
) -> Objective:
    def objective(x_adv: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, t = labels[index], targets[index]
        value = torch.zeros(len(x_adv), dtype=x_adv.dtype, device=x_adv.device)
        hit = torch.ones(len(x_adv), dtype=torch.bool, device=x_adv.device)
        for _ in range(eot_samples):
            logits = classifier.logits(x_adv)
            hit &= logits.argmax(1) != y
            value = value + targeted_dlr_loss(logits, y, t)
        return value / eot_samples, hit

    return objective
