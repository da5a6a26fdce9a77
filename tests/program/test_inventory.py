"""The inventory: systems, recorded assessments, and the status a security team acts on."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from mlwarden.errors import ConfigError, DataError
from mlwarden.program.inventory import Inventory, add_months, key_metrics
from mlwarden.program.threat_model import load_threat_model

from .conftest import assess_report, write_report

NOW = datetime(2025, 6, 1, tzinfo=timezone.utc)


@pytest.fixture
def inventory(tmp_path: Path) -> Inventory:
    inv = Inventory(f"sqlite:///{tmp_path}/mlwarden.db")
    yield inv  # type: ignore[misc]
    inv.close()


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
