"""Fixtures for the defense tests: the digits data and the zoo CNN, loaded once per session."""

from __future__ import annotations

import pytest

from mlwarden.data import DatasetSplits, load_builtin
from mlwarden.models import load_model
from mlwarden.models.base import Classifier


@pytest.fixture(scope="session")
def digits() -> DatasetSplits:
    return load_builtin("digits")


@pytest.fixture(scope="session")
def digits_cnn() -> Classifier:
    return load_model("zoo:digits-cnn")
