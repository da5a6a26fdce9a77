"""Built-in datasets shipped by scikit-learn, split and scaled deterministically.

* ``digits``: 1,797 handwritten digits as ``1x8x8`` images in ``[0, 1]`` (10 classes).
* ``breast-cancer``: 569 tumours, 30 features min-max scaled to ``[0, 1]`` on the training split
  and clipped (2 classes).

* ``convention-speeches``: 2,380 paragraphs of the 2012 US party-convention speeches
  (Democrat 0 / Republican 1), as a :class:`~mlwarden.data.text.TextDataset`.
* ``rt-snippets``: 12,808 Rotten Tomatoes review snippets (rotten 0 / fresh 1), text.

All use a stratified 70/30 train/test split with a fixed seed, so ``builtin:digits`` means the
same 540 test samples everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.model_selection import train_test_split

from mlwarden.data.dataset import Dataset
from mlwarden.data.text.corpora import load_text_builtin

__all__ = ["BUILTIN_DATASETS", "DatasetSplits", "load_builtin"]

_SPLIT_SEED = 0
_TEST_SIZE = 0.3


@dataclass(frozen=True)
class DatasetSplits:
    """A dataset's fixed train and test splits."""

    train: Dataset
    test: Dataset


def _digits() -> DatasetSplits:
    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[:, None, :, :]
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=_TEST_SIZE, random_state=_SPLIT_SEED, stratify=y
    )
    make = lambda split, xs, ys: Dataset(  # noqa: E731
        name=f"builtin:digits:{split}", x=xs, y=ys, n_classes=10, kind="image"
    )
    return DatasetSplits(train=make("train", x_tr, y_tr), test=make("test", x_te, y_te))


def _breast_cancer() -> DatasetSplits:
    bunch = load_breast_cancer()
    x = bunch.data.astype(np.float64)
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=_TEST_SIZE, random_state=_SPLIT_SEED, stratify=y
    )
    low, high = x_tr.min(axis=0), x_tr.max(axis=0)
    scale = np.where(high > low, high - low, 1.0)

    def scaled(values: np.ndarray) -> np.ndarray:
        return np.clip((values - low) / scale, 0.0, 1.0).astype(np.float32)

    names = tuple(str(n) for n in bunch.feature_names)
    make = lambda split, xs, ys: Dataset(  # noqa: E731
        name=f"builtin:breast-cancer:{split}",
        x=scaled(xs),
        y=ys,
        n_classes=2,
        kind="tabular",
        feature_names=names,
    )
    return DatasetSplits(train=make("train", x_tr, y_tr), test=make("test", x_te, y_te))


def _text(name: str) -> Callable[[], DatasetSplits]:
    def load() -> DatasetSplits:
        train, test = load_text_builtin(name)
        return DatasetSplits(train=train, test=test)

    return load


BUILTIN_DATASETS: dict[str, Callable[[], DatasetSplits]] = {
    "digits": _digits,
    "breast-cancer": _breast_cancer,
    "convention-speeches": _text("convention-speeches"),
    "rt-snippets": _text("rt-snippets"),
}


def load_builtin(name: str) -> DatasetSplits:
    """The train/test splits of the built-in dataset ``name``."""
    from mlwarden.errors import DataError

    try:
        factory = BUILTIN_DATASETS[name]
    except KeyError:
        known = ", ".join(f"builtin:{n}" for n in BUILTIN_DATASETS)
        raise DataError(f"unknown built-in dataset {name!r}; choose one of: {known}") from None
    return factory()
