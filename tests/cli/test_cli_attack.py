"""``mlwarden attack``: membership inference, model inversion and the DP audit from the CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

DIGITS = ("--model", "zoo:digits-cnn", "--data", "builtin:digits")


def test_attack_membership_writes_json_and_a_roc_plot(
    run_cli: Callable[..., Any], tmp_path: Path
) -> None:
    result = run_cli(
        "attack", "membership", *DIGITS, "--max-samples", "100", "--out", str(tmp_path)
    )
    assert result.code == 0, result.err
    doc = json.loads((tmp_path / "membership.json").read_text())
    loss = doc["results"]["loss-threshold"]
    assert 0.0 <= loss["auc"] <= 1.0 and loss["n_members"] == loss["n_non_members"] == 100
    assert loss["tpr_at_fpr"]["0.001"]["measured"] is False  # 100 non-members cannot show 0.1%
    assert (tmp_path / "membership_roc.png").read_bytes()[:4] == b"\x89PNG"


def test_attack_invert_writes_reconstructions(run_cli: Callable[..., Any], tmp_path: Path) -> None:
    result = run_cli("attack", "invert", *DIGITS, "--steps", "30", "--out", str(tmp_path))
    assert result.code == 0, result.err
    doc = json.loads((tmp_path / "inversion.json").read_text())
    assert len(doc["reconstructions"]) == 10 and "inversion_recovery_rate" in doc
    assert (tmp_path / "inversion.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("command", ["dp-audit", "audit"])
def test_attack_dp_audit_runs_a_small_non_private_audit_under_both_names(
    command: str, run_cli: Callable[..., Any], tmp_path: Path
) -> None:
    # "audit" is the command's old name, kept as a hidden alias for one release
    result = run_cli(
        "attack",
        command,
        "--data",
        "builtin:digits",
        "--canaries",
        "40",
        "--runs",
        "1",
        "--epochs",
        "2",
        "--max-samples",
        "200",
        "--out",
        str(tmp_path),
    )
    assert result.code == 0, result.err
    doc = json.loads((tmp_path / "audit.json").read_text())
    assert doc["private"] is False and doc["epsilon_lb"] >= 0 and doc["n_canaries"] == 40


def test_attack_help_lists_dp_audit_and_hides_the_old_audit_alias(
    run_cli: Callable[..., Any],
) -> None:
    result = run_cli("attack", "--help")
    assert result.code == 0, result.err
    commands = [line.strip(" │|").split(" ")[0] for line in result.out.splitlines()]
    assert "dp-audit" in commands and "membership" in commands
    assert "audit" not in commands


def test_attack_dp_audit_refuses_an_unknown_architecture(
    run_cli: Callable[..., Any], tmp_path: Path
) -> None:
    result = run_cli(
        "attack", "dp-audit", "--data", "builtin:digits", "--arch", "resnet", "--out", str(tmp_path)
    )
    assert result.code == 2 and "--arch" in result.err


def test_assess_privacy_section(run_cli: Callable[..., Any], tmp_path: Path) -> None:
    config = tmp_path / "assess.yaml"
    settings = {
        "attacks": ["fgsm"],
        "epsilons": [0.1],
        "max_samples": 60,
        "privacy": {"inversion_steps": 30, "max_samples": 200},
    }
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")
    result = run_cli(
        "assess",
        *DIGITS,
        "--config",
        str(config),
        "--out",
        str(tmp_path),
        "--fail-under",
        "membership_resistance=0.999",
    )
    assert result.code == 3, result.err  # no model is that private: the gate fails
    report = json.loads((tmp_path / "report.json").read_text())
    privacy = report["sections"]["privacy"]
    assert set(privacy["membership"]) == {"loss-threshold"}
    assert {"membership_auc", "membership_tpr@0.01", "inversion_recovery_rate"} <= set(
        report["summary"]["metrics"]
    )
    taxonomy = {f["id"]: f["taxonomy"] for f in report["findings"] if f["check"] == "privacy"}
    assert taxonomy["privacy.membership.loss"]["atlas"] == ["AML.T0024.000"]
    assert taxonomy["privacy.inversion"]["owasp"] == ["ML03:2023"]
    assert "Privacy" in (tmp_path / "report.html").read_text()
    (gate,) = report["gates"]
    assert gate["metric"] == "membership_resistance" and not gate["passed"]
    assert gate["value"] == report["summary"]["metrics"]["membership_resistance"]
