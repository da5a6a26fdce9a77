"""CLI fixtures: small assessment configs, an in-process runner, and shared assessment runs.

The CLI is called in-process through :func:`mlwarden.cli.app.main`, which returns the exit code
(0 pass, 2 usage error, 3 policy gate failed). Configs are kept small (60 samples, two ε, few
steps) so every run takes a second or two once the zoo model is cached.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlwarden.cli.app import main

SMALL_CONFIG: dict[str, Any] = {
    "seed": 0,
    "epsilons": [0.05, 0.1],
    "attacks": ["fgsm", "pgd"],
    "max_samples": 60,
    "examples": 4,
    "attack_params": {
        "pgd": {"steps": 5},
        "square": {"queries": 30},
        "hsj": {"max_queries": 100},
    },
}

DIGITS = ("--model", "zoo:digits-cnn", "--data", "builtin:digits")
BREAST_CANCER_GBM = ("--model", "zoo:breast-cancer-gbm", "--data", "builtin:breast-cancer")


@dataclass(frozen=True)
class CliResult:
    """Exit code and captured output of one in-process CLI call."""

    code: int
    out: str
    err: str


def write_yaml(path: Path, settings: Any) -> Path:
    """Write ``settings`` as YAML to ``path``."""
    path.write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")
    return path


def small_config(**overrides: Any) -> dict[str, Any]:
    """The small configuration with ``overrides``; a value of ``None`` drops the key."""
    settings = {**SMALL_CONFIG, **overrides}
    return {k: v for k, v in settings.items() if v is not None}


def read_report(out_dir: Path) -> dict[str, Any]:
    """The parsed ``report.json`` in ``out_dir``."""
    return json.loads((out_dir / "report.json").read_text(encoding="utf-8"))


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """Write the small config with overrides into ``tmp_path`` and return its path."""

    def write(name: str = "assess.yaml", **overrides: Any) -> Path:
        return write_yaml(tmp_path / name, small_config(**overrides))

    return write


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run ``mlwarden ARGV...`` in-process and return its exit code and output."""

    def run(*argv: str | Path) -> CliResult:
        code = main([str(a) for a in argv])
        captured = capsys.readouterr()
        return CliResult(code=code, out=captured.out, err=captured.err)

    return run


@dataclass(frozen=True)
class Assessment:
    """A finished CLI assessment shared by several tests: exit code, output, report folder."""

    code: int
    out_text: str
    err_text: str
    out: Path

    @property
    def report(self) -> dict[str, Any]:
        return read_report(self.out)


def _assess_once(root: Path, *args: str, **overrides: Any) -> Assessment:
    config = write_yaml(root / "assess.yaml", small_config(**overrides))
    out = root / "out"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["assess", *args, "--config", str(config), "--out", str(out)])
    return Assessment(code=code, out_text=stdout.getvalue(), err_text=stderr.getvalue(), out=out)


@pytest.fixture(scope="session")
def digits_assessment(tmp_path_factory: pytest.TempPathFactory) -> Assessment:
    """zoo:digits-cnn on builtin:digits with the small config and no gates."""
    return _assess_once(tmp_path_factory.mktemp("digits"), *DIGITS)


@pytest.fixture(scope="session")
def digits_gated(tmp_path_factory: pytest.TempPathFactory) -> Assessment:
    """As :func:`digits_assessment`, plus a --fail-under gate the model cannot meet."""
    return _assess_once(
        tmp_path_factory.mktemp("digits-gated"),
        *DIGITS,
        "--fail-under",
        "robust_accuracy@0.1=0.99",
    )


@pytest.fixture(scope="session")
def digits_gates_met(tmp_path_factory: pytest.TempPathFactory) -> Assessment:
    """FGSM only, 30 samples, one config gate and two --fail-under gates, all met.

    The gate at ε=0.15 is outside the config's grid [0.05, 0.1], so it must join the grid.
    FGSM alone is not a converged evaluation (the masking check says so and gates would fail
    closed); the fixture acknowledges that, since it tests the gates' mechanics.
    """
    return _assess_once(
        tmp_path_factory.mktemp("digits-gates-met"),
        *DIGITS,
        "--fail-under",
        "robust_accuracy@0.1=0.0",
        "--fail-under",
        "robust_accuracy@0.15=0",
        "--max-samples",
        "30",
        attacks=["fgsm"],
        acknowledge_masking=True,
        policy={"fail_under": {"clean_accuracy": 0.5}},
    )


@pytest.fixture(scope="session")
def gbm_default_attacks(tmp_path_factory: pytest.TempPathFactory) -> Assessment:
    """The black-box zoo:breast-cancer-gbm on tabular data with the default attack list."""
    return _assess_once(tmp_path_factory.mktemp("gbm-default"), *BREAST_CANCER_GBM, attacks=None)
