"""The empirical DP audit: the ε formula in closed form, intervals, and the two proof points
(clearly above zero for an overfit model, below the claim for DP-SGD)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom

from mlwarden.attacks.privacy import (
    audit_from_scores,
    clopper_pearson,
    epsilon_lower_bound,
    make_canaries,
    one_run_epsilon_bound,
    run_audit,
)
from mlwarden.attacks.privacy.dp_audit import roc_epsilon_bound
from mlwarden.data import Dataset, load_builtin
from mlwarden.errors import AttackError

from .conftest import DP_DELTA, DP_EPSILON, DP_WARNINGS, train_memoriser, train_private


@pytest.mark.parametrize("eps", [0.1, 1.0, 3.0])
def test_epsilon_formula_recovers_randomised_response(eps: float) -> None:
    # randomised response at ε: TPR = e^ε / (1 + e^ε), FPR = 1 / (1 + e^ε), both bounds tight
    tpr, fpr = math.exp(eps) / (1 + math.exp(eps)), 1 / (1 + math.exp(eps))
    assert float(epsilon_lower_bound(tpr, fpr, 0.0)) == pytest.approx(eps)


def test_epsilon_formula_subtracts_delta_and_uses_the_mirror_bound() -> None:
    # TPR = e^ε·FPR + δ exactly
    assert float(epsilon_lower_bound(math.e * 0.1 + 0.01, 0.1, 0.01)) == pytest.approx(1.0)
    # low TPR but very low FNR side: 1 - FPR = e^ε (1 - TPR)
    assert float(epsilon_lower_bound(0.99, 0.5, 0.0)) == pytest.approx(math.log(0.5 / 0.01))
    assert float(epsilon_lower_bound(0.3, 0.3, 0.0)) == 0.0  # a useless attack proves nothing
    assert math.isinf(float(epsilon_lower_bound(0.5, 0.0, 0.0)))


def test_clopper_pearson_matches_its_closed_forms() -> None:
    n, alpha = 40, 0.05
    low, high = clopper_pearson(0, n, alpha)
    assert low == 0.0 and high == pytest.approx(1 - (alpha / 2) ** (1 / n))
    low, high = clopper_pearson(n, n, alpha)
    assert high == 1.0 and low == pytest.approx((alpha / 2) ** (1 / n))
    low, high = clopper_pearson(np.array([10, 20]), 40, alpha)
    assert (low < np.array([0.25, 0.5])).all() and (high > np.array([0.25, 0.5])).all()
    with pytest.raises(AttackError):
        clopper_pearson(5, 4, alpha)


def test_clopper_pearson_is_two_sided_with_alpha_split_between_the_ends() -> None:
    # tabulated exact 90% interval for 7 of 10; a one-sided 90% lower end would be 0.4496
    low, high = clopper_pearson(7, 10, 0.10)
    assert float(low) == pytest.approx(0.3933758, abs=1e-6)
    assert float(high) == pytest.approx(0.9127356, abs=1e-6)


def test_audit_bound_is_pinned_on_a_tied_score_sample() -> None:
    # values of the hand-written ROC/Clopper-Pearson code this replaced; sklearn's ROC and
    # SciPy's binomtest must reproduce them (ties, threshold choice and both bounds)
    rng = np.random.default_rng(7)
    included = rng.random(600) < 0.5
    scores = np.round(rng.normal(size=600) + 1.5 * included, 1)
    result = audit_from_scores(scores, included, delta=1e-5, seed=3)
    assert result.threshold == 2.6
    assert result.epsilon_lb == pytest.approx(1.0608962866817055, rel=1e-9)
    assert result.epsilon_lb_one_run == pytest.approx(2.579627608575862, rel=1e-9)
    assert roc_epsilon_bound(scores, included, delta=1e-5) == pytest.approx(
        2.2311248953529548, rel=1e-9
    )


def test_audit_of_a_known_mechanism_is_valid_and_nearly_tight() -> None:
    # randomised response at ε=1 over 40,000 trials: the 95% lower bound sits just below 1
    rng = np.random.default_rng(0)
    included = rng.random(40_000) < 0.5
    truthful = rng.random(40_000) < math.e / (1 + math.e)
    scores = np.where(truthful, included, ~included).astype(float)
    result = audit_from_scores(scores, included, delta=0.0, seed=0)
    assert 0.85 < result.epsilon_lb <= 1.0
    assert result.epsilon_ci[0] <= result.epsilon_point <= result.epsilon_ci[1]


def test_the_verdict_uses_the_one_run_bound_when_runs_hold_several_canaries() -> None:
    import dataclasses

    rng = np.random.default_rng(0)
    included = rng.random(4_000) < 0.5
    truthful = rng.random(4_000) < math.e / (1 + math.e)
    scores = np.where(truthful, included, ~included).astype(float)
    result = audit_from_scores(scores, included, delta=0.0, seed=0, claimed_epsilon=0.5)
    one_per_run = dataclasses.replace(result, n_canaries=10, n_runs=10)
    several = dataclasses.replace(result, n_canaries=300, n_runs=3)
    assert one_per_run.epsilon_lb_verdict == result.epsilon_lb  # independent trials
    assert several.epsilon_lb_verdict == result.epsilon_lb_one_run  # correlated trials
    assert several.consistent is (result.epsilon_lb_one_run <= 0.5)
    assert several.to_dict()["epsilon_lb_verdict"] == result.epsilon_lb_one_run


@pytest.mark.parametrize(("correct", "guesses"), [(90, 100), (60, 100), (300, 310)])
def test_one_run_bound_inverts_the_binomial_tail(correct: int, guesses: int) -> None:
    eps = one_run_epsilon_bound(correct, guesses, 0.95)
    p = math.exp(eps) / (1 + math.exp(eps))
    # at the bound, seeing this many correct guesses has probability exactly 5%
    assert binom.sf(correct - 1, guesses, p) == pytest.approx(0.05, rel=1e-6)
    assert one_run_epsilon_bound(40, 100, 0.95) == 0.0  # worse than guessing proves nothing


def test_one_run_audit_of_a_known_mechanism_stays_below_its_epsilon() -> None:
    rng = np.random.default_rng(1)
    included = rng.random(40_000) < 0.5
    truthful = rng.random(40_000) < math.e / (1 + math.e)
    scores = np.where(truthful, included, ~included).astype(float)
    result = audit_from_scores(scores, included, delta=0.0, seed=0)
    assert 0.85 < result.epsilon_lb_one_run <= 1.0


def test_audit_needs_enough_trials() -> None:
    with pytest.raises(AttackError, match="at least 4 included"):
        audit_from_scores(np.arange(6.0), np.array([1, 1, 1, 0, 0, 0], bool), delta=0.0)


def test_mislabel_canaries_leave_the_training_set() -> None:
    train = load_builtin("digits").train
    base, canaries = make_canaries(train, 50, seed=0)
    assert len(base) + len(canaries) == len(train)
    originals = {x.tobytes(): y for x, y in zip(train.x, train.y, strict=True)}
    assert all(originals[x.tobytes()] != y for x, y in zip(canaries.x, canaries.y, strict=True))
    with pytest.raises(AttackError, match="canary kind"):
        make_canaries(train, 50, kind="bogus")  # type: ignore[arg-type]


def test_audit_of_an_overfit_model_is_clearly_above_zero_and_above_3(audit_data: Dataset) -> None:
    result = run_audit(
        train_memoriser, audit_data, n_canaries=300, n_runs=3, delta=DP_DELTA, seed=0
    )
    assert result.epsilon_lb > DP_EPSILON  # the same audit that must pass for DP can fail
    assert result.epsilon_ci[0] == result.epsilon_lb <= result.epsilon_point
    assert result.epsilon_lb_one_run > 1.0


@pytest.mark.slow
@pytest.mark.filterwarnings(*DP_WARNINGS)
def test_audit_of_a_dp_model_stays_below_the_claimed_epsilon(audit_data: Dataset) -> None:
    result = run_audit(
        train_private,
        audit_data,
        n_canaries=300,
        n_runs=3,
        delta=DP_DELTA,
        seed=0,
        claimed_epsilon=DP_EPSILON,
    )
    assert result.consistent
    assert result.epsilon_lb < DP_EPSILON
    assert result.epsilon_lb_one_run < DP_EPSILON
