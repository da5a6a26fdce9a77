"""Bad input to ``mlwarden assess``: exit code 2 and one line that names the problem.

Every case builds its inputs in a temporary folder and runs the CLI in-process. A user error
must never show a traceback, must never leave a report behind, and must say what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

EXIT_USAGE = 2
DIGITS_MODEL = ("--model", "zoo:digits-cnn")
DIGITS_DATA = ("--data", "builtin:digits")
SMALL = {"epsilons": [0.05], "attacks": ["fgsm"], "max_samples": 20}

Case = Callable[[Path], list[str]]


def _config(tmp: Path, settings: Any = None, *, text: str | None = None) -> str:
    path = tmp / "assess.yaml"
    path.write_text(
        text if text is not None else yaml.safe_dump(settings, sort_keys=False), encoding="utf-8"
    )
    return str(path)


def _npz(tmp: Path, x: np.ndarray, y: np.ndarray) -> str:
    path = tmp / "data.npz"
    np.savez(path, x=x, y=y)
    return str(path)


def _file(tmp: Path, name: str, content: str | bytes = "") -> str:
    path = tmp / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return str(path)


def _npz_without_y(tmp: Path) -> str:
    path = tmp / "x-only.npz"
    np.savez(path, x=np.zeros((4, 1, 8, 8), np.float32))
    return str(path)


def _with_config(settings: Any) -> Case:
    return lambda tmp: [*DIGITS_MODEL, *DIGITS_DATA, "--config", _config(tmp, settings)]


def _with_gate(gate: str) -> Case:
    return lambda tmp: [
        *DIGITS_MODEL,
        *DIGITS_DATA,
        "--config",
        _config(tmp, SMALL),
        "--fail-under",
        gate,
    ]


# (id, argv builder without --out, fragments the message must contain)
CASES: list[tuple[str, Case, tuple[str, ...]]] = [
    # --model
    (
        "missing-model-file",
        lambda tmp: ["--model", str(tmp / "nope.pt2"), *DIGITS_DATA],
        ("nope.pt2", "does not exist"),
    ),
    (
        "unknown-zoo-name",
        lambda tmp: ["--model", "zoo:resnet-9000", *DIGITS_DATA],
        ("unknown zoo model 'resnet-9000'", "digits-cnn"),
    ),
    (
        "pickle-model-refused",
        lambda tmp: ["--model", _file(tmp, "model.pkl", b"\x80\x04K\x01."), *DIGITS_DATA],
        ("refusing to load model.pkl", "arbitrary code"),
    ),
    (
        "unknown-model-extension",
        lambda tmp: ["--model", _file(tmp, "model.h5", b"\x00"), *DIGITS_DATA],
        ("unsupported model format '.h5'", ".onnx"),
    ),
    (
        "model-path-is-a-directory",
        lambda tmp: ["--model", str(tmp), *DIGITS_DATA],
        ("is a directory",),
    ),
    # --data
    (
        "missing-data-file",
        lambda tmp: [*DIGITS_MODEL, "--data", str(tmp / "nope.npz")],
        ("nope.npz", "does not exist"),
    ),
    (
        "unknown-builtin-dataset",
        lambda tmp: [*DIGITS_MODEL, "--data", "builtin:mnist"],
        ("unknown built-in dataset 'mnist'", "builtin:digits"),
    ),
    (
        "unknown-data-extension",
        lambda tmp: [*DIGITS_MODEL, "--data", _file(tmp, "data.parquet", "x")],
        ("unsupported dataset format '.parquet'",),
    ),
    (
        "csv-without-label-column",
        lambda tmp: [*DIGITS_MODEL, "--data", _file(tmp, "data.csv", "a,b,target\n1,2,0\n")],
        ("no label column 'label'", "--label-column"),
    ),
    (
        "csv-with-non-numeric-value",
        lambda tmp: [*DIGITS_MODEL, "--data", _file(tmp, "data.csv", "a,label\nabc,1\n")],
        ("line 2", "non-numeric"),
    ),
    (
        "npz-with-nan",
        lambda tmp: [
            *DIGITS_MODEL,
            "--data",
            _npz(tmp, np.full((4, 1, 8, 8), np.nan, np.float32), np.zeros(4, np.int64)),
        ],
        ("NaN",),
    ),
    (
        "npz-without-labels",
        lambda tmp: [*DIGITS_MODEL, "--data", _npz_without_y(tmp)],
        ("lacks", "'y'"),
    ),
    (
        "data-shape-mismatches-the-model",
        lambda tmp: [*DIGITS_MODEL, "--data", "builtin:breast-cancer"],
        ("shape (30,)", "(1, 8, 8)"),
    ),
    (
        "labels-beyond-the-models-classes",
        lambda tmp: [
            *DIGITS_MODEL,
            "--data",
            _npz(tmp, np.zeros((4, 1, 8, 8), np.float32), np.array([0, 1, 2, 12])),
        ],
        ("label 12", "10 classes"),
    ),
    # --label-column
    (
        "label-column-not-in-csv",
        lambda tmp: [
            *DIGITS_MODEL,
            "--data",
            _file(tmp, "data.csv", "a,b,label\n1,2,0\n"),
            "--label-column",
            "target",
        ],
        ("no label column 'target'",),
    ),
    # --config
    (
        "config-file-missing",
        lambda tmp: [*DIGITS_MODEL, *DIGITS_DATA, "--config", str(tmp / "nope.yaml")],
        ("nope.yaml", "does not exist"),
    ),
    (
        "config-not-yaml",
        lambda tmp: [
            *DIGITS_MODEL,
            *DIGITS_DATA,
            "--config",
            _config(tmp, text="epsilons: [0.1\n"),
        ],
        ("not valid YAML", "line 2"),
    ),
    (
        "config-top-level-list",
        lambda tmp: [*DIGITS_MODEL, *DIGITS_DATA, "--config", _config(tmp, [0.1, 0.2])],
        ("top level must be a mapping",),
    ),
    ("unknown-config-key", _with_config({"epsilon": [0.1]}), ("unknown setting(s) ['epsilon']",)),
    ("negative-epsilon", _with_config({"epsilons": [0.1, -0.05]}), ("epsilons", "-0.05")),
    ("empty-epsilons", _with_config({"epsilons": []}), ("epsilons", "at least 1 item")),
    ("string-epsilons", _with_config({"epsilons": "small"}), ("epsilons", "'small'")),
    ("non-numeric-epsilon", _with_config({"epsilons": ["big"]}), ("epsilons", "'big'")),
    ("unknown-attack", _with_config({"attacks": ["fgsm", "cw"]}), ("unknown attack 'cw'",)),
    (
        "attacks-not-a-list",
        _with_config({"attacks": "fgsm"}),
        ("attacks", "valid list", "'fgsm'"),
    ),
    (
        "unknown-attack-param",
        _with_config({**SMALL, "attack_params": {"pgd": {"stepz": 3}}}),
        ("attack_params.pgd", "stepz"),
    ),
    (
        "attack-params-for-unknown-attack",
        _with_config({**SMALL, "attack_params": {"cw": {"steps": 3}}}),
        ("attack_params", "unknown attack 'cw'"),
    ),
    (
        "reserved-attack-param",
        _with_config({**SMALL, "attack_params": {"pgd": {"eps": 0.3}}}),
        ("attack_params.pgd", "['eps']", "set by the assessment"),
    ),
    ("bad-norm", _with_config({**SMALL, "norm": "l1"}), ("norm must be linf or l2", "'l1'")),
    (
        "profile-beside-attacks",
        _with_config({**SMALL, "profile": "quick"}),
        ("profile", "attacks", "not both"),
    ),
    ("unknown-profile", _with_config({"profile": "thorough"}), ("profile", "'thorough'")),
    ("zero-max-samples", _with_config({**SMALL, "max_samples": 0}), ("max_samples",)),
    ("negative-seed-in-config", _with_config({**SMALL, "seed": -3}), ("seed", "-3")),
    (
        "bad-clip-range",
        _with_config({**SMALL, "clip_range": [1.0, 0.0]}),
        ("clip_range must be [low, high]",),
    ),
    (
        "policy-not-a-mapping",
        _with_config({**SMALL, "policy": ["clean_accuracy"]}),
        ("policy must be a mapping",),
    ),
    (
        "unknown-metric-in-policy",
        _with_config({**SMALL, "policy": {"fail_under": {"accuracy": 0.5}}}),
        ("unknown gate metric 'accuracy'",),
    ),
    (
        "string-threshold-in-policy",
        _with_config({**SMALL, "policy": {"fail_under": {"clean_accuracy": "high"}}}),
        ("threshold for 'clean_accuracy' must be a number",),
    ),
    # --fail-under
    ("gate-without-equals", _with_gate("robust_accuracy@0.1"), ("expected METRIC=THRESHOLD",)),
    ("gate-non-numeric-threshold", _with_gate("clean_accuracy=high"), ("'high' is not a number",)),
    ("gate-unknown-metric", _with_gate("accuracy=0.5"), ("unknown gate metric 'accuracy'",)),
    ("gate-threshold-above-1", _with_gate("clean_accuracy=1.5"), ("must be in [0, 1]", "1.5")),
    ("gate-negative-threshold", _with_gate("clean_accuracy=-0.1"), ("must be in [0, 1]",)),
    ("gate-without-epsilon", _with_gate("robust_accuracy=0.5"), ("needs an epsilon",)),
    ("gate-zero-epsilon", _with_gate("robust_accuracy@0=0.5"), ("must be > 0",)),
    ("gate-unknown-attack", _with_gate("robust_accuracy[cw]@0.1=0.5"), ("unknown attack 'cw'",)),
    (
        "gate-on-an-attack-not-run",
        _with_gate("robust_accuracy[pgd]@0.05=0.5"),
        ("robust_accuracy[pgd]@0.05", "'pgd' is not run"),
    ),
    # --train-data
    (
        "missing-train-data-file",
        lambda tmp: [*DIGITS_MODEL, *DIGITS_DATA, "--train-data", str(tmp / "train.npz")],
        ("train.npz", "does not exist"),
    ),
    # --max-samples, --seed
    (
        "zero-max-samples-option",
        lambda tmp: [*DIGITS_MODEL, *DIGITS_DATA, "--max-samples", "0"],
        ("max_samples", "got 0"),
    ),
    (
        "negative-seed-option",
        lambda tmp: [*DIGITS_MODEL, *DIGITS_DATA, "--seed", "-1"],
        ("seed", "got -1"),
    ),
]


@pytest.mark.parametrize(("build", "fragments"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_one_line_naming_the_problem(
    run_cli: Callable[..., Any], tmp_path: Path, build: Case, fragments: tuple[str, ...]
) -> None:
    out = tmp_path / "out"
    result = run_cli("assess", *build(tmp_path), "--out", out)
    assert result.code == EXIT_USAGE, result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in result.err + result.out
    assert not out.exists(), "a failed run must not leave a report behind"


def test_out_pointing_at_an_existing_file_exits_2(
    run_cli: Callable[..., Any], tmp_path: Path
) -> None:
    target = tmp_path / "report.txt"
    target.write_text("keep me", encoding="utf-8")
    config = _config(tmp_path, SMALL)
    result = run_cli("assess", *DIGITS_MODEL, *DIGITS_DATA, "-c", config, "--out", target)
    assert result.code == EXIT_USAGE
    assert result.err.strip() == f"error: --out {target} exists and is not a directory"
    assert target.read_text(encoding="utf-8") == "keep me"


def test_out_below_an_existing_file_exits_2_before_assessing(
    run_cli: Callable[..., Any], tmp_path: Path
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("", encoding="utf-8")
    config = _config(tmp_path, SMALL)
    out = blocker / "reports"
    result = run_cli("assess", *DIGITS_MODEL, *DIGITS_DATA, "-c", config, "--out", out)
    assert result.code == EXIT_USAGE
    assert result.err.startswith(f"error: --out {out}")
    assert "is a file" in result.err
    assert result.out == ""  # nothing was assessed


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        pytest.param(
            ["assess", *DIGITS_DATA, "--out", "x"], "Missing option '--model'", id="model"
        ),
        pytest.param(["assess", *DIGITS_MODEL, "--out", "x"], "Missing option '--data'", id="data"),
        pytest.param(["assess", *DIGITS_MODEL, *DIGITS_DATA], "Missing option '--out'", id="out"),
        pytest.param(
            ["assess", *DIGITS_MODEL, *DIGITS_DATA, "--out", "x", "--max-samples", "many"],
            "Invalid value for '--max-samples'",
            id="max-samples-not-an-int",
        ),
        pytest.param(
            ["assess", *DIGITS_MODEL, *DIGITS_DATA, "--out", "x", "--seed", "1.5"],
            "Invalid value for '--seed'",
            id="seed-not-an-int",
        ),
        pytest.param(
            ["assess", *DIGITS_MODEL, *DIGITS_DATA, "--out", "x", "--fail-under"],
            "--fail-under",
            id="fail-under-without-value",
        ),
        pytest.param(  # click words it "No such option: --bogus" or "No such option '--bogus'"
            ["assess", "--bogus"], "No such option", id="unknown-option"
        ),
        pytest.param(["frobnicate"], "No such command 'frobnicate'", id="unknown-command"),
        pytest.param(["zoo", "train"], "Missing argument", id="zoo-train-without-name"),
        pytest.param(["zoo", "train", "digits-cnn"], "Missing option '--out'", id="zoo-train-out"),
    ],
)
def test_usage_errors_exit_2_with_the_click_message(
    run_cli: Callable[..., Any], argv: list[str], fragment: str
) -> None:
    result = run_cli(*argv)
    assert result.code == EXIT_USAGE
    assert "Error: " in result.err
    assert fragment in result.err
    assert "Traceback" not in result.err
