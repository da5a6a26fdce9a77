"""Reading .npz files: a round trip, and a DataError naming the file for every bad input."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mlwarden.data import load_dataset
from mlwarden.errors import DataError


def test_arrays_round_trip(
    write_npz: Callable[..., Path], features: np.ndarray, labels: np.ndarray
) -> None:
    data = load_dataset(str(write_npz(x=features, y=labels)))

    np.testing.assert_array_equal(data.x, features)
    np.testing.assert_array_equal(data.y, labels)
    assert data.name == "data.npz"
    assert data.n_classes == 3
    assert data.clip_range == (0.0, 1.0)
    assert data.kind == "tabular"


def test_inputs_become_float32(write_npz: Callable[..., Path], labels: np.ndarray) -> None:
    x = np.arange(18, dtype=np.int64).reshape(6, 3)

    data = load_dataset(str(write_npz(x=x, y=labels)))

    assert data.x.dtype == np.float32
    np.testing.assert_array_equal(data.x, x)


def test_integral_float_labels_become_integers(
    write_npz: Callable[..., Path], features: np.ndarray, labels: np.ndarray
) -> None:
    data = load_dataset(str(write_npz(x=features, y=labels.astype(np.float64))))

    assert np.issubdtype(data.y.dtype, np.integer)
    np.testing.assert_array_equal(data.y, labels)


def test_image_shaped_inputs_are_marked_as_images(
    write_npz: Callable[..., Path], labels: np.ndarray
) -> None:
    x = np.zeros((6, 1, 4, 4), np.float32)

    assert load_dataset(str(write_npz(x=x, y=labels))).kind == "image"


def test_n_classes_argument_overrides_the_inferred_count(
    write_npz: Callable[..., Path], features: np.ndarray, labels: np.ndarray
) -> None:
    assert load_dataset(str(write_npz(x=features, y=labels)), n_classes=5).n_classes == 5


def test_clip_range_is_the_data_range_when_it_leaves_the_unit_interval(
    write_npz: Callable[..., Path], labels: np.ndarray
) -> None:
    x = np.linspace(-2.0, 3.0, 18, dtype=np.float32).reshape(6, 3)

    assert load_dataset(str(write_npz(x=x, y=labels))).clip_range == (-2.0, 3.0)


def test_missing_labels_array_is_named(
    write_npz: Callable[..., Path], features: np.ndarray
) -> None:
    with pytest.raises(DataError, match=r"data\.npz: the \.npz file lacks array\(s\) \['y'\]"):
        load_dataset(str(write_npz(x=features)))


def test_object_array_is_refused_without_being_unpickled(
    write_npz: Callable[..., Path], labels: np.ndarray, tmp_path: Path
) -> None:
    canary = tmp_path / "canary-was-executed"
    payload = np.empty(6, dtype=object)
    payload[:] = [Exploit(canary)] * 6
    path = write_npz(x=payload, y=labels)

    with pytest.raises(DataError, match=r"data\.npz: contains object arrays.*refused"):
        load_dataset(str(path))
    assert not canary.exists()


class Exploit:
    """Unpickling this creates ``canary``."""

    def __init__(self, canary: Path) -> None:
        self.canary = canary

    def __reduce__(self) -> tuple[Callable[[str], None], tuple[str]]:
        return (os.mkdir, (str(self.canary),))


def test_the_exploit_does_run_when_unpickled(tmp_path: Path) -> None:
    # Guards the test above: it would pass vacuously if the payload could not run.
    canary = tmp_path / "canary"
    pickle.loads(pickle.dumps(Exploit(canary)))

    assert canary.exists()


def test_a_file_that_is_not_an_npz_is_named(tmp_path: Path) -> None:
    path = tmp_path / "broken.npz"
    path.write_bytes(b"PK\x03\x04 not really a zip")

    with pytest.raises(DataError, match=r"broken\.npz"):
        load_dataset(str(path))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_inputs_are_refused(
    write_npz: Callable[..., Path], features: np.ndarray, labels: np.ndarray, bad: float
) -> None:
    features[2, 1] = bad

    with pytest.raises(DataError, match=r"data\.npz: x contains 1 NaN/inf values"):
        load_dataset(str(write_npz(x=features, y=labels)))


def test_negative_labels_are_refused(
    write_npz: Callable[..., Path], features: np.ndarray, labels: np.ndarray
) -> None:
    labels[3] = -1

    with pytest.raises(DataError, match=r"data\.npz: labels must be non-negative.*-1"):
        load_dataset(str(write_npz(x=features, y=labels)))


def test_labels_at_or_above_n_classes_are_refused(
    write_npz: Callable[..., Path], features: np.ndarray, labels: np.ndarray
) -> None:
    with pytest.raises(DataError, match=r"data\.npz: labels must lie in \[0, 1\].*from 0 to 2"):
        load_dataset(str(write_npz(x=features, y=labels)), n_classes=2)


@pytest.mark.parametrize("bad", [0.5, np.nan], ids=["fraction", "nan"])
def test_non_integer_float_labels_are_refused(
    write_npz: Callable[..., Path], features: np.ndarray, labels: np.ndarray, bad: float
) -> None:
    y = labels.astype(np.float64)
    y[0] = bad

    with pytest.raises(DataError, match=r"data\.npz: y must hold integer class labels"):
        load_dataset(str(write_npz(x=features, y=y)))


def test_string_labels_are_refused(write_npz: Callable[..., Path], features: np.ndarray) -> None:
    with pytest.raises(DataError, match=r"data\.npz: y must hold integer class labels.*<U3"):
        load_dataset(str(write_npz(x=features, y=np.array(["cat"] * 6))))


@pytest.mark.parametrize("n_labels", [5, 7])
def test_x_and_y_of_different_lengths_are_refused(
    write_npz: Callable[..., Path], features: np.ndarray, n_labels: int
) -> None:
    with pytest.raises(DataError, match=rf"data\.npz: x has 6 samples but y has {n_labels}"):
        load_dataset(str(write_npz(x=features, y=np.zeros(n_labels, np.int64))))


def test_labels_for_an_empty_x_are_a_length_mismatch(write_npz: Callable[..., Path]) -> None:
    x = np.zeros((0, 3), np.float32)

    with pytest.raises(DataError, match=r"data\.npz: x has 0 samples but y has 2"):
        load_dataset(str(write_npz(x=x, y=np.zeros(2, np.int64))))


def test_one_dimensional_inputs_are_refused(
    write_npz: Callable[..., Path], labels: np.ndarray
) -> None:
    with pytest.raises(
        DataError, match=r"data\.npz: x must be \(n_samples, \.\.\.\), got shape \(6,\)"
    ):
        load_dataset(str(write_npz(x=np.zeros(6, np.float32), y=labels)))


def test_two_dimensional_labels_are_refused(
    write_npz: Callable[..., Path], features: np.ndarray, labels: np.ndarray
) -> None:
    with pytest.raises(DataError, match=r"data\.npz: y must be 1-D"):
        load_dataset(str(write_npz(x=features, y=labels.reshape(6, 1))))


def test_an_empty_dataset_is_refused(write_npz: Callable[..., Path]) -> None:
    x, y = np.zeros((0, 3), np.float32), np.zeros(0, np.int64)

    with pytest.raises(DataError, match=r"data\.npz: the dataset is empty"):
        load_dataset(str(write_npz(x=x, y=y)))


def test_complex_inputs_are_refused(write_npz: Callable[..., Path], labels: np.ndarray) -> None:
    x = np.ones((6, 3), np.complex64)

    with pytest.raises(DataError, match=r"data\.npz: x must be a real numeric array.*complex64"):
        load_dataset(str(write_npz(x=x, y=labels)))


def test_boolean_inputs_are_refused(write_npz: Callable[..., Path], labels: np.ndarray) -> None:
    with pytest.raises(DataError, match=r"data\.npz: x must be a real numeric array.*bool"):
        load_dataset(str(write_npz(x=np.ones((6, 3), bool), y=labels)))


def test_a_text_file_named_npz_is_not_called_an_object_array(tmp_path: Path) -> None:
    path = tmp_path / "table.npz"
    path.write_text("a,b,label\n1,2,0\n")

    with pytest.raises(DataError, match=r"table\.npz: not an \.npz archive.*np\.savez"):
        load_dataset(str(path))


def test_a_single_npy_array_named_npz_asks_for_an_archive(
    tmp_path: Path, features: np.ndarray
) -> None:
    path = tmp_path / "features.npz"
    with open(path, "wb") as fh:
        np.save(fh, features)

    with pytest.raises(DataError, match=r"features\.npz: holds a single \.npy array.*np\.savez"):
        load_dataset(str(path))
