"""The text dataset: strings with integer labels, behind the same :class:`Dataset` interface."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mlwarden.data.dataset import DataKind, Dataset, check_label_range
from mlwarden.errors import DataError

__all__ = ["TextDataset", "as_text_array"]


def as_text_array(texts: object, *, source: str) -> np.ndarray:
    """``texts`` (a string, a sequence of strings or a 1-D string array) as a 1-D object array.

    Raises :class:`DataError` naming ``source`` when an element is not a string.
    """
    if isinstance(texts, str):
        texts = [texts]
    if isinstance(texts, np.ndarray):
        if texts.ndim != 1:
            raise DataError(
                f"{source}: texts must be 1-D (one string per sample), got {texts.shape}"
            )
        items: Sequence[object] = texts.tolist()
    elif isinstance(texts, Sequence):
        items = texts
    else:
        raise DataError(f"{source}: texts must be a list of strings, got {type(texts).__name__}")
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise DataError(
                f"{source}: texts must be strings, element {i} is {type(item).__name__}"
            )
    array = np.empty(len(items), dtype=object)
    array[:] = list(items)
    return array


@dataclass(frozen=True)
class TextDataset(Dataset):
    """Texts ``x`` (a 1-D object array of ``str``) with integer labels ``y`` in ``[0, n_classes)``.

    A :class:`Dataset` in every other respect (``subset``, ``sample``, ``with_samples``), so the
    data API serves text like tensors; ``clip_range`` is unused. ``class_names`` says what each
    label means.
    """

    kind: DataKind = "text"
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.x, np.ndarray) or self.x.dtype != object or self.x.ndim != 1:
            raise DataError(f"{self.name}: x must be a 1-D object array of strings")
        as_text_array(self.x, source=self.name)
        y = self.y
        if not isinstance(y, np.ndarray) or y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{self.name}: y must be a 1-D array of integer labels")
        if len(y) != len(self.x):
            raise DataError(
                f"{self.name}: x has {len(self.x)} texts but y has {len(y)} labels "
                "(one label per text)"
            )
        if len(y) == 0:
            raise DataError(f"{self.name}: the dataset is empty")
        check_label_range(y, source=self.name, n_classes=self.n_classes)
        if self.class_names is not None and len(self.class_names) != self.n_classes:
            raise DataError(
                f"{self.name}: {len(self.class_names)} class names for {self.n_classes} classes"
            )

    @classmethod
    def from_texts(
        cls,
        texts: Sequence[str] | np.ndarray,
        labels: Sequence[int] | np.ndarray,
        *,
        name: str,
        n_classes: int | None = None,
        class_names: Sequence[str] | None = None,
    ) -> TextDataset:
        """A validated dataset from plain lists; ``n_classes`` defaults to ``max(label) + 1``."""
        x = as_text_array(texts, source=name)
        y = np.asarray(labels)
        if y.ndim != 1 or (len(y) and not np.issubdtype(y.dtype, np.integer)):
            raise DataError(f"{name}: labels must be a 1-D sequence of integers")
        y = y.astype(np.int64)
        if n_classes is None:
            n_classes = max(int(y.max()) + 1 if len(y) else 2, 2)
        return cls(
            name=name,
            x=x,
            y=y,
            n_classes=n_classes,
            class_names=None if class_names is None else tuple(class_names),
        )

    @property
    def texts(self) -> list[str]:
        """The texts as a list of strings."""
        return [str(t) for t in self.x]

    def digest(self) -> str:
        """SHA-256 over the UTF-8 texts (length-prefixed) and the labels."""
        h = hashlib.sha256()
        h.update(f"texts:{len(self.x)};".encode("ascii"))
        for text in self.x:
            raw = str(text).encode("utf-8")
            h.update(len(raw).to_bytes(8, "little"))
            h.update(raw)
        h.update(f"y:{self.y.dtype.str}:{self.y.shape};".encode("ascii"))
        h.update(np.ascontiguousarray(self.y).tobytes())
        return h.hexdigest()
