"""Load a dataset from a spec: ``builtin:NAME[:train|test]``, an ``.npz`` file or a CSV file.

``.npz`` files hold ``x`` (numeric, ``(n, ...)``) and ``y`` (integer labels, ``(n,)``); they are
read with ``allow_pickle=False`` so an object array can never run code. CSV files have a header
row, numeric feature columns and one integer label column (``label`` unless told otherwise).
"""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path
from typing import BinaryIO

import numpy as np

from mlwarden.data.builtin import load_builtin
from mlwarden.data.dataset import Dataset, check_label_range, check_shapes
from mlwarden.errors import DataError

__all__ = ["load_dataset"]


def load_dataset(
    spec: str,
    *,
    split: str = "test",
    label_column: str = "label",
    n_classes: int | None = None,
    clip_range: tuple[float, float] | None = None,
) -> Dataset:
    """Load and validate the dataset named by ``spec``.

    Parameters
    ----------
    spec
        ``builtin:digits``, ``builtin:breast-cancer`` (optionally ``:train``/``:test``), or a path
        to an ``.npz`` or ``.csv`` file.
    split
        For built-in datasets without an explicit split: which one to return.
    label_column
        For CSV files: the name of the label column.
    n_classes
        Number of classes; inferred as ``max(y) + 1`` when omitted.
    clip_range
        Valid feature range; the data's own ``[min, max]`` widened to include ``[0, 1]`` when
        the data lies there, else the data's range.
    """
    if spec.startswith("builtin:"):
        parts = spec.split(":")
        if len(parts) == 3:
            split = parts[2]
        elif len(parts) != 2:
            raise DataError(
                f"bad dataset spec {spec!r}; use builtin:NAME or builtin:NAME:train|test"
            )
        if split not in ("train", "test"):
            raise DataError(f"bad split {split!r} in {spec!r}; use train or test")
        splits = load_builtin(parts[1])
        return splits.train if split == "train" else splits.test

    path = Path(spec)
    if not path.exists():
        raise DataError(f"dataset file {spec!r} does not exist (or use builtin:digits)")
    if path.is_dir():
        raise DataError(f"dataset path {spec!r} is a directory; give an .npz or .csv file")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        x, y = _read_npz(path)
        names = None
    elif suffix == ".csv":
        x, y, names = _read_csv(path, label_column)
    else:
        raise DataError(
            f"unsupported dataset format {suffix or '(no extension)'!r} for {spec!r}; "
            "use .npz (arrays x and y) or .csv (header row with a label column)"
        )
    return _finish(path.name, x, y, names, n_classes=n_classes, clip_range=clip_range)


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        # Opened here because np.load leaks the handle it opens itself when the file is no zip.
        with open(path, "rb") as fh:
            x, y = _read_npz_arrays(path, fh)
    except OSError as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from exc
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise DataError(f"{path}: x must be a real numeric array, got dtype {x.dtype}")
    if np.issubdtype(y.dtype, np.floating):
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise DataError(f"{path}: y must hold integer class labels, got non-integer values")
        y = y.astype(np.int64)
    elif not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{path}: y must hold integer class labels, got dtype {y.dtype}")
    return x, y


def _read_npz_arrays(path: Path, fh: BinaryIO) -> tuple[np.ndarray, np.ndarray]:
    save_hint = "save it with np.savez(path, x=inputs, y=labels)"
    try:
        loaded = np.load(fh, allow_pickle=False)
    except ValueError as exc:  # NumPy falls back to pickle for what is neither .npy nor .npz
        raise DataError(
            f"{path}: not an .npz archive (reading it would need pickle, which is refused); "
            f"{save_hint}"
        ) from exc
    except (zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from exc
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: holds a single .npy array, not an .npz archive; {save_hint}")
    with loaded as archive:
        missing = [k for k in ("x", "y") if k not in archive.files]
        if missing:
            raise DataError(
                f"{path}: the .npz file lacks array(s) {missing}; it has {archive.files}; "
                f"{save_hint}"
            )
        try:
            return archive["x"], archive["y"]
        except ValueError as exc:  # object arrays need pickle, which we refuse
            raise DataError(
                f"{path}: contains object arrays, which need pickle to load and are refused; "
                "store numeric arrays only"
            ) from exc
        except (zipfile.BadZipFile, EOFError) as exc:
            raise DataError(f"{path}: not a readable .npz file ({exc})") from exc


def _read_csv(path: Path, label_column: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:  # -sig: Excel writes a BOM
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read as UTF-8 CSV ({exc})") from exc
    if len(rows) < 2:
        raise DataError(f"{path}: needs a header row and at least one data row")
    header = [h.strip() for h in rows[0]]
    if label_column not in header:
        raise DataError(
            f"{path}: no label column {label_column!r} in the header {header}; "
            "name it with --label-column"
        )
    label_at = header.index(label_column)
    features = [h for i, h in enumerate(header) if i != label_at]
    if not features:
        raise DataError(f"{path}: no feature columns besides {label_column!r}")
    x = np.empty((len(rows) - 1, len(features)), dtype=np.float64)
    y = np.empty(len(rows) - 1, dtype=np.int64)
    for r, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise DataError(f"{path}: line {r} has {len(row)} fields, the header has {len(header)}")
        try:
            label = float(row[label_at])
            values = [float(v) for i, v in enumerate(row) if i != label_at]
        except ValueError:
            raise DataError(f"{path}: line {r} has a non-numeric value") from None
        if not label.is_integer():  # also NaN and inf, which int() cannot convert
            raise DataError(f"{path}: line {r}: label {row[label_at]!r} is not an integer")
        y[r - 2] = int(label)
        x[r - 2] = values
    return x, y, tuple(features)


def _finish(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    names: tuple[str, ...] | None,
    *,
    n_classes: int | None,
    clip_range: tuple[float, float] | None,
) -> Dataset:
    check_shapes(x, y, source=name)
    check_label_range(y, source=name)
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        bad = int((~np.isfinite(x)).sum())
        raise DataError(f"{name}: x contains {bad} NaN/inf values; impute or drop them first")
    inferred = int(y.max()) + 1 if len(y) else 0
    classes = n_classes if n_classes is not None else max(inferred, 2)
    if clip_range is None:
        low, high = float(x.min()), float(x.max())
        clip_range = (min(low, 0.0), max(high, 1.0)) if low >= 0 and high <= 1 else (low, high)
        if clip_range[0] == clip_range[1]:
            clip_range = (clip_range[0], clip_range[0] + 1.0)
    kind = "image" if x.ndim == 4 or (x.ndim == 3 and min(x.shape[1:]) > 1) else "tabular"
    return Dataset(
        name=name,
        x=x,
        y=y,
        n_classes=classes,
        clip_range=clip_range,
        kind=kind,  # type: ignore[arg-type]
        feature_names=names,
    )
