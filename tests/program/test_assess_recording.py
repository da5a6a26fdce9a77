"""``mlwarden assess --system NAME`` records the run in the programme inventory by itself."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from mlwarden.cli.app import main
from mlwarden.program.inventory import Inventory
from mlwarden.program.threat_model import threat_model_from_dict

from .conftest import threat_model_dict, write_yaml

SMALL = {
    "seed": 0,
    "epsilons": [0.05, 0.1],
    "attacks": ["fgsm"],
    "max_samples": 40,
    "examples": 0,
}


def _assess(tmp_path: Path, *extra: object) -> int:
    config = write_yaml(tmp_path / "assess.yaml", SMALL)
    argv = [
        "assess", "--model", "zoo:digits-cnn", "--data", "builtin:digits",
        "--config", config, *extra,
    ]  # fmt: skip
    return main([str(a) for a in argv])


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/programme.db"
    inventory = Inventory(url)
    inventory.add_system(threat_model_from_dict(threat_model_dict("digits")))
    inventory.close()
    return url


def test_assess_with_system_records_digest_gates_and_metrics(tmp_path: Path, db: str) -> None:
    out = tmp_path / "run1"
    code = _assess(
        tmp_path, "--out", out, "--system", "digits", "--db", db,
        "--fail-under", "robust_accuracy@0.1=0.99",
    )  # fmt: skip
    assert code == 3  # the gate fails, and the run is recorded all the same
    inventory = Inventory(db)
    try:
        (run,) = inventory.history("digits")
    finally:
        inventory.close()
    raw = (out / "report.json").read_bytes()
    report = json.loads(raw)
    assert run.report_sha256 == hashlib.sha256(raw).hexdigest()
    assert run.report_path == str((out / "report.json").resolve())
    assert not run.passed
    assert run.gates == [
        {k: g[k] for k in ("metric", "threshold", "value", "passed", "source")}
        for g in report["gates"]
    ]
    assert run.metrics["robust_accuracy@0.1"] == report["summary"]["metrics"]["robust_accuracy@0.1"]
    assert run.metrics["robust_eps"] == 0.1


def test_assess_reads_the_inventory_from_the_environment(
    tmp_path: Path, db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLWARDEN_DB", db)
    assert _assess(tmp_path, "--out", tmp_path / "run", "--system", "digits") == 0
    inventory = Inventory(db)
    try:
        assert len(inventory.history("digits")) == 1
    finally:
        inventory.close()


def test_assess_refuses_an_unknown_system_before_running(
    tmp_path: Path, db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "never"
    assert _assess(tmp_path, "--out", out, "--system", "nope", "--db", db) == 2
    assert "no system 'nope'" in capsys.readouterr().err
    assert not out.exists()  # failed before the attacks, nothing written
