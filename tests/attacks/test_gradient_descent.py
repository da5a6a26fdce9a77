"""The shared projected-gradient loop and its losses: invariants and closed-form cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn import functional as F

from mlwarden.attacks.evasion.gradient_descent import (
    LOSSES,
    FixedStep,
    classification_objective,
    dlr_loss,
    per_sample_loss,
    projected_gradient_descent,
    random_start,
)


def _linear_objective(w: torch.Tensor):
    """Ascend ``w·x``; success once ``w·x > 1``."""

    def objective(x_adv: torch.Tensor, index: torch.Tensor):
        value = x_adv.flatten(1) @ w
        return value, value > 1.0

    return objective


@settings(max_examples=25, deadline=None)
@given(
    eps=st.floats(0.01, 1.0),
    norm=st.sampled_from(["linf", "l2"]),
    steps=st.integers(1, 6),
    seed=st.integers(0, 2**16),
)
def test_every_returned_point_stays_inside_the_eps_ball_and_the_range(eps, norm, steps, seed):
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(8, 5, generator=generator)
    w = torch.randn(5, generator=generator)
    found = projected_gradient_descent(
        _linear_objective(w),
        x,
        eps=eps,
        norm=norm,
        steps=steps,
        clip_range=(0.0, 1.0),
        step_rule=FixedStep(3 * eps, norm),  # overshoots: the projection must catch it
        start=random_start(x, eps, norm, generator),
    )
    delta = (found.x_adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert bool((size <= eps + 1e-5).all())
    assert float(found.x_adv.min()) >= 0.0 and float(found.x_adv.max()) <= 1.0


def test_linf_ascent_on_a_linear_objective_reaches_the_closed_form_maximum() -> None:
    # max of w·x over the L∞ ball (unclipped) is w·x0 + eps·‖w‖₁, reached in one sign step
    x = torch.full((4, 6), 0.5)
    w = torch.tensor([1.0, -2.0, 0.5, 3.0, -0.25, 1.5])
    found = projected_gradient_descent(
        _linear_objective(w * 0),  # never succeeds: the last iterate is returned
        x,
        eps=0.1,
        norm="linf",
        steps=1,
        clip_range=(0.0, 1.0),
        step_rule=FixedStep(0.1, "linf"),
    )
    assert torch.equal(found.x_adv, x)  # zero gradient: nothing moves
    objective = _linear_objective(w)

    def never(x_adv, index):
        value, _ = objective(x_adv, index)
        return value, torch.zeros_like(value, dtype=torch.bool)

    found = projected_gradient_descent(
        never,
        x,
        eps=0.1,
        norm="linf",
        steps=3,
        clip_range=(0.0, 1.0),
        step_rule=FixedStep(0.05, "linf"),
    )
    reached = found.x_adv @ w
    expected = x @ w + 0.1 * w.abs().sum()
    assert torch.allclose(reached, expected, atol=1e-5)
    assert not bool(found.success.any())


def test_early_stop_returns_the_first_successful_iterate_and_stops_spending_queries() -> None:
    x = torch.zeros(3, 2)
    w = torch.tensor([1.0, 1.0])
    # steps of 0.3 along sign(w): w·x after k steps is 0.6k (capped by eps=2 per coordinate);
    # the first iterate with w·x > 1 is k = 2 (1.2); later iterates would be 1.8, 2.4, ...
    found = projected_gradient_descent(
        _linear_objective(w),
        x,
        eps=2.0,
        norm="linf",
        steps=10,
        clip_range=(-5.0, 5.0),
        step_rule=FixedStep(0.3, "linf"),
        early_stop=True,
    )
    assert bool(found.success.all())
    assert torch.allclose(found.x_adv, torch.full((3, 2), 0.6))
    assert found.queries.tolist() == [3, 3, 3]  # iterates 0, 1, 2


def test_without_score_last_the_last_iterate_costs_no_query() -> None:
    x = torch.zeros(2, 2)
    kwargs = dict(
        eps=1.0,
        norm="linf",
        steps=4,
        clip_range=(-1.0, 1.0),
        step_rule=FixedStep(0.1, "linf"),
    )
    scored = projected_gradient_descent(_linear_objective(torch.ones(2)), x, **kwargs)
    unscored = projected_gradient_descent(
        _linear_objective(torch.ones(2)), x, score_last=False, **kwargs
    )
    assert scored.queries.tolist() == [5, 5]
    assert unscored.queries.tolist() == [4, 4]
    assert torch.equal(scored.x_adv, unscored.x_adv)


def test_index_names_the_callers_rows_after_finished_samples_leave() -> None:
    seen: list[list[int]] = []
    x = torch.tensor([[0.0], [0.5], [0.9]])

    def objective(x_adv, index):
        seen.append(index.tolist())
        value = x_adv[:, 0]
        return value, value > 0.95

    projected_gradient_descent(
        objective,
        x,
        eps=1.0,
        norm="linf",
        steps=5,
        clip_range=(0.0, 2.0),
        step_rule=FixedStep(0.1, "linf"),
        early_stop=True,
    )
    assert seen[0] == [0, 1, 2]
    assert seen[1] == [0, 1, 2]  # 1.0 > 0.95 for row 2 after one step
    assert seen[2] == [0, 1]


def test_dlr_is_invariant_to_shifting_and_scaling_the_logits() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 10, generator=generator)
    labels = torch.randint(0, 10, (16,), generator=generator)
    base = dlr_loss(logits, labels)
    assert torch.allclose(dlr_loss(1000 * logits + 7, labels), base, atol=1e-5)
    # and cross-entropy is not: on confidently classified inputs it saturates to zero gradient
    big = (1000 * torch.tensor([[3.0, 1.0, 0.0, -1.0]])).requires_grad_(True)
    F.cross_entropy(big, torch.tensor([0]), reduction="sum").backward()
    assert float(big.grad.abs().max()) == 0.0


def test_dlr_closed_form_on_one_example() -> None:
    logits = torch.tensor([[3.0, 1.0, 0.0, -1.0]])
    # label 1: -(z_y - max_{j≠y} z_j) / (z_π1 - z_π3) = -(1 - 3) / (3 - 0)
    assert float(dlr_loss(logits, torch.tensor([1]))) == pytest.approx(2 / 3)
    # targeted at class 1: (z_t - max_{j≠t}) / (z_π1 - (z_π3 + z_π4)/2) = (1 - 3) / (3 + 0.5)
    value = per_sample_loss(logits, torch.tensor([1]), targeted=True, loss="dlr")
    assert float(value) == pytest.approx(-2 / 3.5)


@pytest.mark.parametrize("loss", LOSSES)
def test_every_loss_rises_as_the_attack_gets_closer_to_its_goal(loss: str) -> None:
    label = torch.tensor([0])
    confident = torch.tensor([[5.0, 0.0, -1.0]])
    confused = torch.tensor([[0.5, 0.4, -1.0]])
    untargeted = [
        per_sample_loss(z, label, targeted=False, loss=loss) for z in (confident, confused)
    ]
    assert float(untargeted[1]) > float(untargeted[0])
    target = torch.tensor([1])
    targeted = [per_sample_loss(z, target, targeted=True, loss=loss) for z in (confident, confused)]
    assert float(targeted[1]) > float(targeted[0])


def test_classification_objective_reports_success_by_the_attack_goal() -> None:
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0]])
    goal = torch.tensor([0, 0])
    objective = classification_objective(lambda x: x, goal, targeted=False, loss="ce")
    _, hit = objective(logits, torch.arange(2))
    assert hit.tolist() == [False, True]
    targeted = classification_objective(lambda x: x, torch.tensor([1, 1]), targeted=True, loss="ce")
    _, hit = targeted(logits, torch.arange(2))
    assert hit.tolist() == [False, True]
    assert np.isfinite(objective(logits, torch.arange(2))[0].detach().numpy()).all()


def test_apgd_returns_its_best_loss_point_when_it_never_succeeds() -> None:
    from mlwarden.attacks.evasion.apgd import APGDStep

    rule = APGDStep(eps=0.5, norm="linf", steps=4)
    x0 = torch.zeros(2, 3)
    rule.step(x0, torch.ones(2, 3), torch.tensor([5.0, 1.0]), lambda p: p.clamp(-0.5, 0.5))
    last = torch.full((2, 3), 0.5)
    chosen = rule.final(last, torch.tensor([4.0, 2.0]))  # row 0 got worse, row 1 better
    assert torch.equal(chosen[0], x0[0]) and torch.equal(chosen[1], last[1])


class _Noisy(torch.nn.Module):
    """Logits = input + noise, drawn per row (``per_row``) or once per call."""

    def __init__(self, per_row: bool) -> None:
        super().__init__()
        self.per_row = per_row
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        shape = x.shape if self.per_row else (1, *x.shape[1:])
        return x + torch.randn(shape)


@pytest.mark.parametrize("per_row", [True, False])
def test_eot_draws_are_independent_whether_stacked_or_called_one_by_one(per_row: bool) -> None:
    from mlwarden.attacks.evasion.gradient_descent import EOTDraws

    torch.manual_seed(0)
    model = _Noisy(per_row)
    x = torch.zeros(50, 3)
    draws = EOTDraws(model, 400)(x)
    assert len(draws) == 400 and all(d.shape == (50, 3) for d in draws)
    stacked = torch.stack(draws)  # (draw, row, class): N(0, 1) everywhere if independent
    # one detection call, then 400 draws stacked max_rows // 50 at a time, or one per call
    stacked_calls = -(-400 // (EOTDraws.max_rows // 50))
    assert model.calls == (1 + stacked_calls if per_row else 1 + 400)
    independent = 400 * 3 * (50 if per_row else 1)  # values drawn independently
    tolerance = 4 / independent**0.5  # four standard errors
    assert abs(float(stacked.mean())) < tolerance
    assert abs(float(stacked.std()) - 1.0) < tolerance
    # draws of one row are uncorrelated across draws (stacking must not copy a draw)
    first, second = stacked[0::2].flatten(), stacked[1::2].flatten()
    assert abs(float(torch.corrcoef(torch.stack([first, second]))[0, 1])) < 2 * tolerance
