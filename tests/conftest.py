"""Suite-wide fixtures: an isolated zoo cache so tests never touch ~/.cache."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def zoo_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point ``zoo:`` models at one cache per session (or the one CI provides)."""
    preset = os.environ.get("MLWARDEN_CACHE_DIR")
    path = Path(preset) if preset else tmp_path_factory.mktemp("mlwarden-cache")
    os.environ["MLWARDEN_CACHE_DIR"] = str(path)
    yield path
    if not preset:
        os.environ.pop("MLWARDEN_CACHE_DIR", None)
