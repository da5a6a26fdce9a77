"""``mlwarden fl train``: the global model, its record and run report, and clear refusals."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from mlwarden.cli.app import main
from mlwarden.data.builtin import load_builtin
from mlwarden.models import load_model

SMALL = ("--clients", "3", "--rounds", "2", "--local-epochs", "1")


def _run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_fl_train_writes_the_global_model_with_record_and_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "global.pt2"
    code, text, err = _run(
        capsys,
        "fl",
        "train",
        "--model",
        "zoo:digits-cnn",
        "--data",
        "builtin:digits",
        *SMALL,
        "--partition",
        "dirichlet:0.5",
        "--secagg",
        "--out",
        out,
    )
    assert code == 0, err
    assert "round 2/2" in text
    record = json.loads(Path(f"{out}.mlwarden.json").read_text())["training"]
    assert record["secure_aggregation"]["enabled"] is True
    assert record["partition"] == "dirichlet:0.5"
    assert len(record["partitions"]) == 3 and record["rounds"] == 2
    assert (tmp_path / "global.training.png").read_bytes().startswith(b"\x89PNG")
    assert "SecAgg+" in (tmp_path / "global.training.html").read_text()
    # the written model predicts as the record's final accuracy says
    test = load_builtin("digits").test
    model = load_model(str(out))
    accuracy = float((model.predict_proba(test.x).argmax(1) == test.y).mean())
    assert accuracy == pytest.approx(record["test_accuracy"], abs=1e-9)


def test_fl_train_registers_the_global_model_against_its_training_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Governance: given --registry, the federated model is recorded with its lineage (a
    train run whose input is the data the clients were partitioned from)."""
    from mlwarden.data import load_dataset
    from mlwarden.governance.registry import Registry

    db = f"sqlite:///{tmp_path}/reg.db"
    out = tmp_path / "global.pt2"
    code, text, err = _run(
        capsys, "fl", "train", "--data", "builtin:digits", *SMALL, "--out", out, "--registry", db
    )
    assert code == 0, err
    registry = Registry(db)
    try:
        (run,) = registry.all_runs()
        assert run.kind == "train" and "registered model" in text
        assert load_dataset("builtin:digits", split="train").digest() in run.inputs
        assert run.outputs == (hashlib.sha256(out.read_bytes()).hexdigest(),)
    finally:
        registry.close()


def test_fl_train_with_client_level_dp_reports_flowers_epsilon(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "dp.pt2"
    code, text, err = _run(
        capsys,
        "fl",
        "train",
        "--data",
        "builtin:digits",
        *SMALL,
        "--dp",
        "client:0.05",
        "--clipping-norm",
        "1",
        "--out",
        out,
    )
    assert code == 0, err
    privacy = json.loads(Path(f"{out}.mlwarden.json").read_text())["training"]["privacy"]
    assert privacy["level"] == "client" and privacy["releases"] == 2
    assert np.isfinite(privacy["epsilon_spent"]) and privacy["epsilon_spent"] > 0
    assert "ε spent" in text


@pytest.mark.slow
def test_fl_train_on_the_deployment_engine_carries_client_dp_and_matches_in_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same options on both engines give the same model: client-level DP's clipping and
    noise reach the deployment engine's ServerApp (its noise seeded as in process). Tolerance:
    the order of the float32 sums (see tests/federated/test_deployment_engine.py)."""
    options = (*SMALL[:2], "--rounds", "1", *SMALL[4:], "--dp", "client:0.5")
    outputs = {}
    for engine in ("in-process", "deployment"):
        out = tmp_path / f"{engine}.pt2"
        code, text, err = _run(
            capsys,
            "fl",
            "train",
            "--data",
            "builtin:digits",
            *options,
            "--engine",
            engine,
            "--out",
            out,
        )
        assert code == 0, err
        assert "round 1/1" in text
        outputs[engine] = out
    records = {
        e: json.loads(Path(f"{o}.mlwarden.json").read_text())["training"]
        for e, o in outputs.items()
    }
    assert records["deployment"]["engine"].startswith("deployment (SuperLink + 3 SuperNodes")
    assert records["deployment"]["privacy"] == records["in-process"]["privacy"]
    assert (tmp_path / "deployment.training.html").exists()
    test = load_builtin("digits").test
    probabilities = {e: load_model(str(o)).predict_proba(test.x) for e, o in outputs.items()}
    np.testing.assert_allclose(
        probabilities["deployment"], probabilities["in-process"], rtol=0, atol=1e-5
    )


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--partition", "shards"), "--partition 'shards' is unknown"),
        (("--dp", "laplace:1"), "--dp 'laplace:1' is unknown"),
        (("--dp", "sample:-1"), "sample-level ε must be a positive number"),
        (("--model", "zoo:nope"), "unknown model"),
        (("--engine", "ray"), "--engine 'ray' is unknown"),
        (("--engine", "deployment", "--clients-per-round", "0"), "--clients-per-round must lie"),
    ],
)
def test_fl_train_refuses_bad_options_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], fragment: str
) -> None:
    code, _, err = _run(
        capsys,
        "fl",
        "train",
        "--data",
        "builtin:digits",
        *SMALL,
        *args,
        "--out",
        tmp_path / "m.pt2",
    )
    assert code == 2
    assert fragment in err
    assert "Traceback" not in err


def test_fl_train_refuses_an_out_path_that_is_not_pt2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(
        capsys, "fl", "train", "--data", "builtin:digits", "--out", tmp_path / "m.pt"
    )
    assert code == 2 and "must end in .pt2" in err


def test_attack_gradient_leakage_writes_scores_and_a_picture_grid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, text, err = _run(
        capsys,
        "attack",
        "gradient-leakage",
        "--view",
        "plain",
        "--iterations",
        "300",
        "--restarts",
        "1",
        "--out",
        tmp_path,
    )
    assert code == 0, err
    payload = json.loads((tmp_path / "gradient-leakage.json").read_text())
    assert payload["labels_recovered"] is True
    assert payload["psnr_db"][0] >= 25.0 > payload["blank_psnr_db"][0]
    assert (tmp_path / "gradient-leakage.png").read_bytes().startswith(b"\x89PNG")
    assert "labels recovered" in text


def test_attack_gradient_leakage_refuses_an_unknown_view(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(capsys, "attack", "gradient-leakage", "--view", "sum", "--out", tmp_path)
    assert code == 2 and "--view 'sum' is unknown" in err
