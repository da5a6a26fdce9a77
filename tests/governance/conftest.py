"""Fixtures of the governance tests: a registry per backend (SQLite, and the real PostgreSQL under
the ``postgres`` marker), small data files and data cards."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlwarden.governance import DataCard, Registry

POSTGRES_URL = os.environ.get("MLWARDEN_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def _require_postgres() -> None:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1.0):
            return
    except OSError:
        message = "PostgreSQL is not reachable at 127.0.0.1:5432"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        _require_postgres()
        return POSTGRES_URL
    return f"sqlite:///{tmp_path}/governance.db"


@pytest.fixture
def prefix() -> str:
    """A table prefix of its own per test (PostgreSQL tests share one database)."""
    return f"t{uuid.uuid4().hex[:8]}_"


@pytest.fixture
def registry(db_url: str, prefix: str) -> Iterator[Registry]:
    reg = Registry(db_url, prefix=prefix)
    yield reg
    if not reg.db.is_sqlite:
        reg.drop()
        reg.db.tables.metadata.drop_all(reg.db.writer)
    reg.close()


def make_card(**changes: object) -> DataCard:
    fields: dict[str, object] = {
        "source": "CRM export 2026-11",
        "collection_method": "customer sign-up form",
        "licence": "proprietary",
        "owner": "data-platform@example.com",
        "purpose": "churn model training",
        "sensitivity": "confidential",
        "retention": "30d",
    }
    fields.update(changes)
    return DataCard.model_validate(fields)


@pytest.fixture
def raw_csv(tmp_path: Path) -> Path:
    path = tmp_path / "raw.csv"
    path.write_text("age,income,label\n31,5200,0\n45,8100,1\n28,3900,0\n", encoding="utf-8")
    return path
