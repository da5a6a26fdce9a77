"""Poisoning attacks: exact triggers, exact counts, seeded draws, and the backdoor metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlwarden.attacks.poisoning import (
    POISONING_ATTACKS,
    BadNets,
    Blend,
    LabelFlip,
    attack_from_truth,
    evaluate_backdoor,
    load_truth,
    save_poisoned,
)
from mlwarden.data import Dataset, load_builtin, load_dataset
from mlwarden.errors import AttackError, ConfigError, DataError
from mlwarden.models.base import Classifier


@pytest.fixture(scope="module")
def train() -> Dataset:
    return load_builtin("digits").train


@pytest.fixture(scope="module")
def texts() -> Dataset:
    """Ten-class text data for the text attacks (the digits' labels, one word per pixel row)."""
    from mlwarden.data.text import TextDataset

    digits = load_builtin("digits").train
    words = [" ".join(f"r{int(v * 4)}" for v in x.ravel()[::8]) for x in digits.x]
    return TextDataset.from_texts(words, digits.y, name="digit-words", n_classes=10)


def _data_for(name: str, train: Dataset, texts: Dataset) -> Dataset:
    return texts if POISONING_ATTACKS[name].modality == "text" else train


def test_badnets_sets_exactly_the_patch_pixels_and_leaves_the_rest(train: Dataset) -> None:
    attack = BadNets(rate=0.05, target_class=0, patch_size=2, patch_value=0.75, seed=3)
    result = attack.poison(train)
    x, idx = result.dataset.x, result.indices
    assert np.all(x[idx][:, :, 6:8, 6:8] == 0.75)
    outside = np.ones((1, 8, 8), dtype=bool)
    outside[:, 6:8, 6:8] = False
    np.testing.assert_array_equal(x[idx][:, outside], train.x[idx][:, outside])
    untouched = np.setdiff1d(np.arange(len(train)), idx)
    np.testing.assert_array_equal(x[untouched], train.x[untouched])
    np.testing.assert_array_equal(result.dataset.y[untouched], train.y[untouched])
    assert np.all(result.dataset.y[idx] == 0)
    np.testing.assert_array_equal(result.original_labels, train.y[idx])


@pytest.mark.parametrize(
    ("position", "rows", "cols"),
    [("top-left", slice(0, 3), slice(0, 3)), ([2, 4], slice(2, 5), slice(4, 7))],
)
def test_badnets_patch_position_is_configurable(
    train: Dataset, position: str | list[int], rows: slice, cols: slice
) -> None:
    attack = BadNets(rate=0.1, patch_size=3, patch_position=position, target_class=1)
    triggered = attack.apply_trigger(train.x[:5], (0.0, 1.0))
    expected = train.x[:5].copy()
    expected[:, :, rows, cols] = 1.0
    np.testing.assert_array_equal(triggered, expected)


def test_badnets_on_tabular_data_sets_the_last_features() -> None:
    x = np.zeros((4, 6), dtype=np.float32)
    out = BadNets(rate=0.5, patch_size=2).apply_trigger(x, (0.0, 1.0))
    np.testing.assert_array_equal(out[:, 4:], 1.0)
    np.testing.assert_array_equal(out[:, :4], 0.0)


@pytest.mark.parametrize("name", sorted(POISONING_ATTACKS))
@pytest.mark.parametrize("rate", [0.013, 0.05, 0.1, 0.5])
def test_poison_count_is_rate_times_eligible_rounded(
    train: Dataset, texts: Dataset, name: str, rate: float
) -> None:
    train = _data_for(name, train, texts)
    attack = POISONING_ATTACKS[name](rate=rate, target_class=2, seed=0)
    result = attack.poison(train)
    eligible = attack.eligible(train)
    assert len(result.indices) == round(rate * len(eligible))
    assert np.all(np.isin(result.indices, eligible))
    assert len(np.unique(result.indices)) == len(result.indices)


def test_backdoors_never_poison_samples_of_the_target_class(train: Dataset) -> None:
    result = BadNets(rate=0.5, target_class=4).poison(train)
    assert not np.any(train.y[result.indices] == 4)


@pytest.mark.parametrize("name", sorted(POISONING_ATTACKS))
def test_same_seed_same_poison_and_different_seeds_differ(
    train: Dataset, texts: Dataset, name: str
) -> None:
    train = _data_for(name, train, texts)
    cls = POISONING_ATTACKS[name]
    a = cls(rate=0.05, target_class=1, seed=7).poison(train)
    b = cls(rate=0.05, target_class=1, seed=7).poison(train)
    c = cls(rate=0.05, target_class=1, seed=8).poison(train)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.dataset.x, b.dataset.x)
    np.testing.assert_array_equal(a.dataset.y, b.dataset.y)
    assert not np.array_equal(a.indices, c.indices)


def test_poisoning_leaves_the_input_dataset_unchanged(train: Dataset) -> None:
    before_x, before_y = train.x.copy(), train.y.copy()
    Blend(rate=0.2, target_class=0).poison(train)
    LabelFlip(rate=0.2).poison(train)
    np.testing.assert_array_equal(train.x, before_x)
    np.testing.assert_array_equal(train.y, before_y)


def test_blend_is_the_convex_mix_with_the_pattern(train: Dataset) -> None:
    pattern = np.linspace(0, 1, 64, dtype=np.float32).reshape(1, 8, 8)
    attack = Blend(rate=0.1, target_class=3, alpha=0.25, pattern=pattern)
    result = attack.poison(train)
    idx = result.indices
    np.testing.assert_allclose(
        result.dataset.x[idx], 0.75 * train.x[idx] + 0.25 * pattern[None], atol=1e-6
    )
    assert np.all(result.dataset.y[idx] == 3)


def test_blend_noise_pattern_is_seeded_and_in_range(train: Dataset) -> None:
    one = Blend(rate=0.1, pattern_seed=1).trigger_pattern((1, 8, 8), (0.0, 1.0))
    again = Blend(rate=0.1, pattern_seed=1).trigger_pattern((1, 8, 8), (0.0, 1.0))
    np.testing.assert_array_equal(one, again)
    assert one.min() >= 0 and one.max() <= 1 and one.std() > 0.2


def test_random_label_flips_always_change_the_label(train: Dataset) -> None:
    result = LabelFlip(rate=0.3, seed=0).poison(train)
    idx = result.indices
    assert np.all(result.dataset.y[idx] != train.y[idx])
    new_labels = np.bincount(result.dataset.y[idx], minlength=10)
    assert new_labels.min() > 0  # spread over every class, not one


def test_targeted_flips_move_only_the_source_class_to_the_target(train: Dataset) -> None:
    result = LabelFlip(rate=0.5, mode="targeted", target_class=1, source_class=7).poison(train)
    assert np.all(train.y[result.indices] == 7)
    assert np.all(result.dataset.y[result.indices] == 1)
    assert len(result.indices) == round(0.5 * np.sum(train.y == 7))


@pytest.mark.parametrize(
    ("attack", "match"),
    [
        (BadNets(rate=0.0), "rate"),
        (BadNets(rate=1.5), "rate"),
        (BadNets(rate=0.1, target_class=10), "target_class"),
        (BadNets(rate=0.1, patch_size=9), "patch_size"),
        (BadNets(rate=0.1, patch_size=2, patch_position=[7, 0]), "patch_position"),
        (BadNets(rate=0.1, patch_position="middle"), "patch_position"),
        (BadNets(rate=0.1, patch_value=2.0), "patch_value"),
        (Blend(rate=0.1, alpha=0.0), "alpha"),
        (Blend(rate=0.1, pattern=np.zeros((8, 8))), "shape"),
        (LabelFlip(rate=0.1, mode="targeted"), "target_class"),
        (LabelFlip(rate=0.1, mode="sideways"), "mode"),
        (BadNets(rate=0.0001), "poisons none"),
    ],
)
def test_bad_parameters_are_refused_with_the_name(
    train: Dataset, attack: object, match: str
) -> None:
    with pytest.raises(AttackError, match=match):
        attack.poison(train)  # type: ignore[attr-defined]


def test_truth_file_round_trip_rebuilds_the_attack(train: Dataset, tmp_path: Path) -> None:
    attack = BadNets(rate=0.05, target_class=2, patch_size=3, patch_position=[1, 1], seed=4)
    result = attack.poison(train)
    data_path, truth_path = save_poisoned(result, tmp_path / "p.npz", source={"spec": "x"})
    assert truth_path.name == "p.truth.json"
    loaded = load_dataset(str(data_path))
    np.testing.assert_array_equal(loaded.x, result.dataset.x)
    np.testing.assert_array_equal(loaded.y, result.dataset.y)
    record = load_truth(truth_path, n_samples=len(loaded))
    assert record["indices"] == result.indices.tolist()
    rebuilt = attack_from_truth(record)
    np.testing.assert_array_equal(
        rebuilt.apply_trigger(train.x[:3], (0.0, 1.0)),  # type: ignore[attr-defined]
        attack.apply_trigger(train.x[:3], (0.0, 1.0)),
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.npz", "p.truth.json"]


def test_truth_for_other_data_is_refused(train: Dataset, tmp_path: Path) -> None:
    _, truth_path = save_poisoned(BadNets(rate=0.05).poison(train), tmp_path / "p.npz")
    with pytest.raises(DataError, match="samples"):
        load_truth(truth_path, n_samples=10)


def test_saving_needs_an_npz_path(train: Dataset, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\.npz"):
        save_poisoned(BadNets(rate=0.05).poison(train), tmp_path / "p.csv")


class _Always(Classifier):
    """Predicts class ``label`` for every input."""

    def __init__(self, label: int) -> None:
        super().__init__(input_shape=(1, 8, 8), n_classes=10)
        self.label = label

    def _predict_proba_batch(self, x: np.ndarray) -> np.ndarray:
        proba = np.zeros((len(x), 10), dtype=np.float32)
        proba[:, self.label] = 1.0
        return proba


def test_backdoor_metrics_of_a_constant_model_have_a_closed_form() -> None:
    test = load_builtin("digits").test
    metrics = evaluate_backdoor(_Always(0), test, BadNets(rate=0.1, target_class=0))
    assert metrics.clean_accuracy == pytest.approx(np.mean(test.y == 0))
    assert metrics.attack_success_rate == 1.0
    assert metrics.n_triggered == int(np.sum(test.y != 0))
    other = evaluate_backdoor(_Always(0), test, BadNets(rate=0.1, target_class=5))
    assert other.attack_success_rate == 0.0
