"""Dataset specs, validation, digest and sampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlwarden.data import Dataset, load_dataset
from mlwarden.errors import DataError


@pytest.fixture
def dataset(features: np.ndarray, labels: np.ndarray) -> Dataset:
    return Dataset(name="six", x=features, y=labels, n_classes=3)


# Paths that are not datasets -----------------------------------------------------------------


def test_missing_path_is_named_with_the_builtin_alternative(tmp_path: Path) -> None:
    with pytest.raises(
        DataError, match=r"'.*nowhere\.npz' does not exist \(or use builtin:digits\)"
    ):
        load_dataset(str(tmp_path / "nowhere.npz"))


def test_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"is a directory; give an \.npz or \.csv file"):
        load_dataset(str(tmp_path))


@pytest.mark.parametrize("name", ["data.parquet", "data"])
def test_unknown_extension_names_the_file_and_the_formats(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("1,2\n")

    with pytest.raises(DataError, match=rf"unsupported dataset format.*{name}.*\.npz.*\.csv"):
        load_dataset(str(path))


# Validation of in-memory datasets ------------------------------------------------------------


def test_dataset_requires_float32_inputs(labels: np.ndarray) -> None:
    with pytest.raises(DataError, match="six: x must be float32 after loading, got float64"):
        Dataset(name="six", x=np.zeros((6, 3)), y=labels, n_classes=3)


def test_dataset_requires_integer_labels(features: np.ndarray) -> None:
    with pytest.raises(DataError, match="six: labels must be integers, got float64"):
        Dataset(name="six", x=features, y=np.zeros(6), n_classes=3)


# Digest ---------------------------------------------------------------------------------------


def test_digest_is_the_same_for_equal_data(dataset: Dataset) -> None:
    copy = Dataset(name="other", x=dataset.x.copy(), y=dataset.y.copy(), n_classes=3)

    assert copy.digest() == dataset.digest()


def test_digest_does_not_depend_on_memory_layout(dataset: Dataset) -> None:
    fortran = Dataset(name="six", x=np.asfortranarray(dataset.x), y=dataset.y, n_classes=3)

    assert fortran.digest() == dataset.digest()


def test_digest_changes_when_one_label_changes(dataset: Dataset) -> None:
    y = dataset.y.copy()
    y[0] = 1

    assert Dataset(name="six", x=dataset.x, y=y, n_classes=3).digest() != dataset.digest()


def test_digest_changes_when_one_input_changes(dataset: Dataset) -> None:
    x = dataset.x.copy()
    x[0, 0] += 0.5

    assert Dataset(name="six", x=x, y=dataset.y, n_classes=3).digest() != dataset.digest()


def test_digest_of_a_builtin_split_is_stable_across_loads() -> None:
    assert load_dataset("builtin:digits").digest() == load_dataset("builtin:digits").digest()


# Sampling -------------------------------------------------------------------------------------


def test_sample_with_the_same_seed_gives_the_same_samples(dataset: Dataset) -> None:
    first, second = dataset.sample(3, seed=7), dataset.sample(3, seed=7)

    np.testing.assert_array_equal(first.x, second.x)
    np.testing.assert_array_equal(first.y, second.y)


def test_sample_with_different_seeds_gives_different_samples() -> None:
    data = load_dataset("builtin:digits")

    assert data.sample(50, seed=0).digest() != data.sample(50, seed=1).digest()


def test_sample_draws_distinct_rows_in_their_original_order(dataset: Dataset) -> None:
    sample = dataset.sample(4, seed=3)
    rows = [int(np.flatnonzero((dataset.x == row).all(axis=1))[0]) for row in sample.x]

    assert len(sample) == 4
    assert rows == sorted(set(rows))


def test_sample_keeps_the_dataset_description(dataset: Dataset) -> None:
    sample = dataset.sample(2, seed=0)

    assert (sample.name, sample.n_classes, sample.clip_range, sample.kind) == (
        dataset.name,
        dataset.n_classes,
        dataset.clip_range,
        dataset.kind,
    )


@pytest.mark.parametrize("max_samples", [None, 6, 100])
def test_sample_of_at_least_the_whole_dataset_returns_it(
    dataset: Dataset, max_samples: int | None
) -> None:
    assert dataset.sample(max_samples, seed=0) is dataset


def test_a_reshaped_copy_has_another_digest() -> None:
    x = np.arange(32, dtype=np.float32).reshape(4, 8) / 32
    y = np.array([0, 1, 0, 1])
    flat = Dataset(name="flat", x=x, y=y, n_classes=2)
    image = Dataset(name="image", x=x.reshape(4, 2, 4), y=y, n_classes=2)
    assert flat.digest() != image.digest()
    assert flat.digest() == Dataset(name="again", x=x.copy(), y=y.copy(), n_classes=2).digest()


def test_labels_of_another_dtype_give_another_digest() -> None:
    x = np.zeros((2, 3), dtype=np.float32)
    as_int64 = Dataset(name="a", x=x, y=np.array([0, 1], dtype=np.int64), n_classes=2)
    as_int32 = Dataset(name="b", x=x, y=np.array([0, 1], dtype=np.int32), n_classes=2)
    assert as_int64.digest() != as_int32.digest()


def test_with_samples_keeps_the_task_and_validates_the_new_samples() -> None:
    x = np.zeros((3, 2), dtype=np.float32)
    data = Dataset(name="d", x=x, y=np.array([0, 1, 2]), n_classes=3, clip_range=(-1.0, 1.0))
    other = data.with_samples(x[:2] + 0.5, np.array([2, 2]), name="other")
    assert (other.name, other.n_classes, other.clip_range, len(other)) == (
        "other",
        3,
        (-1.0, 1.0),
        2,
    )
    with pytest.raises(DataError, match="labels must lie in"):
        data.with_samples(y=np.array([0, 1, 3]))
