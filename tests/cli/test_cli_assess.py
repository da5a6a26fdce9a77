"""``mlwarden assess`` end to end: reports written, exit codes, policy gates, determinism."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mlwarden import __version__

DIGITS = ("--model", "zoo:digits-cnn", "--data", "builtin:digits")
EXIT_OK, EXIT_GATE_FAILED = 0, 3


def _report(out: Path) -> dict[str, Any]:
    return json.loads((out / "report.json").read_text(encoding="utf-8"))


def _without_timings(value: Any) -> Any:
    """``value`` without wall-clock fields (created_at, duration_s, seconds), recursively."""
    if isinstance(value, dict):
        return {
            k: _without_timings(v)
            for k, v in value.items()
            if k not in {"created_at", "duration_s", "seconds"}
        }
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def test_assess_writes_json_sarif_and_html_into_out(digits_assessment: Any) -> None:
    assert sorted(p.name for p in digits_assessment.out.iterdir()) == [
        "report.html",
        "report.json",
        "report.sarif",
    ]


def test_assess_without_gates_exits_0(digits_assessment: Any) -> None:
    assert digits_assessment.code == EXIT_OK
    assert digits_assessment.report["gates"] == []
    assert digits_assessment.report["summary"]["passed"] is True


def test_assess_prints_the_accuracy_table_and_where_the_report_is(
    digits_assessment: Any,
) -> None:
    assert "worst case" in digits_assessment.out_text
    assert "report.html" in digits_assessment.out_text
    assert digits_assessment.err_text == ""  # no progress-bar residue when stderr is no terminal


def test_fail_under_above_the_measured_value_exits_3(digits_gated: Any) -> None:
    assert digits_gated.code == EXIT_GATE_FAILED
    report = digits_gated.report  # the reports are written even when a gate fails
    assert report["summary"]["passed"] is False
    [gate] = report["gates"]
    assert gate == {
        "metric": "robust_accuracy@0.1",
        "threshold": 0.99,
        "value": report["summary"]["metrics"]["robust_accuracy@0.1"],
        "passed": False,
        "source": "--fail-under",
    }
    assert "FAIL" in digits_gated.out_text


def test_gates_that_are_met_exit_0(digits_gates_met: Any) -> None:
    assert digits_gates_met.code == EXIT_OK
    report = digits_gates_met.report
    assert report["summary"]["passed"] is True
    assert [(g["metric"], g["passed"]) for g in report["gates"]] == [
        ("clean_accuracy", True),
        ("robust_accuracy@0.1", True),
        ("robust_accuracy@0.15", True),
    ]


def test_fail_under_zero_exits_0(digits_gates_met: Any) -> None:
    gates = {g["metric"]: g for g in digits_gates_met.report["gates"]}
    assert gates["robust_accuracy@0.1"]["threshold"] == 0.0
    assert gates["robust_accuracy@0.1"]["passed"] is True
    assert digits_gates_met.code == EXIT_OK


def test_config_and_repeated_command_line_gates_are_combined(digits_gates_met: Any) -> None:
    sources = {g["metric"]: g["source"] for g in digits_gates_met.report["gates"]}
    assert sources == {
        "clean_accuracy": "assess.yaml: policy.fail_under",
        "robust_accuracy@0.1": "--fail-under",
        "robust_accuracy@0.15": "--fail-under",
    }


def test_a_gate_epsilon_outside_the_grid_joins_the_grid(digits_gates_met: Any) -> None:
    report = digits_gates_met.report
    assert report["config"]["epsilons"] == [0.05, 0.1, 0.15]
    assert report["sections"]["evasion"]["epsilons"] == [0.05, 0.1, 0.15]
    assert "robust_accuracy@0.15" in report["summary"]["metrics"]
    [gate] = [g for g in report["gates"] if g["metric"] == "robust_accuracy@0.15"]
    assert gate["value"] == report["summary"]["metrics"]["robust_accuracy@0.15"]


def test_max_samples_option_overrides_the_config(digits_gates_met: Any) -> None:
    assert digits_gates_met.report["data"]["n_samples_evaluated"] == 30
    assert digits_gates_met.report["config"]["max_samples"] == 30


def test_gates_from_the_config_policy_alone_can_fail_the_run(
    run_cli: Callable[..., Any], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    config = write_config(
        "gated.yaml",
        attacks=["fgsm"],
        policy={"fail_under": {"clean_accuracy": 0.5, "robust_accuracy[fgsm]@0.1": 0.99}},
    )
    result = run_cli("assess", *DIGITS, "-c", config, "-o", tmp_path / "out")
    assert result.code == EXIT_GATE_FAILED
    gates = {g["metric"]: g for g in _report(tmp_path / "out")["gates"]}
    assert gates["clean_accuracy"]["passed"] is True
    assert gates["robust_accuracy[fgsm]@0.1"]["passed"] is False
    assert {g["source"] for g in gates.values()} == {"gated.yaml: policy.fail_under"}


def test_same_seed_gives_identical_findings_and_metrics(
    digits_assessment: Any,
    run_cli: Callable[..., Any],
    write_config: Callable[..., Path],
    tmp_path: Path,
) -> None:
    assert run_cli("assess", *DIGITS, "-c", write_config(), "-o", tmp_path).code == EXIT_OK
    first, second = digits_assessment.report, _report(tmp_path)
    assert _without_timings(second["findings"]) == _without_timings(first["findings"])
    assert second["summary"] == first["summary"]
    assert _without_timings(second["sections"]) == _without_timings(first["sections"])
    sarif = (tmp_path / "report.sarif").read_bytes()
    assert sarif == (digits_assessment.out / "report.sarif").read_bytes()


def test_different_seeds_draw_different_samples(
    digits_assessment: Any,
    run_cli: Callable[..., Any],
    write_config: Callable[..., Path],
    tmp_path: Path,
) -> None:
    result = run_cli("assess", *DIGITS, "-c", write_config(), "-o", tmp_path, "--seed", "1")
    assert result.code == EXIT_OK
    report = _report(tmp_path)
    assert report["config"]["seed"] == 1  # --seed overrides the config's seed 0
    assert report["data"]["sha256"] != digits_assessment.report["data"]["sha256"]


def test_module_entry_point_runs() -> None:
    """``python -m mlwarden.cli.app`` is the same CLI as the ``mlwarden`` script."""
    done = subprocess.run(
        [sys.executable, "-m", "mlwarden.cli.app", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"mlwarden {__version__}"


def test_assess_help_lists_every_option(run_cli: Callable[..., Any]) -> None:
    result = run_cli("assess", "--help")
    assert result.code == 0
    for option in ("--model", "--data", "--out", "--config", "--fail-under", "--label-column"):
        assert option in result.out


def test_train_data_naming_a_builtin_dataset_means_its_train_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--train-data builtin:digits`` is the model's training data: the train split, not the
    test split (which made membership inference compare test data with test data)."""
    import mlwarden.assess
    from mlwarden.cli.app import main
    from mlwarden.cli.attack import _load
    from mlwarden.data import load_dataset

    seen: list[Any] = []

    def capture(classifier: Any, data: Any, config: Any, **kwargs: Any) -> Any:
        seen.append(kwargs["train_data"])
        raise SystemExit(0)

    monkeypatch.setattr(mlwarden.assess, "assess", capture)
    args = ["assess", "--model", "zoo:digits-cnn", "--data", "builtin:digits"]
    with pytest.raises(SystemExit):
        main([*args, "--train-data", "builtin:digits", "--out", str(tmp_path / "r")])
    train = load_dataset("builtin:digits", split="train")
    assert seen[0].digest() == train.digest()
    _, _, members = _load("zoo:digits-cnn", "builtin:digits", "builtin:digits", "label")
    assert members.digest() == train.digest()
