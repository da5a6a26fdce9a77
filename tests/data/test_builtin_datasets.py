"""Built-in datasets: fixed splits, shapes, ranges, and spec errors."""

from __future__ import annotations

import numpy as np
import pytest

from mlwarden.data import BUILTIN_DATASETS, load_dataset
from mlwarden.errors import DataError


def test_digits_test_split_is_540_images_of_1x8x8_in_unit_range() -> None:
    data = load_dataset("builtin:digits")

    assert data.x.shape == (540, 1, 8, 8)
    assert data.x.dtype == np.float32
    assert data.x.min() >= 0.0 and data.x.max() <= 1.0
    assert data.n_classes == 10
    assert data.kind == "image"
    assert data.name == "builtin:digits:test"


def test_digits_train_split_has_1257_samples() -> None:
    assert len(load_dataset("builtin:digits", split="train")) == 1257


def test_split_in_the_spec_selects_it() -> None:
    data = load_dataset("builtin:digits:train")

    assert len(data) == 1257
    assert data.name == "builtin:digits:train"


def test_train_and_test_splits_are_disjoint_and_cover_all_digits() -> None:
    train, test = load_dataset("builtin:digits:train"), load_dataset("builtin:digits:test")
    train_rows = {row.tobytes() for row in train.x}

    assert len(train) + len(test) == 1797
    # The digits data has a few duplicate images, so allow a handful of coincidences.
    assert sum(row.tobytes() in train_rows for row in test.x) < 10
    assert set(np.unique(test.y)) == set(range(10))


def test_breast_cancer_test_split_is_171_rows_of_30_features_in_unit_range() -> None:
    data = load_dataset("builtin:breast-cancer")

    assert data.x.shape == (171, 30)
    assert data.x.dtype == np.float32
    assert data.x.min() >= 0.0 and data.x.max() <= 1.0
    assert data.n_classes == 2
    assert data.kind == "tabular"
    assert data.feature_names is not None and len(data.feature_names) == 30


def test_builtin_splits_are_the_same_on_every_load() -> None:
    first, second = load_dataset("builtin:breast-cancer"), load_dataset("builtin:breast-cancer")

    np.testing.assert_array_equal(first.x, second.x)
    np.testing.assert_array_equal(first.y, second.y)


def test_unknown_builtin_dataset_lists_the_choices() -> None:
    with pytest.raises(DataError, match="unknown built-in dataset 'mnist'") as excinfo:
        load_dataset("builtin:mnist")

    for name in BUILTIN_DATASETS:
        assert f"builtin:{name}" in str(excinfo.value)


@pytest.mark.parametrize(
    ("spec", "split"),
    [("builtin:digits:validation", "test"), ("builtin:digits", "validation")],
    ids=["in-spec", "argument"],
)
def test_bad_split_names_it_and_the_choices(spec: str, split: str) -> None:
    with pytest.raises(DataError, match=r"bad split 'validation'.*use train or test"):
        load_dataset(spec, split=split)


def test_spec_with_too_many_parts_shows_the_expected_form() -> None:
    with pytest.raises(DataError, match=r"builtin:NAME:train\|test"):
        load_dataset("builtin:digits:train:extra")
