"""Square Attack: black-box, counts every query, keeps to its budget, deterministic per seed."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier

from attacks.wrappers import CountingClassifier
from mlwarden.attacks import SquareAttack
from mlwarden.attacks.evasion.square import meta_pseudo_gaussian_pert, p_selection
from mlwarden.data import load_dataset
from mlwarden.models import SklearnClassifier, TorchClassifier

BUDGET = 300


class ScaledLogits(torch.nn.Module):
    """``inner``'s logits times ``factor``: the same decisions, a saturated softmax."""

    def __init__(self, inner: torch.nn.Module, factor: float) -> None:
        super().__init__()
        self.inner = inner
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) * self.factor


def scaled(classifier: TorchClassifier, factor: float) -> TorchClassifier:
    return TorchClassifier(
        ScaledLogits(classifier.module, factor),
        input_shape=classifier.input_shape,
        n_classes=classifier.n_classes,
        clip_range=classifier.clip_range,
    )


GBM_EPS = {"linf": 0.1, "l2": 0.3}


@pytest.fixture(scope="module", params=["linf", "l2"])
def gbm_result(request, breast_cancer_gbm, breast_cancer):
    """Square (L∞ ε=0.1, L2 ε=0.3), 300 queries, against the breast-cancer GBM, counted."""
    counting = CountingClassifier(breast_cancer_gbm)
    norm = request.param
    attack = SquareAttack(eps=GBM_EPS[norm], norm=norm, queries=BUDGET, seed=0)
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


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_square_same_seed_gives_identical_adversarials(norm, tiny_classifier, make_batch) -> None:
    x, y = make_batch(tiny_classifier)
    first = SquareAttack(eps=0.1, norm=norm, queries=30, seed=7).generate(tiny_classifier, x, y)
    second = SquareAttack(eps=0.1, norm=norm, queries=30, seed=7).generate(tiny_classifier, x, y)
    np.testing.assert_array_equal(first.x_adv, second.x_adv)
    np.testing.assert_array_equal(first.queries, second.queries)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_square_different_seeds_give_different_adversarials(
    norm, tiny_classifier, make_batch
) -> None:
    x, y = make_batch(tiny_classifier)
    first = SquareAttack(eps=0.1, norm=norm, queries=30, seed=1).generate(tiny_classifier, x, y)
    second = SquareAttack(eps=0.1, norm=norm, queries=30, seed=2).generate(tiny_classifier, x, y)
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


# -- the loss: logits when the model has them, unfloored log-probabilities otherwise ----------

DIGITS_EPS, DIGITS_QUERIES, DIGITS_N = 0.2, 100, 100


@pytest.fixture(scope="module")
def digits_square_unscaled(digits_cnn, digits_subset):
    """Square (L∞) on the first 100 digits against the zoo CNN, with the logits it reads."""
    x, y = digits_subset.x[:DIGITS_N], digits_subset.y[:DIGITS_N]
    attack = SquareAttack(eps=DIGITS_EPS, queries=DIGITS_QUERIES, seed=0)
    return attack.generate(digits_cnn, x, y).robust_accuracy(y)


def test_square_robust_accuracy_does_not_change_when_logits_are_scaled(
    digits_cnn, digits_subset, digits_square_unscaled
) -> None:
    # ×1000 saturates the softmax (probabilities exactly 0 and 1); the decisions and the logit
    # margin's ordering are unchanged, so an attack that reads logits does exactly as well
    x, y = digits_subset.x[:DIGITS_N], digits_subset.y[:DIGITS_N]
    saturated = scaled(digits_cnn, 1000.0)
    np.testing.assert_array_equal(saturated.predict(x), digits_cnn.predict(x))
    clean = float((digits_cnn.predict(x) == y).mean())
    attack = SquareAttack(eps=DIGITS_EPS, queries=DIGITS_QUERIES, seed=0)
    robust_saturated = attack.generate(saturated, x, y).robust_accuracy(y)
    assert digits_square_unscaled <= clean - 0.1  # the attack does work on this budget
    assert abs(robust_saturated - digits_square_unscaled) <= 0.02


def test_square_on_probabilities_reads_them_down_to_float32s_smallest(
    digits_cnn, digits_subset
) -> None:
    # seen through predict_proba only, logits ×8 put the runner-up classes at probabilities
    # around e^-65: far under the 1e-12 floor that used to flatten the loss (robust accuracy
    # 0.64 against 0.32), still above float32's smallest (e^-103), so the attack must do as
    # well as on the unscaled probabilities
    x, y = digits_subset.x[:DIGITS_N], digits_subset.y[:DIGITS_N]
    attack = SquareAttack(eps=DIGITS_EPS, queries=DIGITS_QUERIES, seed=0)
    plain = attack.generate(CountingClassifier(digits_cnn), x, y).robust_accuracy(y)
    sharp = attack.generate(CountingClassifier(scaled(digits_cnn, 8.0)), x, y).robust_accuracy(y)
    assert abs(sharp - plain) <= 0.02


# -- L2 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("norm", "paper_p_init"), [("linf", 0.05), ("l2", 0.1)])
def test_square_default_p_init_is_the_papers(
    norm, paper_p_init, tiny_image_classifier, make_batch
) -> None:
    x, y = make_batch(tiny_image_classifier)
    default = SquareAttack(eps=0.3, norm=norm, queries=30, seed=0)
    explicit = SquareAttack(eps=0.3, norm=norm, queries=30, p_init=paper_p_init, seed=0)
    np.testing.assert_array_equal(
        default.generate(tiny_image_classifier, x, y).x_adv,
        explicit.generate(tiny_image_classifier, x, y).x_adv,
    )


LINEAR_EPS = 0.5


@pytest.fixture(scope="module")
def linear_l2_result(linear_problem):
    """Square-L2 at ε=0.5 with 2000 queries on the first 1000 points of the linear problem."""
    x, y = linear_problem.x[:1000], linear_problem.y[:1000]
    attack = SquareAttack(eps=LINEAR_EPS, norm="l2", queries=2000, seed=0)
    return attack.generate(linear_problem.classifier, x, y)


def test_square_l2_comes_within_five_points_of_exact_robust_accuracy(
    linear_problem, linear_l2_result
) -> None:
    # a linear model's exact L2 robust accuracy: a point survives iff margin > ε·‖w‖₂ (here
    # 0.33 of the points, against 0.88 clean); no attack can go under it
    y = linear_problem.y[:1000]
    margin = linear_problem.signed_margin[:1000]
    exact = float(np.mean(margin > LINEAR_EPS * np.linalg.norm(linear_problem.w)))
    robust = linear_l2_result.robust_accuracy(y)
    assert exact <= robust <= exact + 0.05


def test_square_l2_only_breaks_points_within_eps_of_the_boundary(
    linear_problem, linear_l2_result
) -> None:
    margin = linear_problem.signed_margin[:1000]
    broken = linear_l2_result.success
    assert np.all(margin[broken] <= LINEAR_EPS * np.linalg.norm(linear_problem.w) * (1 + 1e-5))


def test_square_l2_proposals_use_the_whole_budget_without_projection(
    tiny_image_classifier, make_batch
) -> None:
    # the hook's own output, before generate() projects: on the ε-sphere (inputs away from the
    # range's edges, so clipping never binds), never outside it
    x, y = make_batch(tiny_image_classifier)
    x = np.clip(x, 0.3, 0.7)
    attack = SquareAttack(eps=0.2, norm="l2", queries=50, seed=0)
    x_adv, _ = attack._generate(
        tiny_image_classifier, torch.from_numpy(x), torch.from_numpy(y), seed=0
    )
    norms = (x_adv.double() - torch.from_numpy(x).double()).flatten(1).norm(dim=1)
    np.testing.assert_allclose(norms.numpy(), 0.2, rtol=1e-5)


@pytest.mark.parametrize(("height", "width"), [(1, 1), (1, 5), (3, 3), (5, 5), (4, 7)])
def test_meta_pseudo_gaussian_pert_is_a_unit_bump_and_its_negative(height, width) -> None:
    pert = meta_pseudo_gaussian_pert(height, width)
    assert pert.shape == (height, width)
    assert float(pert.norm()) == pytest.approx(1.0)
    if height >= width:
        first, second = pert[: height // 2], pert[height // 2 :]
    else:
        first, second = pert[:, : width // 2], pert[:, width // 2 :]
    assert bool((first > 0).all()) and bool((second < 0).all())
