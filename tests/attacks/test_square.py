"""Square Attack: black-box, counts every query, keeps to its budget, deterministic per seed."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

from mlwarden.attacks import SquareAttack
from mlwarden.attacks.evasion.square import p_selection
from mlwarden.data import load_dataset
from mlwarden.models import Classifier, SklearnClassifier

BUDGET = 300


class CountingClassifier(Classifier):
    """Delegates to ``inner`` and counts the inputs it is asked to score."""

    def __init__(self, inner: Classifier) -> None:
        super().__init__(
            input_shape=inner.input_shape,
            n_classes=inner.n_classes,
            clip_range=inner.clip_range,
            batch_size=inner.batch_size,
        )
        self.inner = inner
        self.inputs_scored = 0

    def _predict_proba_batch(self, x: np.ndarray) -> np.ndarray:
        self.inputs_scored += len(x)
        return self.inner.predict_proba(x)


@pytest.fixture(scope="module")
def gbm_result(breast_cancer_gbm, breast_cancer):
    """Square at ε=0.1 with a 300-query budget against the breast-cancer GBM, counted."""
    counting = CountingClassifier(breast_cancer_gbm)
    attack = SquareAttack(eps=0.1, queries=BUDGET, seed=0)
    result = attack.generate(counting, breast_cancer.x, breast_cancer.y)
    return result, counting.inputs_scored


def test_square_cuts_breast_cancer_gbm_accuracy(
    breast_cancer_gbm, breast_cancer, gbm_result
) -> None:
    result, _ = gbm_result
    clean = float((breast_cancer_gbm.predict(breast_cancer.x) == breast_cancer.y).mean())
    assert clean > 0.9
    assert result.robust_accuracy(breast_cancer.y) <= clean - 0.3


def test_square_needs_no_gradients(breast_cancer_gbm) -> None:
    assert not SquareAttack.needs_gradients
    assert not breast_cancer_gbm.differentiable


def test_square_never_exceeds_its_query_budget(gbm_result) -> None:
    result, _ = gbm_result
    assert result.queries.max() <= BUDGET
    assert result.queries.min() >= 1


def test_square_counts_every_query_it_makes(breast_cancer, gbm_result) -> None:
    result, inputs_scored = gbm_result
    final_scoring = len(breast_cancer.y)  # generate() scores x_adv once, outside the attack
    assert result.queries.sum() == inputs_scored - final_scoring


def test_square_stops_early_only_on_success(gbm_result) -> None:
    result, _ = gbm_result
    stopped_early = result.queries < BUDGET
    assert result.success[stopped_early].all()


def test_square_does_not_stop_on_a_tie_argmax_decides_against_it() -> None:
    # 4-nearest-neighbour votes tie at [0.5, 0.5], which argmax reads as class 0: for a true
    # label 0 such a tie is no success and the attack has to go on.
    train = load_dataset("builtin:breast-cancer:train")
    test = load_dataset("builtin:breast-cancer")
    knn = KNeighborsClassifier(n_neighbors=4).fit(train.x, train.y)
    classifier = SklearnClassifier(knn, input_shape=train.input_shape)
    result = SquareAttack(eps=0.05, queries=100, seed=0).generate(classifier, test.x, test.y)
    stopped_early = result.queries < 100
    assert result.success[stopped_early].all()


def test_square_same_seed_gives_identical_adversarials(tiny_classifier, make_batch) -> None:
    x, y = make_batch(tiny_classifier)
    first = SquareAttack(eps=0.1, queries=30, seed=7).generate(tiny_classifier, x, y)
    second = SquareAttack(eps=0.1, queries=30, seed=7).generate(tiny_classifier, x, y)
    np.testing.assert_array_equal(first.x_adv, second.x_adv)
    np.testing.assert_array_equal(first.queries, second.queries)


def test_square_different_seeds_give_different_adversarials(tiny_classifier, make_batch) -> None:
    x, y = make_batch(tiny_classifier)
    first = SquareAttack(eps=0.1, queries=30, seed=1).generate(tiny_classifier, x, y)
    second = SquareAttack(eps=0.1, queries=30, seed=2).generate(tiny_classifier, x, y)
    assert not np.array_equal(first.x_adv, second.x_adv)


def test_square_perturbs_features_by_exactly_eps_inside_the_range(
    tiny_classifier, make_batch
) -> None:
    # every proposal sets a window to ±ε, so unclipped features sit on a vertex of the ε-box
    x, y = make_batch(tiny_classifier)
    x = np.clip(x, 0.2, 0.8)
    result = SquareAttack(eps=0.1, queries=30, seed=0).generate(tiny_classifier, x, y)
    np.testing.assert_allclose(np.abs(result.x_adv - x), 0.1, atol=1e-6)


def test_p_selection_starts_at_p_init_and_shrinks_on_the_paper_schedule() -> None:
    schedule = [p_selection(0.05, it, 1000) for it in range(1000)]
    assert schedule[0] == 0.05
    assert all(later <= earlier for earlier, later in itertools.pairwise(schedule))
    assert schedule[-1] == pytest.approx(0.05 / 512)
