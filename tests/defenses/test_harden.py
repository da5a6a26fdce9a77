"""``mlwarden harden`` and the hardening pipeline, with the adversarial-training proof on digits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mlwarden.attacks import PGD
from mlwarden.cli.app import main
from mlwarden.data import DatasetSplits
from mlwarden.defenses.training import AdversarialTrainer
from mlwarden.defenses.training.harden import harden_model
from mlwarden.models import load_model
from mlwarden.models.base import Classifier


def _sidecar(path: Path) -> dict:
    return json.loads(Path(f"{path}.mlwarden.json").read_text())


def test_harden_adversarial_writes_model_record_and_run_report(tmp_path: Path) -> None:
    out = tmp_path / "hardened.pt2"
    code = main(
        [
            "harden", "adversarial", "--model", "zoo:digits-cnn", "--data", "builtin:digits",
            "--eps", "0.1", "--epochs", "1", "--warmup-epochs", "0", "--steps", "2",
            "--eval-samples", "40", "--seed", "3", "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    record = _sidecar(out)["training"]
    assert record["recipe"] == "mlwarden harden adversarial"
    assert (record["method"], record["eps"], record["norm"], record["epochs"], record["seed"]) == (
        "pgd", 0.1, "linf", 1, 3,
    )  # fmt: skip
    assert len(record["dataset_sha256"]) == 64
    assert [row["epoch"] for row in record["curve"]] == [0, 1]
    assert {"clean_accuracy", "robust_accuracy"} <= set(record["curve"][1])
    assert record["base_model"]["name"] == "zoo:digits-cnn"
    assert (tmp_path / "hardened.training.png").read_bytes().startswith(b"\x89PNG")
    assert "Hardening run" in (tmp_path / "hardened.training.html").read_text()
    hardened = load_model(out)
    assert hardened.n_classes == 10 and hardened.input_shape == (1, 8, 8)


def test_harden_smoothing_records_sigma_so_assess_certifies_it(tmp_path: Path) -> None:
    out = tmp_path / "noisy.pt2"
    code = main(
        [
            "harden", "smoothing", "--model", "zoo:digits-cnn", "--data", "builtin:digits",
            "--sigma", "0.25", "--epochs", "1", "--eval-samples", "40", "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    sidecar = _sidecar(out)
    assert sidecar["smoothing"] == {"sigma": 0.25}
    assert "noisy_accuracy" in sidecar["training"]["curve"][-1]

    from mlwarden.assess import assess
    from mlwarden.assess.config import AssessConfig
    from mlwarden.data import load_dataset

    config = AssessConfig(
        epsilons=[0.05], attacks=["fgsm"], max_samples=30, smoothing={"n": 500, "n0": 50}
    )
    report = assess(load_model(out), load_dataset("builtin:digits"), config)
    section = report.sections["certification"]
    assert (section["sigma"], section["n"]) == (0.25, 500)
    assert [row["radius"] for row in section["table"]] == [0.0, 0.25, 0.5, 1.0]
    assert "certified_accuracy@0.25" in report.metrics
    finding = next(f for f in report.findings if f.id == "certification.smoothing")
    assert finding.taxonomy.owasp == ("ML01:2023",)


def test_harden_refuses_an_output_that_is_not_pt2(tmp_path: Path) -> None:
    code = main(
        [
            "harden", "adversarial", "--model", "zoo:digits-cnn", "--data", "builtin:digits",
            "--eps", "0.1", "--out", str(tmp_path / "model.pkl"),
        ]
    )  # fmt: skip
    assert code == 2
    assert not (tmp_path / "model.pkl").exists()


def test_harden_refuses_black_box_models(tmp_path: Path) -> None:
    code = main(
        [
            "harden", "adversarial", "--model", "zoo:breast-cancer-gbm", "--data",
            "builtin:breast-cancer", "--eps", "0.1", "--out", str(tmp_path / "m.pt2"),
        ]
    )  # fmt: skip
    assert code == 2


@pytest.mark.slow
def test_adversarial_training_raises_pgd20_robust_accuracy_severalfold_on_digits(
    tmp_path: Path, digits: DatasetSplits, digits_cnn: Classifier
) -> None:
    """The issue's proof: train at the assessment's ε, measure PGD-20 before and after."""
    eps = 0.2
    test = digits.test
    attack = PGD(eps=eps, steps=20, seed=0)
    clean_before = float(np.mean(digits_cnn.predict(test.x) == test.y))
    robust_before = attack.generate(digits_cnn, test.x, test.y).robust_accuracy(test.y)

    trainer = AdversarialTrainer(
        eps=eps, epochs=15, warmup_epochs=5, steps=7, eval_samples=200, seed=0
    )
    result = harden_model("zoo:digits-cnn", digits.train, test, trainer, out=tmp_path / "at.pt2")
    hardened = load_model(result.model_path)
    clean_after = float(np.mean(hardened.predict(test.x) == test.y))
    robust_after = attack.generate(hardened, test.x, test.y).robust_accuracy(test.y)

    print(
        f"ε={eps}: clean {clean_before:.3f} -> {clean_after:.3f}, "
        f"PGD-20 robust {robust_before:.3f} -> {robust_after:.3f}"
    )
    assert robust_after >= 5 * max(robust_before, 0.01)
    assert robust_after - robust_before >= 0.25
    assert clean_before - clean_after <= 0.05
