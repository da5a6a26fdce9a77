"""Ground truth: on a linear classifier the exact robust accuracy has a closed form.

For ``f(x) = w·x + b`` and a box that never binds, the strongest perturbation of L∞ size ε moves
the score by ``ε‖w‖₁`` and the strongest of L2 size ε by ``ε‖w‖₂``, so a point survives exactly
when its signed margin exceeds that. A correct attack reaches this bound; a weaker one leaves
robust accuracy above it.
"""

from __future__ import annotations

import numpy as np
import pytest

from mlwarden.attacks import FGSM, PGD, get_attack

TOLERANCE = 0.01 + 1e-9  # one percentage point of robust accuracy, robust to float rounding
LINF_EPS = (0.02, 0.05, 0.1, 0.2)
L2_EPS = (0.2, 0.5, 1.0)


def test_linear_problem_spans_robust_and_fragile_points(linear_problem) -> None:
    exact = [linear_problem.exact_robust_accuracy(eps, "linf") for eps in LINF_EPS]
    assert exact == sorted(exact, reverse=True)
    assert exact[0] > 0.75
    assert exact[-1] < 0.3


def test_box_never_binds_on_the_linear_problem(linear_problem) -> None:
    low, high = linear_problem.classifier.clip_range
    widest = max(*LINF_EPS, *L2_EPS)
    assert linear_problem.x.min() - widest > low
    assert linear_problem.x.max() + widest < high


@pytest.mark.parametrize("loss", ["ce", "margin"])
@pytest.mark.parametrize("eps", LINF_EPS)
def test_pgd_linf_matches_exact_robust_accuracy_of_linear_model(linear_problem, eps, loss) -> None:
    result = PGD(eps=eps, norm="linf", loss=loss, seed=0).generate(
        linear_problem.classifier, linear_problem.x, linear_problem.y
    )
    exact = linear_problem.exact_robust_accuracy(eps, "linf")
    assert result.robust_accuracy(linear_problem.y) == pytest.approx(exact, abs=TOLERANCE)


@pytest.mark.parametrize("eps", LINF_EPS)
def test_fgsm_linf_matches_exact_robust_accuracy_of_linear_model(linear_problem, eps) -> None:
    result = FGSM(eps=eps, norm="linf").generate(
        linear_problem.classifier, linear_problem.x, linear_problem.y
    )
    exact = linear_problem.exact_robust_accuracy(eps, "linf")
    assert result.robust_accuracy(linear_problem.y) == pytest.approx(exact, abs=TOLERANCE)


@pytest.mark.parametrize("eps", L2_EPS)
def test_pgd_l2_matches_exact_robust_accuracy_of_linear_model(linear_problem, eps) -> None:
    # From a random start, L2 PGD closes the angle to -w geometrically with ratio
    # eps / (eps + step_size); the default step (2.5·eps/steps) leaves ~2% of the margin
    # unused after 20 steps, half of eps converges well inside the tolerance.
    attack = PGD(eps=eps, norm="l2", steps=20, step_size=eps / 2, seed=0)
    result = attack.generate(linear_problem.classifier, linear_problem.x, linear_problem.y)
    exact = linear_problem.exact_robust_accuracy(eps, "l2")
    assert result.robust_accuracy(linear_problem.y) == pytest.approx(exact, abs=TOLERANCE)


@pytest.mark.parametrize("eps", L2_EPS)
def test_fgsm_l2_matches_exact_robust_accuracy_of_linear_model(linear_problem, eps) -> None:
    result = FGSM(eps=eps, norm="l2").generate(
        linear_problem.classifier, linear_problem.x, linear_problem.y
    )
    exact = linear_problem.exact_robust_accuracy(eps, "l2")
    assert result.robust_accuracy(linear_problem.y) == pytest.approx(exact, abs=TOLERANCE)


@pytest.mark.parametrize("eps", LINF_EPS)
def test_pgd_linf_never_beats_the_exact_bound(linear_problem, eps) -> None:
    # Robust accuracy below the exact value would mean x_adv left the ε-ball.
    result = PGD(eps=eps, norm="linf", seed=0).generate(
        linear_problem.classifier, linear_problem.x, linear_problem.y
    )
    exact = linear_problem.exact_robust_accuracy(eps, "linf")
    assert result.robust_accuracy(linear_problem.y) >= exact - 1 / len(linear_problem.y)


@pytest.mark.parametrize("name", ["apgd", "apgd-dlr", "apgd-t"])
def test_apgd_returns_the_closed_form_worst_point_of_samples_it_cannot_break(
    linear_problem, name
) -> None:
    """On a linear model the loss is highest at ``x - s·ε·sign(w)``: APGD must return that
    vertex for every sample it cannot misclassify (returning the clean input instead hid, on a
    randomized model, the points the mean over draws must see)."""
    eps = 0.05
    cls = get_attack(name)
    attack = cls(eps=eps, norm="linf", steps=20, seed=0)
    x, y = linear_problem.x[:300], linear_problem.y[:300]
    result = attack.generate(linear_problem.classifier, x, y)
    unbroken = ~result.success & (linear_problem.signed_margin[:300] > 0)
    assert unbroken.sum() > 50
    sign = (2 * y[unbroken] - 1)[:, None] * np.sign(linear_problem.w)[None, :]
    worst = x[unbroken] - eps * sign
    np.testing.assert_allclose(result.x_adv[unbroken], worst, atol=1e-6)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_fmn_finds_the_exact_minimum_norm_of_a_linear_model(linear_problem, norm) -> None:
    """The nearest point of the other class is at ``margin / ‖w‖_dual``; FMN must reach it."""
    fmn = get_attack("fmn")(eps=0.2, norm=norm, steps=100, minimize=True, seed=0)
    x, y = linear_problem.x[:200], linear_problem.y[:200]
    fmn.generate(linear_problem.classifier, x, y)
    margin = linear_problem.signed_margin[:200]
    dual = np.abs(linear_problem.w).sum() if norm == "linf" else np.linalg.norm(linear_problem.w)
    exact = np.maximum(margin, 0.0) / dual
    found = fmn.last_min_norms_
    assert np.isfinite(found).all()  # every point of a linear model can be flipped
    assert (found >= exact - 1e-5).all()  # no adversarial point is closer than the boundary
    np.testing.assert_allclose(found, exact, rtol=0.02, atol=1e-4)


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.05), ("linf", 0.1), ("l2", 0.5)])
def test_fmn_at_a_fixed_budget_matches_exact_robust_accuracy(linear_problem, norm, eps) -> None:
    result = get_attack("fmn")(eps=eps, norm=norm, steps=50, seed=0).generate(
        linear_problem.classifier, linear_problem.x, linear_problem.y
    )
    exact = linear_problem.exact_robust_accuracy(eps, norm)
    assert result.robust_accuracy(linear_problem.y) == pytest.approx(exact, abs=TOLERANCE)
