"""The assessment runner: policy gates and the checks made before any attack runs."""

from __future__ import annotations

import numpy as np
import pytest

from mlwarden.assess import AssessConfig, Gate, assess, evaluate_gates, parse_gate
from mlwarden.data import Dataset
from mlwarden.errors import ConfigError, DataError
from mlwarden.models import Classifier

METRICS = {
    "clean_accuracy": 0.9,
    "robust_accuracy@0.1": 0.4,
    "robust_accuracy[pgd]@0.1": 0.45,
}


def test_a_gate_passes_when_the_metric_reaches_the_threshold() -> None:
    [result] = evaluate_gates([Gate("clean_accuracy", 0.9)], METRICS)
    assert result.passed is True
    assert result.value == 0.9


def test_a_gate_fails_when_the_metric_is_below_the_threshold() -> None:
    [result] = evaluate_gates([parse_gate("robust_accuracy@0.1=0.41")], METRICS)
    assert result.passed is False
    assert result.value == 0.4
    assert result.source == "--fail-under"


def test_a_gate_on_an_unmeasured_metric_fails_with_no_value() -> None:
    [result] = evaluate_gates([parse_gate("robust_accuracy@0.3=0")], METRICS)
    assert result.passed is False
    assert result.value is None


@pytest.mark.parametrize("spelling", ["0.10", "1e-1", "0.1000"])
def test_gate_eps_spellings_match_the_metric_key(spelling: str) -> None:
    [result] = evaluate_gates([parse_gate(f"robust_accuracy[pgd]@{spelling}=0.45")], METRICS)
    assert result.value == 0.45
    assert result.passed is True
    assert result.metric == f"robust_accuracy[pgd]@{spelling}"  # reported as the user wrote it


def test_assess_refuses_a_gate_on_an_attack_it_does_not_run(
    digits_cnn: Classifier, digits_test: Dataset
) -> None:
    config = AssessConfig(attacks=["fgsm"], epsilons=[0.1], max_samples=10)
    config = config.with_gates([parse_gate("robust_accuracy[pgd]@0.1=0.5")])
    with pytest.raises(ConfigError, match=r"robust_accuracy\[pgd\]@0.1: attack 'pgd' is not run"):
        assess(digits_cnn, digits_test, config)


def test_assess_refuses_data_of_another_shape(digits_cnn: Classifier) -> None:
    data = Dataset(
        name="flat", x=np.zeros((4, 64), np.float32), y=np.zeros(4, np.int64), n_classes=2
    )
    with pytest.raises(DataError, match=r"shape \(64,\) but the model expects \(1, 8, 8\)"):
        assess(digits_cnn, data, AssessConfig(attacks=["fgsm"]))


def test_assess_refuses_labels_beyond_the_models_classes(digits_cnn: Classifier) -> None:
    data = Dataset(
        name="many-classes",
        x=np.zeros((3, 1, 8, 8), np.float32),
        y=np.array([0, 1, 11]),
        n_classes=12,
        kind="image",
    )
    with pytest.raises(DataError, match="label 11 but the model has only 10 classes"):
        assess(digits_cnn, data, AssessConfig(attacks=["fgsm"]))


def test_gates_decide_whether_the_report_passes(
    digits_cnn: Classifier, digits_test: Dataset
) -> None:
    config = AssessConfig(attacks=["fgsm"], epsilons=[0.1], max_samples=30).with_gates(
        [parse_gate("clean_accuracy=0"), parse_gate("robust_accuracy@0.1=1")]
    )
    report = assess(digits_cnn, digits_test, config)
    assert [g.passed for g in report.gates] == [True, report.metrics["robust_accuracy@0.1"] >= 1]
    assert report.passed is all(g.passed for g in report.gates)
