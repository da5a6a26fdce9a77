"""PGD: stronger than FGSM, targeted, deterministic per seed, and frugal with early stopping."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlwarden.attacks import FGSM, PGD
from mlwarden.errors import AttackError
from mlwarden.models import TorchClassifier

ONE_POINT = 0.01 + 1e-9  # one percentage point of robust accuracy, robust to float rounding


def test_pgd_is_at_least_as_strong_as_fgsm_on_digits_cnn(digits_cnn, digits_subset) -> None:
    x, y = digits_subset.x, digits_subset.y
    pgd = PGD(eps=0.1, seed=0).generate(digits_cnn, x, y)
    fgsm = FGSM(eps=0.1).generate(digits_cnn, x, y)
    assert pgd.robust_accuracy(y) <= fgsm.robust_accuracy(y)
    assert pgd.robust_accuracy(y) < (digits_cnn.predict(x) == y).mean()


def test_targeted_pgd_reaches_target_labels_on_digits_cnn(digits_cnn, digits_subset) -> None:
    x, y = digits_subset.x, digits_subset.y
    target = (y + 1) % 10
    result = PGD(eps=0.3, targeted=True, seed=0).generate(digits_cnn, x, y, target=target)
    assert result.success_rate >= 0.9
    np.testing.assert_array_equal(result.success, result.predictions == target)


def test_targeted_pgd_without_target_labels_raises(tiny_vector_classifier, make_batch) -> None:
    x, y = make_batch(tiny_vector_classifier)
    with pytest.raises(AttackError, match="target"):
        PGD(eps=0.1, targeted=True).generate(tiny_vector_classifier, x, y)


def test_untargeted_pgd_with_target_labels_raises(tiny_vector_classifier, make_batch) -> None:
    x, y = make_batch(tiny_vector_classifier)
    with pytest.raises(AttackError, match="target"):
        PGD(eps=0.1).generate(tiny_vector_classifier, x, y, target=y)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_same_seed_gives_identical_adversarials(norm, tiny_classifier, make_batch) -> None:
    x, y = make_batch(tiny_classifier)
    first = PGD(eps=0.1, norm=norm, steps=5, seed=7).generate(tiny_classifier, x, y)
    second = PGD(eps=0.1, norm=norm, steps=5, seed=7).generate(tiny_classifier, x, y)
    np.testing.assert_array_equal(first.x_adv, second.x_adv)
    np.testing.assert_array_equal(first.queries, second.queries)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_different_seeds_give_different_random_starts(
    norm, tiny_classifier, make_batch
) -> None:
    x, y = make_batch(tiny_classifier)
    # one step too short to reach a corner, so the random start shows in the output
    first = PGD(eps=0.1, norm=norm, steps=1, step_size=0.01, seed=1).generate(tiny_classifier, x, y)
    second = PGD(eps=0.1, norm=norm, steps=1, step_size=0.01, seed=2).generate(
        tiny_classifier, x, y
    )
    assert not np.array_equal(first.x_adv, second.x_adv)


def test_pgd_batches_of_different_seeds_never_share_a_random_stream(
    tiny_vector_classifier, make_batch
) -> None:
    x, y = make_batch(tiny_vector_classifier, n=8)
    twice_x, twice_y = np.concatenate([x, x]), np.concatenate([y, y])

    def attack(seed: int) -> PGD:
        return PGD(eps=0.1, steps=1, step_size=0.01, early_stop=False, seed=seed, batch_size=8)

    # the second batch of seed 0 starts at sample 8; seed 8's first batch must not replay it
    second_batch_of_seed_0 = attack(0).generate(tiny_vector_classifier, twice_x, twice_y).x_adv[8:]
    first_batch_of_seed_8 = attack(8).generate(tiny_vector_classifier, x, y).x_adv
    assert not np.array_equal(second_batch_of_seed_0, first_batch_of_seed_8)
    # and the first batch keeps the seed itself, whatever the number of batches
    np.testing.assert_array_equal(
        attack(0).generate(tiny_vector_classifier, twice_x, twice_y).x_adv[:8],
        attack(0).generate(tiny_vector_classifier, x, y).x_adv,
    )


def test_pgd_without_random_start_ignores_the_seed(tiny_classifier, make_batch) -> None:
    x, y = make_batch(tiny_classifier)
    first = PGD(eps=0.1, steps=5, random_start=False, seed=1).generate(tiny_classifier, x, y)
    second = PGD(eps=0.1, steps=5, random_start=False, seed=2).generate(tiny_classifier, x, y)
    np.testing.assert_array_equal(first.x_adv, second.x_adv)


@pytest.mark.parametrize("restarts", [1, 3])
def test_pgd_early_stop_spends_at_most_steps_plus_one_queries_per_restart(
    digits_cnn, digits_subset, restarts
) -> None:
    steps = 10
    attack = PGD(eps=0.05, steps=steps, restarts=restarts, early_stop=True, seed=0)
    result = attack.generate(digits_cnn, digits_subset.x, digits_subset.y)
    assert result.queries.max() <= restarts * (steps + 1)
    # samples fooled early leave the batch: the attack costs less than the full schedule
    assert result.queries.mean() < restarts * (steps + 1)


@pytest.mark.parametrize("random_start", [True, False])
def test_pgd_early_stop_spends_one_query_on_inputs_already_misclassified(
    linear_problem, random_start
) -> None:
    x, y = linear_problem.x, linear_problem.y
    wrong = linear_problem.classifier.predict(x) != y
    attack = PGD(eps=0.2, steps=10, random_start=random_start, early_stop=True, seed=0)
    result = attack.generate(linear_problem.classifier, x, y)
    assert wrong.sum() > 100
    np.testing.assert_array_equal(result.queries[wrong], 1)


def test_pgd_early_stop_returns_inputs_already_misclassified_unchanged(linear_problem) -> None:
    x, y = linear_problem.x, linear_problem.y
    wrong = linear_problem.classifier.predict(x) != y
    result = PGD(eps=0.2, steps=10, early_stop=True, seed=0).generate(
        linear_problem.classifier, x, y
    )
    np.testing.assert_array_equal(result.x_adv[wrong], x[wrong])
    assert result.success[wrong].all()


class SignOfSum(torch.nn.Module):
    """Logits ``[0, sign(sum(x))]``: class 1 iff the features sum above 0, zero gradient."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = torch.sign(x.sum(dim=1))
        return torch.stack([torch.zeros_like(score), score], dim=1)


def test_pgd_counts_inputs_already_misclassified_as_success() -> None:
    # With zero gradients PGD stays where it starts: a random start the model gets right
    # would turn an input the model already gets wrong into a failed attack.
    classifier = TorchClassifier(SignOfSum(), input_shape=(4,), n_classes=2, clip_range=(-1, 1))
    x = np.random.default_rng(5).uniform(-0.05, 0.05, size=(200, 4)).astype(np.float32)
    y = 1 - classifier.predict(x)
    result = PGD(eps=0.5, steps=3, seed=0).generate(classifier, x, y)
    assert result.success.all()


def test_pgd_early_stop_matches_full_run_robust_accuracy(digits_cnn, digits_subset) -> None:
    # without a random start both runs walk the same path; only where they stop differs
    x, y = digits_subset.x, digits_subset.y
    stopped = PGD(eps=0.1, steps=10, random_start=False, early_stop=True).generate(digits_cnn, x, y)
    full = PGD(eps=0.1, steps=10, random_start=False, early_stop=False).generate(digits_cnn, x, y)
    assert stopped.robust_accuracy(y) == pytest.approx(full.robust_accuracy(y), abs=ONE_POINT)
    assert stopped.queries.sum() < full.queries.sum()


def test_pgd_early_stop_keeps_every_success_of_the_full_run(digits_cnn, digits_subset) -> None:
    # the full run returns its last iterate, which can drift back across the boundary;
    # early stopping keeps the first adversarial point instead
    x, y = digits_subset.x, digits_subset.y
    stopped = PGD(eps=0.1, steps=10, random_start=False, early_stop=True).generate(digits_cnn, x, y)
    full = PGD(eps=0.1, steps=10, random_start=False, early_stop=False).generate(digits_cnn, x, y)
    assert stopped.success[full.success].all()


def test_pgd_early_stop_with_random_start_is_no_weaker(digits_cnn, digits_subset) -> None:
    x, y = digits_subset.x, digits_subset.y
    stopped = PGD(eps=0.1, steps=10, early_stop=True, seed=0).generate(digits_cnn, x, y)
    full = PGD(eps=0.1, steps=10, early_stop=False, seed=0).generate(digits_cnn, x, y)
    assert stopped.robust_accuracy(y) <= full.robust_accuracy(y) + ONE_POINT


def test_pgd_without_early_stop_spends_the_same_queries_on_every_input(
    digits_cnn, digits_subset
) -> None:
    result = PGD(eps=0.1, steps=10, early_stop=False, seed=0).generate(
        digits_cnn, digits_subset.x, digits_subset.y
    )
    assert np.unique(result.queries).size == 1


def test_pgd_restarts_only_add_successes(digits_cnn, digits_subset) -> None:
    x, y = digits_subset.x, digits_subset.y
    one = PGD(eps=0.05, steps=5, restarts=1, seed=0).generate(digits_cnn, x, y)
    three = PGD(eps=0.05, steps=5, restarts=3, seed=0).generate(digits_cnn, x, y)
    assert np.all(three.success[one.success])
    assert three.success.sum() >= one.success.sum()
