"""The programme end to end through the command line: init a threat model, fill it in, add the
system, record assessments, see its status, and write the NIST AI RMF report."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from mlwarden.cli.app import main

from .conftest import assess_report, write_report


def _cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_threat_model_to_programme_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path}/mlwarden.db"
    tm_path = tmp_path / "scorer.threat-model.yaml"
    code, out = _cli(
        capsys, "threat-model", "init", "scorer", "--out", tm_path, "--owner", "ml-sec"
    )
    assert code == 0 and tm_path.exists()
    assert _cli(capsys, "threat-model", "init", "scorer", "--out", tm_path)[0] == 2

    data = yaml.safe_load(tm_path.read_text(encoding="utf-8"))
    data.update(
        exposure="public-api",
        data=[{"name": "customers", "sensitivity": "confidential", "personal_data": True}],
        models=[{"name": "scorer", "path": "model.pt2", "provenance": "in-house"}],
    )
    tm_path.write_text(yaml.safe_dump(data), encoding="utf-8")
    (tmp_path / "model.pt2").write_bytes(b"weights")
    (tmp_path / "model.pt2.sig").write_text("{}", encoding="utf-8")
    assert _cli(capsys, "threat-model", "check", tm_path) == (0, _cli_ok(tm_path))

    code, out = _cli(capsys, "threat-model", "show", tm_path, "--json")
    risk = json.loads(out)
    assert code == 0 and risk["threats"][0]["id"] == "membership"
    assert {c["id"]: c["status"] for c in risk["controls"]}["AML.M0013"] == "done"

    assert _cli(capsys, "program", "add-system", tm_path, "--db", db)[0] == 0
    code, out = _cli(capsys, "program", "status", "--db", db, "--check")
    assert code == 3 and "never assessed" in out

    today = datetime.now(timezone.utc).date()
    days = [(today - timedelta(days=ago)).isoformat() for ago in (90, 10)]
    for day, acc in zip(days, (0.4, 0.55), strict=True):
        report = write_report(
            tmp_path / f"report-{day}.json",
            assess_report(
                created_at=f"{day}T00:00:00+00:00", robust_accuracy=acc, severities=("high",)
            ),
        )
        code, out = _cli(capsys, "program", "record", report, "--system", "scorer", "--db", db)
        assert code == 0 and "passed" in out

    code, out = _cli(capsys, "program", "status", "--db", db, "--json")
    (status,) = json.loads(out)
    assert not status["overdue"] and status["open_high_findings"][0]["severity"] == "high"

    out_dir = tmp_path / "site"
    assert _cli(capsys, "program", "report", "--db", db, "--out", out_dir)[0] == 0
    page = (out_dir / "systems" / "scorer.html").read_text(encoding="utf-8")
    for section in ('id="map"', 'id="measure"', 'id="manage"', 'id="govern"'):
        assert section in page
    assert "data:image/png;base64," in page and "AML.T0024.000" in page
    assert "<script" not in page and "<link" not in page and 'src="http' not in page
    portfolio = json.loads((out_dir / "program.json").read_text(encoding="utf-8"))
    assert portfolio["systems"][0]["runs"] == 2
    system_doc = json.loads((out_dir / "systems" / "scorer.json").read_text(encoding="utf-8"))
    assert [r["metrics"]["robust_accuracy"] for r in system_doc["measure"]["runs"]] == [0.4, 0.55]
    assert system_doc["govern"]["owner"] == "ml-sec"
    assert "scorer" in (out_dir / "index.html").read_text(encoding="utf-8")


def _cli_ok(path: Path) -> str:
    return "valid: threat model of scorer\n"


def test_invalid_threat_model_is_one_error_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tm.yaml"
    path.write_text("system: x\nexposure: moon\n", encoding="utf-8")
    code, out = _cli(capsys, "threat-model", "check", path)
    assert code == 2 and "exposure" in out


def test_help_lists_the_programme_commands(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _cli(capsys, "--help")
    assert code == 0 and "threat-model" in out and "program" in out
