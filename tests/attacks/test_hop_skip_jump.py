"""HopSkipJump: label-only, finds the minimal distance, keeps to its budget, seeded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attacks.wrappers import CountingClassifier
from mlwarden.attacks import HopSkipJump, get_attack
from mlwarden.models import TorchClassifier
from mlwarden.models.base import GradientFreeView

N_POINTS = 100
FAR = 100.0  # an ε no point is that far from the boundary: the projection never binds


class LabelsOnly(GradientFreeView):
    """``inner``'s decisions as one-hot rows: no score information at all."""

    def _predict_proba_batch(self, x: np.ndarray) -> np.ndarray:
        return np.eye(self.n_classes, dtype=np.float32)[self.inner.predict(x)]


class NeverClassTwo(torch.nn.Module):
    """Three classes, the third out of reach: logits ``[0, w·x, -inf]``."""

    def __init__(self, w: np.ndarray) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.as_tensor(w, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = x.flatten(1) @ self.w
        return torch.stack([torch.zeros_like(score), score, torch.full_like(score, -1e9)], 1)


def found_distance(x_adv: np.ndarray, x: np.ndarray, norm: str) -> np.ndarray:
    delta = (x_adv.astype(np.float64) - x.astype(np.float64)).reshape(len(x), -1)
    return np.abs(delta).max(axis=1) if norm == "linf" else np.linalg.norm(delta, axis=1)


def exact_distance(problem, norm: str) -> np.ndarray:
    """``|w·x + b| / ‖w‖_q``: the distance to a linear boundary (the box never binds)."""
    score = problem.x[:N_POINTS].astype(np.float64) @ problem.w + problem.b
    dual = np.abs(problem.w).sum() if norm == "linf" else np.linalg.norm(problem.w)
    return np.abs(score) / dual


@pytest.fixture(scope="module")
def linear_hsj(linear_problem):
    """HSJ (L2, 1000 queries) on the first 100 points of the linear problem, with ε far out."""
    x, y = linear_problem.x[:N_POINTS], linear_problem.y[:N_POINTS]
    attack = HopSkipJump(eps=FAR, norm="l2", max_queries=1000, seed=0)
    return attack.generate(linear_problem.classifier, x, y)


def test_hsj_is_registered_as_a_label_only_attack() -> None:
    assert get_attack("hsj") is HopSkipJump
    assert not HopSkipJump.needs_gradients
    assert HopSkipJump.supported_norms == ("linf", "l2")


@pytest.mark.parametrize(("norm", "budget"), [("l2", 1000), ("linf", 2000)])
def test_hsj_finds_the_minimal_distance_to_a_linear_boundary(
    norm, budget, linear_problem, linear_hsj
) -> None:
    x, y = linear_problem.x[:N_POINTS], linear_problem.y[:N_POINTS]
    if norm == "l2":
        result = linear_hsj
    else:
        attack = HopSkipJump(eps=FAR, norm=norm, max_queries=budget, seed=0)
        result = attack.generate(linear_problem.classifier, x, y)
    correct = linear_problem.classifier.predict(x) == y
    ratio = (
        found_distance(result.x_adv, x, norm)[correct]
        / exact_distance(linear_problem, norm)[correct]
    )
    assert result.success.all()
    assert ratio.min() >= 1 - 1e-4  # nothing adversarial is closer than the boundary
    assert np.mean(ratio <= 1.1) >= 0.9


def test_hsj_succeeds_where_its_closest_point_lies_within_eps(linear_problem, linear_hsj) -> None:
    x, y = linear_problem.x[:N_POINTS], linear_problem.y[:N_POINTS]
    distance = found_distance(linear_hsj.x_adv, x, "l2")
    ordered = np.sort(distance[distance > 0])
    middle = len(ordered) // 2
    eps = float(ordered[middle - 1] + ordered[middle]) / 2  # halfway between two points
    result = HopSkipJump(eps=eps, norm="l2", max_queries=1000, seed=0).generate(
        linear_problem.classifier, x, y
    )
    assert result.success[distance <= eps].all()
    # beyond ε the projection lands on the line from x to a point on the boundary, before
    # the crossing; only the binary search's precision (θ = 1/(d·√d) of that line, here
    # 1.1%) can leave the crossing short of the point found
    assert not result.success[distance > eps * 1.02].any()
    assert 0.3 < result.success.mean() < 0.8


def test_hsj_returns_inputs_already_misclassified_after_one_query(
    linear_problem, linear_hsj
) -> None:
    x, y = linear_problem.x[:N_POINTS], linear_problem.y[:N_POINTS]
    wrong = linear_problem.classifier.predict(x) != y
    assert wrong.any()
    np.testing.assert_array_equal(linear_hsj.x_adv[wrong], x[wrong])
    np.testing.assert_array_equal(linear_hsj.queries[wrong], 1)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_hsj_counts_every_query_and_never_exceeds_its_budget(norm, linear_problem) -> None:
    x, y = linear_problem.x[:40], linear_problem.y[:40]
    counting = CountingClassifier(linear_problem.classifier)
    result = HopSkipJump(eps=0.5, norm=norm, max_queries=250, seed=0).generate(counting, x, y)
    final_scoring = len(y)  # generate() scores x_adv once, outside the attack
    assert result.queries.sum() == counting.inputs_scored - final_scoring
    assert result.queries.max() == 250  # the budget binds: the attack would go on
    assert result.queries.min() >= 1


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_hsj_needs_labels_only(norm, linear_problem) -> None:
    x, y = linear_problem.x[:30], linear_problem.y[:30]
    attack = HopSkipJump(eps=0.5, norm=norm, max_queries=300, seed=0)
    with_scores = attack.generate(linear_problem.classifier, x, y)
    one_hot = attack.generate(LabelsOnly(linear_problem.classifier), x, y)
    np.testing.assert_array_equal(one_hot.x_adv, with_scores.x_adv)
    np.testing.assert_array_equal(one_hot.queries, with_scores.queries)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_hsj_same_seed_gives_identical_adversarials(norm, linear_problem) -> None:
    x, y = linear_problem.x[:30], linear_problem.y[:30]
    first = HopSkipJump(eps=0.3, norm=norm, max_queries=200, seed=7)
    second = HopSkipJump(eps=0.3, norm=norm, max_queries=200, seed=7)
    first_result = first.generate(linear_problem.classifier, x, y)
    second_result = second.generate(linear_problem.classifier, x, y)
    np.testing.assert_array_equal(first_result.x_adv, second_result.x_adv)
    np.testing.assert_array_equal(first_result.queries, second_result.queries)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_hsj_different_seeds_give_different_adversarials(norm, linear_problem) -> None:
    x, y = linear_problem.x[:30], linear_problem.y[:30]
    first = HopSkipJump(eps=0.3, norm=norm, max_queries=200, seed=1)
    second = HopSkipJump(eps=0.3, norm=norm, max_queries=200, seed=2)
    first_result = first.generate(linear_problem.classifier, x, y)
    second_result = second.generate(linear_problem.classifier, x, y)
    assert not np.array_equal(first_result.x_adv, second_result.x_adv)


def test_hsj_targeted_finds_the_minimal_distance_to_a_linear_boundary(linear_problem) -> None:
    # two classes: aiming at the other label is the untargeted problem, same exact distance
    x, y = linear_problem.x[:N_POINTS], linear_problem.y[:N_POINTS]
    clean = linear_problem.classifier.predict(x)
    attack = HopSkipJump(eps=FAR, norm="l2", targeted=True, max_queries=1000, seed=0)
    result = attack.generate(linear_problem.classifier, x, y, target=1 - clean)
    ratio = found_distance(result.x_adv, x, "l2") / exact_distance(linear_problem, "l2")
    np.testing.assert_array_equal(result.predictions, 1 - clean)
    assert ratio.min() >= 1 - 1e-4
    assert np.mean(ratio <= 1.1) >= 0.9


def test_hsj_targeted_reaches_the_target_from_random_starts(
    tiny_vector_classifier, make_batch
) -> None:
    # inputs live in [0, 1]^6, so ε=3 > √6 covers the whole range: every sample whose target
    # class some input reaches must end there (the rarest class takes 4% of uniform noise, so
    # 300 tries miss it with odds 0.96^300 < 1e-5)
    x, y = make_batch(tiny_vector_classifier, n=30)
    clean = tiny_vector_classifier.predict(x)
    reachable = set(tiny_vector_classifier.predict(np.random.default_rng(0).random((4000, 6))))
    target = np.array(
        [next(c for c in (2, 1, 0) if c != label and c in reachable) for label in clean]
    )
    attack = HopSkipJump(eps=3.0, norm="l2", targeted=True, max_queries=800, init_tries=300, seed=0)
    result = attack.generate(tiny_vector_classifier, x, y, target=target)
    assert result.success.all()
    np.testing.assert_array_equal(result.predictions, target)


def test_hsj_targeted_reports_failure_when_no_random_start_reaches_the_target(
    make_batch,
) -> None:
    classifier = TorchClassifier(
        NeverClassTwo(np.linspace(-1, 1, 6)), input_shape=(6,), n_classes=3
    )
    x, y = make_batch(classifier, n=8)
    y = classifier.predict(x)
    target = np.full_like(y, 2)
    attack = HopSkipJump(eps=3.0, norm="l2", targeted=True, init_tries=25, seed=0)
    result = attack.generate(classifier, x, y, target=target)
    assert not result.success.any()
    np.testing.assert_array_equal(result.x_adv, x)
    np.testing.assert_array_equal(result.queries, 1 + 25)  # the input, then every try
