"""Federated tests need Flower (the ``fl`` extra, also in ``dev``); without it they are not
collected (under ``CI=true`` a missing Flower is an error: the dev install must bring it)."""

from __future__ import annotations

import importlib.util
import os

_HAVE_FLWR = importlib.util.find_spec("flwr") is not None
if not _HAVE_FLWR and os.environ.get("CI") == "true":
    raise RuntimeError("tests/federated needs flwr (pip install -e '.[dev]')")
collect_ignore_glob = [] if _HAVE_FLWR else ["test_*.py"]
