"""Federated tests need Flower (the ``fl`` extra, also in ``dev``)."""

from __future__ import annotations

import pytest

pytest.importorskip("flwr")
