"""The federated-privacy section of ``assess``: the federation's own server view, attacked."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from mlwarden.assess.federated import is_federated_record, run_federated_privacy
from mlwarden.cli.app import main
from mlwarden.data.builtin import load_builtin
from mlwarden.report.findings import Severity

SMALL_ASSESS = {"seed": 0, "epsilons": [0.05], "attacks": ["fgsm"], "max_samples": 40}


def _record(**overrides: object) -> dict:
    return {
        "recipe": "mlwarden fl train",
        "architecture": "digits-cnn",
        "clients_per_round": 5,
        "secure_aggregation": {"enabled": False},
        "privacy": None,
        **overrides,
    }


def test_only_fl_records_are_federated() -> None:
    assert is_federated_record(_record())
    assert not is_federated_record({"recipe": "mlwarden harden dp"})
    assert not is_federated_record(None)


def test_a_plain_federation_is_a_high_finding_with_taxonomy() -> None:
    data = load_builtin("digits").train
    outcome = run_federated_privacy(_record(), data.subset(np.arange(200)))
    (finding,) = outcome.findings
    assert finding.severity is Severity.HIGH
    assert finding.id == "federated.gradient_leakage"
    assert finding.taxonomy.atlas == ("AML.T0024.001",)
    assert finding.taxonomy.owasp == ("ML03:2023",)
    assert outcome.metrics["gradient_leakage_psnr_db"] >= 25.0


def test_a_dp_sgd_federation_is_an_info_finding() -> None:
    data = load_builtin("digits").train
    record = _record(privacy={"level": "sample", "clients": [{"noise_multiplier": 1.2}]})
    outcome = run_federated_privacy(record, data.subset(np.arange(200)))
    (finding,) = outcome.findings
    assert outcome.section["view"] == "dp"
    assert finding.severity is Severity.INFO
    # the comparison row: the same attack on a plain update still leaks
    assert outcome.section["views"]["plain"]["mean_psnr_db"] >= 25.0


def test_secagg_alone_over_one_sample_clients_is_still_a_leak() -> None:
    data = load_builtin("digits").train
    outcome = run_federated_privacy(
        _record(secure_aggregation={"enabled": True}, clients_per_round=3),
        data.subset(np.arange(200)),
    )
    (finding,) = outcome.findings
    assert outcome.section["view"] == "secagg"
    assert finding.severity is Severity.HIGH


def test_assess_adds_the_section_for_a_model_from_fl_train(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "fl.pt2"
    assert (
        main(
            [
                "fl",
                "train",
                "--data",
                "builtin:digits",
                "--clients",
                "3",
                "--rounds",
                "1",
                "--local-epochs",
                "1",
                "--out",
                str(model),
            ]
        )
        == 0
    )
    config = tmp_path / "assess.yaml"
    config.write_text(yaml.safe_dump(SMALL_ASSESS))
    out = tmp_path / "report"
    code = main(
        [
            "assess",
            "--model",
            str(model),
            "--data",
            "builtin:digits",
            "--config",
            str(config),
            "--out",
            str(out),
        ]
    )
    capsys.readouterr()
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    ids = [f["id"] for f in report["findings"]]
    assert "federated.gradient_leakage" in ids
