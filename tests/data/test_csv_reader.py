"""Reading CSV files: a header row, numeric features, one integer label column."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mlwarden.data import load_dataset
from mlwarden.errors import DataError

WriteCsv = Callable[..., Path]


def test_features_and_labels_are_read_with_the_label_column_anywhere(write_csv: WriteCsv) -> None:
    path = write_csv("a,label,b\n0.1,1,0.2\n0.3,0,0.4\n0.5,2,0.6\n")

    data = load_dataset(str(path))

    np.testing.assert_allclose(data.x, [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]])
    np.testing.assert_array_equal(data.y, [1, 0, 2])
    assert data.x.dtype == np.float32
    assert data.feature_names == ("a", "b")
    assert data.n_classes == 3
    assert data.name == "data.csv"


def test_label_column_can_be_named(write_csv: WriteCsv) -> None:
    data = load_dataset(str(write_csv("target,a\n1,5\n0,6\n")), label_column="target")

    np.testing.assert_array_equal(data.y, [1, 0])
    assert data.feature_names == ("a",)


def test_integral_labels_written_as_floats_are_accepted(write_csv: WriteCsv) -> None:
    data = load_dataset(str(write_csv("a,label\n1,1.0\n2,0.0\n")))

    np.testing.assert_array_equal(data.y, [1, 0])


def test_missing_label_column_names_the_header_and_the_option(write_csv: WriteCsv) -> None:
    with pytest.raises(
        DataError,
        match=r"data\.csv: no label column 'label' in the header \['a', 'b'\].*--label-column",
    ):
        load_dataset(str(write_csv("a,b\n1,2\n")))


def test_ragged_row_names_its_line_and_field_counts(write_csv: WriteCsv) -> None:
    with pytest.raises(DataError, match=r"data\.csv: line 3 has 2 fields, the header has 3"):
        load_dataset(str(write_csv("a,b,label\n1,2,0\n3,1\n")))


def test_non_numeric_value_names_its_line(write_csv: WriteCsv) -> None:
    with pytest.raises(DataError, match=r"data\.csv: line 2 has a non-numeric value"):
        load_dataset(str(write_csv("a,label\nred,0\n")))


@pytest.mark.parametrize("label", ["0.5", "nan", "inf", "-inf"])
def test_non_integer_label_names_its_line_and_value(write_csv: WriteCsv, label: str) -> None:
    with pytest.raises(DataError, match=rf"data\.csv: line 3: label '{label}' is not an integer"):
        load_dataset(str(write_csv(f"a,label\n1,0\n2,{label}\n")))


def test_negative_label_is_refused(write_csv: WriteCsv) -> None:
    with pytest.raises(DataError, match=r"data\.csv: labels must be non-negative.*-1"):
        load_dataset(str(write_csv("a,label\n1,0\n2,-1\n")))


def test_nan_feature_is_refused(write_csv: WriteCsv) -> None:
    with pytest.raises(DataError, match=r"data\.csv: x contains 1 NaN/inf values"):
        load_dataset(str(write_csv("a,label\nnan,0\n2,1\n")))


@pytest.mark.parametrize("text", ["a,b,label\n", ""], ids=["header-only", "empty"])
def test_file_without_data_rows_is_refused(write_csv: WriteCsv, text: str) -> None:
    with pytest.raises(DataError, match=r"data\.csv: needs a header row and at least one data row"):
        load_dataset(str(write_csv(text)))


def test_label_as_the_only_column_is_refused(write_csv: WriteCsv) -> None:
    with pytest.raises(DataError, match=r"data\.csv: no feature columns besides 'label'"):
        load_dataset(str(write_csv("label\n1\n0\n")))


def test_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("caf\xe9,label\n1,0\n".encode("latin-1"))

    with pytest.raises(DataError, match=r"latin1\.csv: cannot read as UTF-8 CSV"):
        load_dataset(str(path))


def test_byte_order_mark_written_by_spreadsheets_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("label,a\n1,0.5\n0,0.25\n".encode("utf-8-sig"))

    data = load_dataset(str(path))

    np.testing.assert_array_equal(data.y, [1, 0])
    assert data.feature_names == ("a",)
