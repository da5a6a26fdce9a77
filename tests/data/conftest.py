"""Fixtures for data tests: writers for small .npz and .csv files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture
def write_npz(tmp_path: Path) -> Callable[..., Path]:
    """Write the given arrays to ``tmp_path/<name>`` with :func:`numpy.savez`."""

    def write(name: str = "data.npz", **arrays: np.ndarray) -> Path:
        path = tmp_path / name
        np.savez(path, **arrays)
        return path

    return write


@pytest.fixture
def write_csv(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write ``text`` to ``tmp_path/<name>``."""

    def write(text: str, name: str = "data.csv") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def features() -> np.ndarray:
    """Six samples of three features in [0, 1]."""
    return np.random.default_rng(0).random((6, 3)).astype(np.float32)


@pytest.fixture
def labels() -> np.ndarray:
    return np.array([0, 1, 2, 0, 1, 2])
