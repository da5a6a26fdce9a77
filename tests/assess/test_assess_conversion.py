"""assess converts scikit-learn models to exact white-box views, and says so when it cannot.

A linear model's exact robust accuracy has a closed form: under an L∞ budget ε inside the valid
box [0, 1], each logit difference ``(w_y - w_j)·x' + (b_y - b_j)`` is smallest when every
feature moves by ε (or to the box's edge) against its weight's sign. A sample survives iff every
such minimum stays positive (without the box this is ``margin > ε‖w_y - w_j‖₁``). The white-box
suite run through the conversion must find (almost) every sample that does not survive.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from mlwarden.assess import AssessConfig, assess
from mlwarden.data import Dataset
from mlwarden.models import SklearnClassifier
from mlwarden.report.findings import Report, Severity

EPS = 0.1
CONFIG = AssessConfig(profile="quick", epsilons=[EPS], max_samples=60)


def breast_cancer() -> Dataset:
    raw = load_breast_cancer()
    x = (raw.data - raw.data.min(0)) / (raw.data.max(0) - raw.data.min(0))
    return Dataset(name="breast-cancer", x=x.astype(np.float32), y=raw.target, n_classes=2)


def digits() -> Dataset:
    raw = load_digits()
    return Dataset(
        name="digits", x=(raw.data / 16.0).astype(np.float32), y=raw.target, n_classes=10
    )


def exact_linf_robust_accuracy(weight: np.ndarray, bias: np.ndarray, data: Dataset) -> float:
    """Share of samples no perturbation within ε (and the box [0, 1]) can misclassify."""
    x, y = data.x.astype(np.float64), data.y
    low, high = np.clip(x - EPS, 0, 1), np.clip(x + EPS, 0, 1)
    survives = np.ones(len(x), dtype=bool)
    for j in range(len(weight)):
        diff = weight[y] - weight[j]  # (n, d): gradient of z_y - z_j
        worst = np.minimum(diff * low, diff * high).sum(axis=1) + bias[y] - bias[j]
        survives &= (y == j) | (worst > 0)
    return float(survives.mean())


def linear_logits(estimator: LogisticRegression) -> tuple[np.ndarray, np.ndarray]:
    """``(W, b)`` with softmax(Wx + b) = predict_proba; binary: rows ``[0, w]``, ``[0, b]``."""
    if len(estimator.classes_) == 2:
        weight = np.vstack([np.zeros_like(estimator.coef_), estimator.coef_])
        return weight, np.concatenate([[0.0], estimator.intercept_])
    return estimator.coef_, estimator.intercept_


@pytest.fixture(scope="module", params=["breast-cancer", "digits"])
def linear_assessment(request: pytest.FixtureRequest) -> tuple[Report, float]:
    data = breast_cancer() if request.param == "breast-cancer" else digits()
    estimator = LogisticRegression(C=10.0, max_iter=3000).fit(data.x, data.y)
    classifier = SklearnClassifier(estimator, input_shape=data.input_shape)
    report = assess(classifier, data, CONFIG)
    exact = exact_linf_robust_accuracy(*linear_logits(estimator), data.sample(60, CONFIG.seed))
    return report, exact


def test_a_logistic_regression_is_assessed_white_box(linear_assessment: Any) -> None:
    report, _ = linear_assessment
    assert report.model["white_box"] is True
    assert report.model["white_box_conversion"]["converted"] is True
    assert report.model["white_box_conversion"]["max_abs_diff"] <= 1e-5
    assert "apgd" in report.sections["evasion"]["curves"]
    [finding] = [f for f in report.findings if f.id == "model.white_box_conversion"]
    assert finding.severity is Severity.INFO
    assert not any(f.id == "model.black_box_only" for f in report.findings)


def test_robust_accuracy_matches_the_exact_robust_accuracy_of_the_linear_model(
    linear_assessment: Any,
) -> None:
    report, exact = linear_assessment
    measured = report.metrics[f"robust_accuracy@{EPS:g}"]
    # an attack never beats the optimum; it may miss at most two of the 60 samples
    assert exact <= measured <= exact + 2 / 60 + 1e-9
    assert exact < report.metrics["clean_accuracy"]  # the budget breaks some samples


def test_a_model_that_cannot_be_converted_is_reported_black_box_only() -> None:
    data = breast_cancer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        estimator = GradientBoostingClassifier(n_estimators=5, random_state=0).fit(data.x, data.y)
    classifier = SklearnClassifier(estimator, input_shape=data.input_shape)

    report = assess(classifier, data, AssessConfig(profile="quick", epsilons=[EPS], max_samples=20))

    [finding] = [f for f in report.findings if f.id == "model.black_box_only"]
    assert finding.severity is Severity.MEDIUM
    assert "black-box only" in finding.summary
    assert "GradientBoostingClassifier has no exact torch form" in finding.summary
    assert "may be higher than the truth" in finding.summary
    assert report.model["white_box"] is False
    assert report.model["white_box_conversion"]["converted"] is False
    assert not {"apgd", "apgd-t", "pgd", "fgsm"} & set(report.sections["evasion"]["curves"])
