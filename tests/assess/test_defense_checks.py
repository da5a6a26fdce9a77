"""The certification and detection checks of ``mlwarden assess`` and their configuration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlwarden.assess import assess, load_config
from mlwarden.assess.config import AssessConfig
from mlwarden.assess.detection import adaptive_attack, resolve_train_data
from mlwarden.data import Dataset, load_dataset
from mlwarden.defenses.detectors import KNNDetector
from mlwarden.errors import ConfigError
from mlwarden.models import load_model
from mlwarden.report import write_reports

SMALL = {"epsilons": [0.1], "attacks": ["fgsm"], "max_samples": 60}


@pytest.fixture(scope="module")
def cnn():  # type: ignore[no-untyped-def]
    return load_model("zoo:digits-cnn")


@pytest.fixture(scope="module")
def digits_test() -> Dataset:
    return load_dataset("builtin:digits")


def test_detectors_accept_names_mappings_and_entries() -> None:
    as_names = AssessConfig(detectors=["knn", "feature-squeezing"]).detectors
    as_mapping = AssessConfig(detectors={"knn": {"k": 3}}).detectors
    as_entries = AssessConfig(detectors=[{"name": "knn", "params": {"k": 3}}]).detectors
    assert as_names == [{"name": "knn", "params": {}}, {"name": "feature-squeezing", "params": {}}]
    assert as_mapping == as_entries == [{"name": "knn", "params": {"k": 3}}]


@pytest.mark.parametrize(
    ("detectors", "message"),
    [
        (["nope"], "unknown detector"),
        ({"knn": {"kk": 3}}, "kk"),
        (["knn", "knn"], "once"),
        ([], "non-empty"),
        ({"knn": [1]}, "mapping"),
    ],
)
def test_bad_detector_settings_are_config_errors(detectors: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        AssessConfig(detectors=detectors)  # type: ignore[arg-type]


def test_smoothing_fills_defaults_and_validates() -> None:
    settings = AssessConfig(smoothing={"sigma": 0.5}).smoothing
    assert settings is not None and settings["sigma"] == 0.5 and settings["n"] == 10_000
    for bad, message in (({"sigma": -1}, "sigma"), ({"sigma": 0.5, "alpha": 2}, "alpha"),
                         ({"sigma": 0.5, "n": 0}, "smoothing.n"), ({"sigma": 0.5, "m": 1}, "unknown")):  # fmt: skip
        with pytest.raises(ConfigError, match=message):
            AssessConfig(smoothing=bad)


def test_yaml_config_takes_the_new_keys(tmp_path: Path) -> None:
    path = tmp_path / "assess.yaml"
    path.write_text("smoothing: {sigma: 0.25, n: 500}\ndetectors: [knn]\n")
    config = load_config(path).with_gates([])
    assert config.smoothing["n"] == 500  # type: ignore[index]
    assert config.detectors == [{"name": "knn", "params": {}}]


def test_smoothing_without_sigma_on_an_unsmoothed_model_is_a_config_error(cnn, digits_test) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="sigma"):
        assess(cnn, digits_test, AssessConfig(**SMALL, smoothing={"n": 100}))


def test_certification_section_finding_and_metrics(cnn, digits_test) -> None:  # type: ignore[no-untyped-def]
    config = AssessConfig(**SMALL, smoothing={"sigma": 0.25, "n": 400, "n0": 40, "max_samples": 20})
    report = assess(cnn, digits_test, config)
    section = report.sections["certification"]
    assert section["n_samples"] == 20
    table = [row["certified_accuracy"] for row in section["table"]]
    assert table == sorted(table, reverse=True)
    assert section["curve"][0]["radius"] == 0.0
    assert report.metrics["certified_accuracy@0"] == table[0]
    finding = next(f for f in report.findings if f.check == "certification")
    assert "ML01:2023" in finding.taxonomy.owasp
    assert finding.details["mitigation_for"] == ["ML01:2023"]


def test_detection_reports_auc_rates_and_the_adaptive_attack(
    cnn, digits_test, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    config = AssessConfig(**SMALL, detectors=["feature-squeezing", "knn"])
    report = assess(cnn, digits_test, config)
    section = report.sections["detection"]
    assert section["train_data"] == "builtin:digits:train"
    assert section["attacks"] == ["fgsm", "pgd"]
    for row in section["detectors"]:
        for stats in row["attacks"].values():
            assert stats["roc_auc"] is None or 0 <= stats["roc_auc"] <= 1
        assert 0 <= row["adaptive"]["evasion_rate"] <= 1
        assert isinstance(row["bypassed"], bool)
    findings = {f.id: f for f in report.findings if f.check == "detection"}
    assert set(findings) == {"detection.feature-squeezing", "detection.knn"}
    assert "detector[knn].roc_auc[pgd]" in report.metrics
    paths = write_reports(report, tmp_path)
    html = paths["html"].read_text()
    assert "Input detectors" in html and "feature-squeezing" in html


def test_a_bypassed_detector_is_said_so_plainly(cnn, digits_test) -> None:  # type: ignore[no-untyped-def]
    config = AssessConfig(epsilons=[0.3], attacks=["fgsm"], max_samples=40, detectors=["knn"])
    report = assess(cnn, digits_test, config)
    finding = next(f for f in report.findings if f.id == "detection.knn")
    assert report.sections["detection"]["detectors"][0]["bypassed"] is True
    assert "can be bypassed" in finding.summary
    assert finding.severity.value == "high"


def test_adaptive_attack_outputs_stay_in_the_ball(cnn, digits_test) -> None:  # type: ignore[no-untyped-def]
    train = resolve_train_data(digits_test, None)
    detector = KNNDetector(cnn).fit(train.x[:500]).calibrate(train.x[500:800])
    x, y = digits_test.x[:30], digits_test.y[:30]
    x_adv, evaded = adaptive_attack(cnn, detector, x, y, eps=0.1, norm="linf", steps=5)
    assert np.abs(x_adv - x).max() <= 0.1 + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert np.all(cnn.predict(x_adv[evaded]) != y[evaded])
    assert not np.any(detector.predict(x_adv[evaded]))


def test_detectors_on_user_data_need_training_data(cnn, digits_test) -> None:  # type: ignore[no-untyped-def]
    user = Dataset(name="mine.npz", x=digits_test.x, y=digits_test.y, n_classes=10, kind="image")
    with pytest.raises(ConfigError, match="--train-data"):
        assess(cnn, user, AssessConfig(**SMALL, detectors=["knn"]))


def test_reports_without_the_new_sections_still_render(cnn, digits_test, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    report = assess(cnn, digits_test, AssessConfig(**SMALL))
    assert set(report.sections) == {"evasion"}
    html = write_reports(report, tmp_path)["html"].read_text()
    assert "Certified robustness" not in html and "Input detectors" not in html
