"""Fixtures for the assessment tests: stand-in classifiers and a small real assessment."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from mlwarden.data import Dataset, load_dataset
from mlwarden.models import Classifier, load_model


@pytest.fixture
def white_box() -> Any:
    """Enough of a differentiable classifier for attack planning."""
    return SimpleNamespace(differentiable=True)


@pytest.fixture
def black_box() -> Any:
    """Enough of a gradient-free classifier for attack planning."""
    return SimpleNamespace(differentiable=False)


@pytest.fixture
def write_yaml(tmp_path: Path) -> Any:
    """Write settings (or raw text) to ``tmp_path/NAME`` and return the path."""

    def write(settings: Any, name: str = "assess.yaml", *, text: str | None = None) -> Path:
        path = tmp_path / name
        body = text if text is not None else yaml.safe_dump(settings, sort_keys=False)
        path.write_text(body, encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="session")
def digits_cnn() -> Classifier:
    return load_model("zoo:digits-cnn")


@pytest.fixture(scope="session")
def digits_test() -> Dataset:
    return load_dataset("builtin:digits")
