"""Black-box models: gradient attacks are skipped by default and refused when asked for."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

BREAST_CANCER_GBM = ("--model", "zoo:breast-cancer-gbm", "--data", "builtin:breast-cancer")


def test_default_suite_on_a_black_box_model_has_no_gradient_attack_to_skip(
    gbm_default_attacks: Any,
) -> None:
    assert gbm_default_attacks.code == 0
    evasion = gbm_default_attacks.report["sections"]["evasion"]
    assert evasion["mode"] == "suite"
    assert evasion["skipped"] == []


def test_default_suite_on_a_black_box_model_runs_square_then_hopskipjump(
    gbm_default_attacks: Any,
) -> None:
    report = gbm_default_attacks.report
    assert list(report["sections"]["evasion"]["curves"]) == ["square", "hsj"]
    assert report["model"]["white_box"] is False
    [square] = [f for f in report["findings"] if f["id"] == "evasion.square"]
    assert "AML.T0043.001" in square["taxonomy"]["atlas"]  # black-box optimisation
    assert all(row["mean_queries"] >= 1 for row in square["details"]["curve"])


@pytest.mark.parametrize("attack", ["pgd", "fgsm"])
def test_an_explicit_gradient_attack_on_a_black_box_model_is_a_usage_error(
    run_cli: Callable[..., Any], write_config: Callable[..., Path], tmp_path: Path, attack: str
) -> None:
    config = write_config(attacks=[attack])
    result = run_cli("assess", *BREAST_CANCER_GBM, "-c", config, "-o", tmp_path / "out")
    assert result.code == 2
    assert f"{attack} needs gradients" in result.err
    assert "black-box" in result.err
    assert "Traceback" not in result.err
    assert not (tmp_path / "out").exists()
