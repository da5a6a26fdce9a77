"""FGSM: one gradient step of exactly ε, deterministic."""

from __future__ import annotations

import numpy as np

from mlwarden.attacks import FGSM


def test_fgsm_spends_one_query_per_input(tiny_classifier, make_batch) -> None:
    x, y = make_batch(tiny_classifier)
    result = FGSM(eps=0.1).generate(tiny_classifier, x, y)
    np.testing.assert_array_equal(result.queries, 1)


def test_fgsm_linf_moves_every_feature_by_eps_against_the_label(linear_problem) -> None:
    x, y, w = linear_problem.x, linear_problem.y, linear_problem.w
    result = FGSM(eps=0.05).generate(linear_problem.classifier, x, y)
    expected = x - 0.05 * (2 * y[:, None] - 1) * np.sign(w)[None, :]
    np.testing.assert_allclose(result.x_adv, expected, atol=1e-6)


def test_fgsm_l2_steps_eps_along_the_gradient(linear_problem) -> None:
    x, y, w = linear_problem.x, linear_problem.y, linear_problem.w
    result = FGSM(eps=0.5, norm="l2").generate(linear_problem.classifier, x, y)
    expected = x - 0.5 * (2 * y[:, None] - 1) * (w / np.linalg.norm(w))[None, :]
    np.testing.assert_allclose(result.x_adv, expected, atol=1e-5)


def test_fgsm_margin_loss_takes_the_same_step_on_a_linear_model(linear_problem) -> None:
    x, y = linear_problem.x, linear_problem.y
    ce = FGSM(eps=0.05, loss="ce").generate(linear_problem.classifier, x, y)
    margin = FGSM(eps=0.05, loss="margin").generate(linear_problem.classifier, x, y)
    np.testing.assert_array_equal(ce.x_adv, margin.x_adv)


def test_targeted_fgsm_on_two_classes_steps_like_untargeted(linear_problem) -> None:
    x, y = linear_problem.x, linear_problem.y
    untargeted = FGSM(eps=0.05).generate(linear_problem.classifier, x, y)
    targeted = FGSM(eps=0.05, targeted=True).generate(linear_problem.classifier, x, y, target=1 - y)
    np.testing.assert_array_equal(targeted.x_adv, untargeted.x_adv)


def test_fgsm_output_does_not_depend_on_the_seed(tiny_classifier, make_batch) -> None:
    x, y = make_batch(tiny_classifier)
    first = FGSM(eps=0.1, seed=1).generate(tiny_classifier, x, y)
    second = FGSM(eps=0.1, seed=2).generate(tiny_classifier, x, y)
    np.testing.assert_array_equal(first.x_adv, second.x_adv)
