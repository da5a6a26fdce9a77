"""The validated in-memory dataset every mlwarden check consumes."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from mlwarden.errors import DataError

__all__ = ["Dataset", "check_label_range", "check_labels", "check_shapes", "validate_arrays"]

DataKind = Literal["image", "tabular", "text"]


@dataclass(frozen=True)
class Dataset:
    """Inputs ``x`` (float32, ``(n, *input_shape)``) with integer labels ``y`` in ``[0, n_classes)``.

    ``clip_range`` is the valid range of every feature; attacks stay inside it. ``kind`` tells
    reports whether samples can be drawn as images.
    """

    name: str
    x: np.ndarray
    y: np.ndarray
    n_classes: int
    clip_range: tuple[float, float] = (0.0, 1.0)
    kind: DataKind = "tabular"
    feature_names: tuple[str, ...] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        validate_arrays(self.x, self.y, n_classes=self.n_classes, source=self.name)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input."""
        return tuple(int(d) for d in self.x.shape[1:])

    def __len__(self) -> int:
        return len(self.y)

    def digest(self) -> str:
        """SHA-256 over inputs and labels, their shapes and dtypes: which data a result came from.

        The same bytes with another shape (a reshaped ``x``) or dtype give another digest.
        Digests made before mlwarden 0.2 hashed the bytes alone; the records that store a
        digest carry a format version that says which (docs/report-schema.md).
        """
        h = hashlib.sha256()
        for name, array in (("x", self.x), ("y", self.y)):
            h.update(f"{name}:{array.dtype.str}:{array.shape};".encode("ascii"))
            h.update(np.ascontiguousarray(array).tobytes())
        return h.hexdigest()

    def with_samples(
        self, x: np.ndarray | None = None, y: np.ndarray | None = None, *, name: str | None = None
    ) -> Dataset:
        """A new dataset of the same task (classes, range, kind, feature names) with other samples.

        ``x`` and ``y`` default to this dataset's own; the result is validated like any other.
        """
        return dataclasses.replace(
            self,
            name=self.name if name is None else name,
            x=self.x if x is None else x,
            y=self.y if y is None else y,
        )

    def subset(self, indices: np.ndarray, name: str | None = None) -> Dataset:
        """The samples at ``indices``."""
        return self.with_samples(self.x[indices], self.y[indices], name=name or self.name)

    def sample(self, max_samples: int | None, seed: int) -> Dataset:
        """At most ``max_samples`` samples, drawn without replacement with ``seed``."""
        if max_samples is None or max_samples >= len(self):
            return self
        rng = np.random.default_rng(seed)
        indices = np.sort(rng.choice(len(self), size=max_samples, replace=False))
        return self.subset(indices)


def validate_arrays(x: np.ndarray, y: np.ndarray, *, n_classes: int, source: str) -> None:
    """Raise :class:`DataError` naming ``source`` if ``x``/``y`` cannot be used as a dataset."""
    if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
        raise DataError(f"{source}: x and y must be NumPy arrays")
    if x.dtype != np.float32:
        raise DataError(f"{source}: x must be float32 after loading, got {x.dtype}")
    check_shapes(x, y, source=source)
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{source}: labels must be integers, got {y.dtype}")
    bad = ~np.isfinite(x)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise DataError(
            f"{source}: x contains {int(bad.sum())} NaN/inf values (first at index {first}); "
            "impute or drop them before assessing"
        )
    check_label_range(y, source=source, n_classes=n_classes)


def check_shapes(x: Any, y: Any, *, source: str) -> None:
    """Raise :class:`DataError` naming ``source`` unless ``x`` is a non-empty batch with one label each.

    The one shape check of the data layer: readers call it before converting,
    :func:`validate_arrays` (every :class:`Dataset`) after, trainers on their tensors (anything
    with ``ndim``, ``shape`` and ``len`` works), and attacks through :func:`check_labels`.
    """
    if x.ndim < 2:
        raise DataError(f"{source}: x must be (n_samples, ...), got shape {x.shape}")
    if y.ndim != 1:
        raise DataError(
            f"{source}: y must be 1-D, one label per sample, got shape {tuple(y.shape)}"
        )
    if len(x) != len(y):
        raise DataError(
            f"{source}: x has {len(x)} samples but y has {len(y)} labels (one label per sample)"
        )
    if len(y) == 0:
        raise DataError(f"{source}: the dataset is empty")


def check_labels(labels: Any, *, n: int, n_classes: int, source: str) -> np.ndarray:
    """``labels`` as int64 after checking there is one integer label per sample, in range.

    Raises :class:`DataError` naming ``source``.
    """
    y = np.asarray(labels)
    if y.shape != (n,):
        raise DataError(f"{source} must have shape ({n},), one label per sample, got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{source} must hold integer labels, got dtype {y.dtype}")
    check_label_range(y, source=source, n_classes=n_classes)
    return y.astype(np.int64)


def check_label_range(y: np.ndarray, *, source: str, n_classes: int | None = None) -> None:
    """Raise :class:`DataError` unless labels lie in ``[0, n_classes)`` (``n_classes`` unknown: ``>= 0``)."""
    if not len(y):
        return
    low, high = int(y.min()), int(y.max())
    if n_classes is None:
        if low < 0:
            raise DataError(f"{source}: labels must be non-negative integers, found {low}")
    elif low < 0 or high >= n_classes:
        raise DataError(
            f"{source}: labels must lie in [0, {n_classes - 1}], got values from {low} to {high}"
        )
