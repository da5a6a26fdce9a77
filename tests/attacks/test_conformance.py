"""Checks every registered attack passes, in every norm it supports (sklearn estimator_checks).

A new attack joins these checks by registering itself; ``FAST_PARAMS`` only keeps the costly
ones cheap on the tiny models.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mlwarden.attacks import Attack, attack_names, get_attack
from mlwarden.errors import AttackError

FAST_PARAMS: dict[str, dict[str, object]] = {
    "pgd": {"steps": 5},
    "square": {"queries": 40},
    "hsj": {"max_queries": 120, "max_iterations": 3, "initial_evals": 10, "init_tries": 10},
}
CASES = [(name, norm) for name in attack_names() for norm in get_attack(name).supported_norms]
CASE_IDS = [f"{name}-{norm}" for name, norm in CASES]
EPS = 0.1


def make_attack(name: str, **params: object) -> Attack:
    return get_attack(name)(**{**FAST_PARAMS.get(name, {}), **params})


def perturbation_norm(x_adv: np.ndarray, x: np.ndarray, norm: str) -> np.ndarray:
    delta = (x_adv.astype(np.float64) - x.astype(np.float64)).reshape(len(x), -1)
    return np.abs(delta).max(axis=1) if norm == "linf" else np.linalg.norm(delta, axis=1)


def within_budget(size: np.ndarray, eps: float, norm: str) -> bool:
    # float32 rounding of x + delta: 1e-6 absolute for L∞, 1e-5 relative (+1e-6) for L2
    bound = eps + 1e-6 if norm == "linf" else eps * (1 + 1e-5) + 1e-6
    return bool(np.all(size <= bound))


def test_registry_holds_the_evasion_attacks() -> None:
    assert {"fgsm", "pgd", "square", "hsj"} <= set(attack_names())


@pytest.mark.parametrize("name", attack_names())
def test_attack_is_registered_under_its_own_name(name) -> None:
    assert get_attack(name).name == name


@pytest.mark.parametrize(("name", "norm"), CASES, ids=CASE_IDS)
def test_attack_stays_inside_eps_ball(name, norm, tiny_classifier, make_batch) -> None:
    x, y = make_batch(tiny_classifier)
    result = make_attack(name, eps=EPS, norm=norm).generate(tiny_classifier, x, y)
    assert within_budget(perturbation_norm(result.x_adv, x, norm), EPS, norm)


@pytest.mark.parametrize(("name", "norm"), CASES, ids=CASE_IDS)
def test_attack_stays_inside_clip_range(name, norm, make_linear_classifier, make_batch) -> None:
    # inputs on the edges of a narrow range: every unclipped step would leave it
    classifier = make_linear_classifier(np.linspace(-1, 1, 8), 0.0, clip_range=(0.0, 1.0))
    x, y = make_batch(classifier, n=20)
    x = np.round(x)
    result = make_attack(name, eps=0.5, norm=norm).generate(classifier, x, y)
    assert result.x_adv.min() >= 0.0
    assert result.x_adv.max() <= 1.0


@pytest.mark.parametrize(("name", "norm"), CASES, ids=CASE_IDS)
def test_attack_keeps_shape_and_returns_float32(name, norm, tiny_classifier, make_batch) -> None:
    x, y = make_batch(tiny_classifier)
    result = make_attack(name, eps=EPS, norm=norm).generate(
        tiny_classifier, x.astype(np.float64), y
    )
    assert result.x_adv.shape == x.shape
    assert result.x_adv.dtype == np.float32
    assert result.success.shape == result.queries.shape == result.predictions.shape == y.shape


@pytest.mark.parametrize(("name", "norm"), CASES, ids=CASE_IDS)
def test_attack_leaves_its_inputs_untouched(name, norm, tiny_classifier, make_batch) -> None:
    x, y = make_batch(tiny_classifier)
    x_before, y_before = x.copy(), y.copy()
    make_attack(name, eps=EPS, norm=norm).generate(tiny_classifier, x, y)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(y, y_before)


@pytest.mark.parametrize(("name", "norm"), CASES, ids=CASE_IDS)
def test_untargeted_success_means_misclassified(name, norm, tiny_classifier, make_batch) -> None:
    x, y = make_batch(tiny_classifier)
    result = make_attack(name, eps=EPS, norm=norm).generate(tiny_classifier, x, y)
    np.testing.assert_array_equal(result.predictions, tiny_classifier.predict(result.x_adv))
    np.testing.assert_array_equal(result.success, result.predictions != y)


@pytest.mark.parametrize(("name", "norm"), CASES, ids=CASE_IDS)
def test_targeted_success_means_target_reached(name, norm, tiny_classifier, make_batch) -> None:
    x, y = make_batch(tiny_classifier)
    target = (y + 1) % tiny_classifier.n_classes
    attack = make_attack(name, eps=EPS, norm=norm, targeted=True)
    result = attack.generate(tiny_classifier, x, y, target=target)
    assert result.targeted
    np.testing.assert_array_equal(result.success, result.predictions == target)


@pytest.mark.parametrize(("name", "norm"), CASES, ids=CASE_IDS)
def test_attack_spends_at_least_one_query_per_input(
    name, norm, tiny_classifier, make_batch
) -> None:
    x, y = make_batch(tiny_classifier)
    result = make_attack(name, eps=EPS, norm=norm).generate(tiny_classifier, x, y)
    assert result.queries.dtype.kind == "i"
    assert np.all(result.queries >= 1)


@pytest.mark.parametrize(("name", "norm"), CASES, ids=CASE_IDS)
def test_attack_with_zero_eps_returns_its_inputs(name, norm, tiny_classifier, make_batch) -> None:
    x, y = make_batch(tiny_classifier)
    result = make_attack(name, eps=0.0, norm=norm).generate(tiny_classifier, x, y)
    np.testing.assert_array_equal(result.x_adv, x)
    np.testing.assert_array_equal(result.success, tiny_classifier.predict(x) != y)


@pytest.mark.parametrize(("name", "norm"), CASES, ids=CASE_IDS)
def test_attack_result_records_its_parameters(
    name, norm, tiny_vector_classifier, make_batch
) -> None:
    x, y = make_batch(tiny_vector_classifier)
    result = make_attack(name, eps=EPS, norm=norm).generate(tiny_vector_classifier, x, y)
    assert (result.attack, result.norm, result.eps, result.targeted) == (name, norm, EPS, False)


@pytest.mark.parametrize(("name", "norm"), CASES, ids=CASE_IDS)
def test_attack_covers_every_input_when_batched(
    name, norm, tiny_vector_classifier, make_batch
) -> None:
    x, y = make_batch(tiny_vector_classifier, n=10)
    result = make_attack(name, eps=EPS, norm=norm, batch_size=3).generate(
        tiny_vector_classifier, x, y
    )
    assert np.all(np.isfinite(result.x_adv))
    assert within_budget(perturbation_norm(result.x_adv, x, norm), EPS, norm)
    assert np.all(result.queries >= 1)


@pytest.mark.parametrize(("name", "norm"), CASES, ids=CASE_IDS)
def test_attack_gives_an_empty_result_for_no_inputs(name, norm, tiny_vector_classifier) -> None:
    x = np.zeros((0, *tiny_vector_classifier.input_shape), dtype=np.float32)
    y = np.zeros(0, dtype=np.int64)
    result = make_attack(name, eps=EPS, norm=norm).generate(tiny_vector_classifier, x, y)
    assert result.x_adv.shape == x.shape
    assert len(result.success) == len(result.queries) == 0
    assert result.success_rate == 0.0


@pytest.mark.parametrize("name", attack_names())
def test_attack_needs_gradients_only_if_it_says_so(name, blackbox_classifier, make_batch) -> None:
    x, y = make_batch(blackbox_classifier)
    attack = make_attack(name, eps=EPS)
    if attack.needs_gradients:
        with pytest.raises(AttackError, match="gradients"):
            attack.generate(blackbox_classifier, x, y)
    else:
        result = attack.generate(blackbox_classifier, x, y)
        assert within_budget(perturbation_norm(result.x_adv, x, "linf"), EPS, "linf")


@pytest.mark.parametrize(("name", "norm"), CASES, ids=CASE_IDS)
@settings(max_examples=12, deadline=None, database=None)
@given(
    eps=st.floats(0.0, 0.6, allow_nan=False),
    x=arrays(
        np.float32,
        st.tuples(st.integers(1, 6), st.just(6)),
        elements=st.floats(0.0, 1.0, width=32),
    ),
    data=st.data(),
)
def test_attack_invariants_hold_for_any_eps_and_inputs(
    name, norm, tiny_vector_classifier, eps, x, data
) -> None:
    y = data.draw(arrays(np.int64, len(x), elements=st.integers(0, 2)), label="y")
    result = make_attack(name, eps=eps, norm=norm).generate(tiny_vector_classifier, x, y)
    assert result.x_adv.shape == x.shape
    assert result.x_adv.dtype == np.float32
    assert within_budget(perturbation_norm(result.x_adv, x, norm), eps, norm)
    assert result.x_adv.min() >= 0.0
    assert result.x_adv.max() <= 1.0
    np.testing.assert_array_equal(result.success, result.predictions != y)
    assert np.all(result.queries >= 1)
