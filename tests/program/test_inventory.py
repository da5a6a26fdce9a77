"""The inventory: systems, recorded assessments, and the status a security team acts on."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from mlwarden.errors import ConfigError, DataError
from mlwarden.governance import Registry
from mlwarden.program.inventory import Inventory, add_months, key_metrics
from mlwarden.program.threat_model import load_threat_model, threat_model_from_dict

from .conftest import assess_report, threat_model_dict, write_report

NOW = datetime(2025, 6, 1, tzinfo=timezone.utc)


POSTGRES_URL = os.environ.get("MLWARDEN_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def _require_postgres() -> None:
    """Skip when PostgreSQL does not answer; under ``CI=true`` that is a failure."""
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
    """Every inventory test runs on SQLite and on the real PostgreSQL server."""
    if request.param == "postgres":
        _require_postgres()
        return POSTGRES_URL
    return f"sqlite:///{tmp_path}/mlwarden.db"


@pytest.fixture
def prefix() -> str:
    """A table prefix of its own per test (PostgreSQL tests share one database)."""
    return f"t{uuid.uuid4().hex[:8]}_"


@pytest.fixture
def inventory(db_url: str, prefix: str) -> Iterator[Inventory]:
    inv = Inventory(db_url, prefix=prefix)
    yield inv
    if not inv.db.is_sqlite:
        inv.drop()
        inv.db.tables.metadata.drop_all(inv.db.writer)
    inv.close()


def test_inventory_shares_the_governance_registry_database(db_url: str, prefix: str) -> None:
    """The programme tables sit beside the registry's under the same prefix, both usable."""
    registry = Registry(db_url, prefix=prefix)
    inv = Inventory(db_url, prefix=prefix)
    try:
        tables = set(sa.inspect(inv.db.writer).get_table_names())
        assert {f"{prefix}prog_systems", f"{prefix}prog_assessments"} <= tables
        assert {f"{prefix}gov_artifacts", f"{prefix}gov_runs"} <= tables
        inv.add_system(threat_model_from_dict(threat_model_dict("shared")))
        reopened = Inventory(db_url, prefix=prefix)
        try:
            assert [s.name for s in reopened.list()] == ["shared"]
        finally:
            reopened.close()
    finally:
        if not inv.db.is_sqlite:
            inv.drop()
            registry.drop()
            inv.db.tables.metadata.drop_all(inv.db.writer)
        inv.close()
        registry.close()


def test_add_months_clamps_to_the_month_end() -> None:
    assert add_months(datetime(2024, 1, 31), 1) == datetime(2024, 2, 29)
    assert add_months(datetime(2024, 11, 15), 12) == datetime(2025, 11, 15)


def test_key_metrics_takes_worst_case_robust_accuracy_at_the_largest_eps() -> None:
    metrics = key_metrics(assess_report(robust_accuracy=0.4))
    assert (metrics["robust_accuracy"], metrics["robust_eps"]) == (0.4, 0.1)
    assert metrics["clean_accuracy"] == 0.95


def test_system_keeps_its_threat_model_owner_and_cadence(
    inventory: Inventory, public_system: Path
) -> None:
    inventory.add_system(load_threat_model(public_system), path=public_system)
    system = inventory.get("fraud-scorer")
    assert (system.owner, system.cadence_months) == ("risk-team", 12)
    assert system.threat_model == load_threat_model(public_system)
    assert system.to_dict()["datasets"][0]["name"] == "transactions"


def test_adding_a_listed_system_twice_needs_replace(
    inventory: Inventory, public_system: Path
) -> None:
    tm = load_threat_model(public_system)
    inventory.add_system(tm)
    with pytest.raises(ConfigError, match="--replace"):
        inventory.add_system(tm)
    inventory.add_system(tm, replace=True)
    assert len(inventory.list()) == 1


def test_record_keeps_digest_gates_and_key_metrics(
    inventory: Inventory, public_system: Path, tmp_path: Path
) -> None:
    inventory.add_system(load_threat_model(public_system), path=public_system)
    path = write_report(tmp_path / "report.json", assess_report(severities=("high", "low")))
    run = inventory.record(path, system="fraud-scorer")
    import hashlib

    assert run.report_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert run.passed and run.gates[0]["metric"] == "robust_accuracy@0.1"
    assert run.metrics["robust_accuracy"] == 0.6
    assert [f["severity"] for f in run.high_findings] == ["high"]
    assert inventory.history("fraud-scorer") == [run]


def test_the_same_report_is_recorded_once(
    inventory: Inventory, public_system: Path, tmp_path: Path
) -> None:
    inventory.add_system(load_threat_model(public_system))
    path = write_report(tmp_path / "report.json", assess_report())
    inventory.record(path, system="fraud-scorer")
    with pytest.raises(DataError, match="already recorded"):
        inventory.record(path, system="fraud-scorer")


def test_record_refuses_unknown_systems_and_non_reports(
    inventory: Inventory, public_system: Path, tmp_path: Path
) -> None:
    path = write_report(tmp_path / "report.json", assess_report())
    with pytest.raises(ConfigError, match="add-system"):
        inventory.record(path, system="nope")
    inventory.add_system(load_threat_model(public_system))
    other = write_report(tmp_path / "other.json", {"schema": "something-else"})
    with pytest.raises(DataError, match=r"mlwarden\.report"):
        inventory.record(other, system="fraud-scorer")


def test_never_assessed_system_is_overdue(inventory: Inventory, public_system: Path) -> None:
    inventory.add_system(load_threat_model(public_system), path=public_system)
    (status,) = inventory.status(now=NOW)
    assert status.overdue and status.due_at is None and status.needs_attention


def test_assessment_is_due_one_cadence_after_the_latest_run(
    inventory: Inventory, public_system: Path, tmp_path: Path
) -> None:
    inventory.add_system(load_threat_model(public_system), path=public_system)
    old = assess_report(created_at="2023-01-10T00:00:00+00:00", robust_accuracy=0.3)
    new = assess_report(created_at="2024-09-01T00:00:00+00:00", robust_accuracy=0.7)
    inventory.record(write_report(tmp_path / "new.json", new), system="fraud-scorer")
    inventory.record(write_report(tmp_path / "old.json", old), system="fraud-scorer")
    status = inventory.status_of(inventory.get("fraud-scorer"), now=NOW)
    assert status.last_run is not None and status.last_run.metrics["robust_accuracy"] == 0.7
    assert status.due_at == datetime(2025, 9, 1, tzinfo=timezone.utc) and not status.overdue
    later = inventory.status_of(
        inventory.get("fraud-scorer"), now=datetime(2025, 9, 2, tzinfo=timezone.utc)
    )
    assert later.overdue


def test_status_lists_missing_controls_for_top_risks_until_evidence_exists(
    inventory: Inventory, public_system: Path, tmp_path: Path
) -> None:
    inventory.add_system(load_threat_model(public_system), path=public_system)
    before = {c.id for c in inventory.status(now=NOW)[0].missing_top_controls}
    assert "AML.M0008" in before  # validate the model: no passing assessment yet
    inventory.record(write_report(tmp_path / "r.json", assess_report()), system="fraud-scorer")
    after = {c.id for c in inventory.status(now=NOW)[0].missing_top_controls}
    assert "AML.M0008" not in after
