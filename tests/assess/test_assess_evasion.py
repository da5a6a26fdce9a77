"""The evasion check: attack planning, severity, and the findings and metrics it produces."""

from __future__ import annotations

from typing import Any

import pytest

from mlwarden.assess import AssessConfig, assess, evasion
from mlwarden.assess.evasion import plan_attacks, severity_for
from mlwarden.assess.runner import count_steps
from mlwarden.data import Dataset
from mlwarden.errors import ConfigError
from mlwarden.models import Classifier
from mlwarden.report import Report, Severity

# severity_for -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("robust_by_eps", "expected"),
    [
        ({0.01: 0.49, 0.1: 0.40}, Severity.CRITICAL),  # r < 0.5 at the smallest ε
        ({0.01: 0.50, 0.1: 0.49}, Severity.HIGH),  # r < 0.5 only at the largest ε
        ({0.01: 0.90, 0.1: 0.50}, Severity.MEDIUM),  # exactly 0.5 is not high
        ({0.01: 0.90, 0.1: 0.79}, Severity.MEDIUM),
        ({0.01: 0.90, 0.1: 0.80}, Severity.LOW),  # exactly 0.8 is not medium
        ({0.01: 0.99, 0.1: 0.94}, Severity.LOW),
        ({0.01: 0.99, 0.1: 0.95}, Severity.INFO),  # exactly 0.95 is not low
        ({0.01: 1.00, 0.1: 1.00}, Severity.INFO),
    ],
)
def test_severity_for_follows_the_documented_ratio_thresholds(
    robust_by_eps: dict[float, float], expected: Severity
) -> None:
    assert severity_for(1.0, robust_by_eps) is expected


def test_severity_for_uses_the_ratio_to_clean_accuracy_not_the_raw_accuracy() -> None:
    # 0.45 robust accuracy is 90 % of a 0.5 clean accuracy: low, not critical
    assert severity_for(0.5, {0.1: 0.45}) is Severity.LOW


def test_severity_for_reads_the_smallest_and_largest_eps_whatever_the_dict_order() -> None:
    assert severity_for(1.0, {0.1: 0.2, 0.01: 0.9}) is Severity.HIGH
    assert severity_for(1.0, {0.1: 0.9, 0.01: 0.2}) is Severity.CRITICAL


def test_severity_for_a_model_that_is_never_right_is_high() -> None:
    assert severity_for(0.0, {0.1: 0.0}) is Severity.HIGH


# plan_attacks -------------------------------------------------------------------------------------


def test_plan_runs_the_standard_suite_autoattack_style_on_a_white_box_model(
    white_box: Any,
) -> None:
    assert plan_attacks(AssessConfig(), white_box) == (["apgd", "apgd-t", "fmn", "square"], [])


def test_plan_runs_the_quick_suite_when_asked(white_box: Any) -> None:
    assert plan_attacks(AssessConfig(profile="quick"), white_box) == (
        ["apgd", "apgd-t", "square"],
        [],
    )


def test_plan_runs_the_black_box_suite_on_a_black_box_model(black_box: Any) -> None:
    assert plan_attacks(AssessConfig(), black_box) == (["square", "hsj"], [])


def test_plan_runs_every_suite_attack_in_l2_too(white_box: Any) -> None:
    assert plan_attacks(AssessConfig(norm="l2"), white_box) == (
        ["apgd", "apgd-t", "fmn", "square"],
        [],
    )


def test_plan_skips_explicit_attacks_never_and_refuses_a_profile_beside_them() -> None:
    with pytest.raises(ConfigError, match="not both"):
        AssessConfig(profile="quick", attacks=["pgd"])
    with pytest.raises(ConfigError, match="profile must be one of"):
        AssessConfig(profile="thorough")


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_plan_refuses_an_explicit_gradient_attack_on_a_black_box_model(
    black_box: Any, attack: str
) -> None:
    with pytest.raises(ConfigError, match=f"{attack} needs gradients"):
        plan_attacks(AssessConfig(attacks=["square", attack]), black_box)


@pytest.fixture
def linf_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every attack the planner looks up supports L∞ only (no registered attack does today)."""
    real = evasion.get_attack

    def lookup(name: str) -> Any:
        cls = real(name)
        return type(cls.__name__, (cls,), {"supported_norms": ("linf",)})

    monkeypatch.setattr(evasion, "get_attack", lookup)


def test_plan_refuses_an_explicit_attack_without_the_norm(white_box: Any, linf_only) -> None:
    with pytest.raises(ConfigError, match="square supports only"):
        plan_attacks(AssessConfig(norm="l2", attacks=["square"]), white_box)


def test_plan_skips_suite_attacks_without_the_norm(white_box: Any, linf_only) -> None:
    with pytest.raises(ConfigError, match="no attack can run"):
        plan_attacks(AssessConfig(norm="l2"), white_box)


# a small real assessment --------------------------------------------------------------------------

SMALL = {
    "epsilons": [0.05, 0.1],
    "attacks": ["fgsm", "pgd"],
    "max_samples": 40,
    "examples": 3,
    "attack_params": {"pgd": {"steps": 5}},
}


@pytest.fixture(scope="module")
def steps_and_report(digits_cnn: Classifier, digits_test: Dataset) -> tuple[list[str], Report]:
    steps: list[str] = []
    report = assess(digits_cnn, digits_test, AssessConfig(**SMALL), on_step=steps.append)
    return steps, report


def test_assess_reports_one_progress_step_per_attack_and_eps_plus_one(
    steps_and_report: tuple[list[str], Report], digits_cnn: Classifier
) -> None:
    steps, _ = steps_and_report
    # 2 attacks x 2 ε, clean accuracy, and 3 masking steps (checks, probe, convergence)
    assert len(steps) == count_steps(digits_cnn, AssessConfig(**SMALL)) == 8
    assert steps[0] == "clean accuracy"


def test_assess_finds_clean_accuracy_then_one_finding_per_attack(
    steps_and_report: tuple[list[str], Report],
) -> None:
    _, report = steps_and_report
    assert [f.id for f in report.findings] == [
        "model.clean_accuracy",
        "evasion.fgsm",
        "evasion.pgd",
    ]


def test_white_box_attack_findings_map_to_white_box_optimisation(
    steps_and_report: tuple[list[str], Report],
) -> None:
    _, report = steps_and_report
    for finding in report.findings[1:]:
        assert finding.taxonomy.atlas[:2] == ("AML.T0043", "AML.T0043.000")
        assert finding.taxonomy.owasp == ("ML01:2023",)
        assert finding.severity is severity_for(
            report.metrics["clean_accuracy"],
            {e: finding.metrics[f"robust_accuracy@{e:g}"] for e in (0.05, 0.1)},
        )


def test_worst_case_metric_is_at_most_every_attack_metric(
    steps_and_report: tuple[list[str], Report],
) -> None:
    _, report = steps_and_report
    for eps in ("0.05", "0.1"):
        worst = report.metrics[f"robust_accuracy@{eps}"]
        assert worst <= report.metrics[f"robust_accuracy[fgsm]@{eps}"]
        assert worst <= report.metrics[f"robust_accuracy[pgd]@{eps}"]
        assert worst <= report.metrics["clean_accuracy"]


def test_curves_stay_inside_the_eps_ball(steps_and_report: tuple[list[str], Report]) -> None:
    _, report = steps_and_report
    for rows in report.sections["evasion"]["curves"].values():
        for row in rows:
            assert row["max_perturbation"] <= row["eps"] + 1e-6
            assert 0.0 <= row["attack_success_rate"] <= 1.0


def test_examples_are_fooled_samples_limited_to_the_configured_count(
    steps_and_report: tuple[list[str], Report],
) -> None:
    _, report = steps_and_report
    examples = report.sections["evasion"]["examples"]
    assert examples is not None
    assert examples["eps"] == 0.1
    assert 1 <= len(examples["indices"]) <= 3
    assert all(
        label != predicted
        for label, predicted in zip(
            examples["labels"], examples["adversarial_predictions"], strict=True
        )
    )


def test_report_records_model_data_and_effective_config(
    steps_and_report: tuple[list[str], Report],
) -> None:
    _, report = steps_and_report
    assert report.model["white_box"] is True
    assert report.model["input_shape"] == [1, 8, 8]
    assert report.data["n_samples_evaluated"] == 40
    assert report.config["epsilons"] == [0.05, 0.1]
    assert report.passed  # no gates
