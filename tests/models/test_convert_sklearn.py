"""sklearn_to_torch: the module's softmax is the estimator's predict_proba, and its gradients are
the estimator's own (closed form for linear models, finite differences of predict_proba else)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.decomposition import PCA
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.multiclass import OneVsRestClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from mlwarden.models import SklearnClassifier, to_white_box
from mlwarden.models.convert import NotConvertibleError, sklearn_to_torch


def _unit_range(x: np.ndarray) -> np.ndarray:
    return ((x - x.min(0)) / np.maximum(x.max(0) - x.min(0), 1e-12)).astype(np.float32)


BREAST_CANCER = load_breast_cancer()
BINARY = (_unit_range(BREAST_CANCER.data), BREAST_CANCER.target)
MULTICLASS = ((load_digits().data / 16.0).astype(np.float32), load_digits().target)

ESTIMATORS: dict[str, Callable[[], Any]] = {
    "logistic": lambda: LogisticRegression(C=10.0, max_iter=2000),
    "sgd-log-loss": lambda: SGDClassifier(loss="log_loss", random_state=0),
    "lda": lambda: LinearDiscriminantAnalysis(),
    "one-vs-rest-logistic": lambda: OneVsRestClassifier(LogisticRegression(max_iter=2000)),
    "mlp-relu": lambda: MLPClassifier((16,), max_iter=200, random_state=0),
    "mlp-tanh-2-layers": lambda: MLPClassifier((16, 8), "tanh", max_iter=200, random_state=0),
    "mlp-logistic": lambda: MLPClassifier((12,), "logistic", max_iter=200, random_state=0),
    "mlp-identity": lambda: MLPClassifier((12,), "identity", max_iter=200, random_state=0),
    "standard-scaler-logistic": lambda: make_pipeline(
        StandardScaler(), LogisticRegression(max_iter=2000)
    ),
    "min-max-scaler-mlp": lambda: make_pipeline(
        MinMaxScaler(clip=True), MLPClassifier((16,), max_iter=200, random_state=0)
    ),
}
TASKS = {"binary": BINARY, "multiclass": MULTICLASS}


def fit(name: str, task: str) -> tuple[Any, np.ndarray]:
    x, y = TASKS[task]
    with warnings.catch_warnings():  # short training runs on purpose
        warnings.simplefilter("ignore", ConvergenceWarning)
        return ESTIMATORS[name]().fit(x, y), x


@pytest.fixture(scope="module", params=[(n, t) for n in ESTIMATORS for t in TASKS], ids="-".join)
def fitted(request: pytest.FixtureRequest) -> tuple[Any, np.ndarray]:
    return fit(*request.param)


def log_proba(module: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.log_softmax(module(torch.from_numpy(x)).double(), dim=1).numpy()


def test_softmax_of_the_logits_is_predict_proba(fitted: tuple[Any, np.ndarray]) -> None:
    estimator, x = fitted
    module = sklearn_to_torch(estimator, strict=True)
    assert module is not None

    expected = estimator.predict_proba(x.astype(np.float64))
    converted = np.exp(log_proba(module, x))

    assert converted.shape == expected.shape
    np.testing.assert_allclose(converted, expected, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(converted.argmax(1), expected.argmax(1))


def test_the_input_gradient_is_that_of_predict_proba(fitted: tuple[Any, np.ndarray]) -> None:
    # ground truth from the estimator itself: central differences of log predict_proba
    estimator, x = fitted
    module = sklearn_to_torch(estimator, strict=True)
    assert module is not None
    module = module.double()
    # moved off the data's edges, where MinMaxScaler(clip=True) has kinks
    point = 0.01 + 0.98 * x[:3].astype(np.float64)
    target = estimator.predict(point)
    step = 1e-6
    expected = np.zeros_like(point)
    for i in range(point.shape[1]):
        shift = np.zeros_like(point)
        shift[:, i] = step
        up = np.log(estimator.predict_proba(point + shift))[np.arange(3), target]
        down = np.log(estimator.predict_proba(point - shift))[np.arange(3), target]
        expected[:, i] = (up - down) / (2 * step)

    xt = torch.from_numpy(point).requires_grad_(True)
    chosen = torch.log_softmax(module(xt), dim=1)[torch.arange(3), torch.from_numpy(target)]
    (grad,) = torch.autograd.grad(chosen.sum(), xt)

    np.testing.assert_allclose(grad.numpy(), expected, atol=1e-4 * max(1, np.abs(expected).max()))


def test_the_gradient_of_a_binary_logistic_regressions_margin_is_exactly_w() -> None:
    estimator, x = fit("logistic", "binary")
    module = sklearn_to_torch(estimator)
    assert module is not None
    xt = torch.from_numpy(x[:5]).requires_grad_(True)
    logits = module(xt)
    (grad,) = torch.autograd.grad((logits[:, 1] - logits[:, 0]).sum(), xt)

    expected = np.broadcast_to(estimator.coef_[0].astype(np.float32), grad.shape)
    np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-6)


def test_the_logit_gradients_of_a_multinomial_logistic_regression_are_its_rows() -> None:
    estimator, x = fit("logistic", "multiclass")
    module = sklearn_to_torch(estimator)
    assert module is not None
    jacobian = torch.autograd.functional.jacobian(module, torch.from_numpy(x[:1]))[0, :, 0]

    np.testing.assert_allclose(jacobian.numpy(), estimator.coef_.astype(np.float32), rtol=1e-6)


@pytest.mark.parametrize(
    ("estimator", "reason"),
    [
        (GradientBoostingClassifier(n_estimators=3), "GradientBoostingClassifier has no exact"),
        (SGDClassifier(loss="hinge", random_state=0), "loss='hinge'"),
        (make_pipeline(PCA(4), LogisticRegression()), "Pipeline step PCA"),
    ],
    ids=["gradient-boosting", "sgd-hinge", "pipeline-with-pca"],
)
def test_an_unsupported_estimator_gives_none_and_its_reason(estimator: Any, reason: str) -> None:
    x, y = BINARY
    estimator.fit(x, y)

    assert sklearn_to_torch(estimator) is None
    with pytest.raises(NotConvertibleError, match=reason):
        sklearn_to_torch(estimator, strict=True)


def test_an_unfitted_estimator_is_not_converted() -> None:
    with pytest.raises(NotConvertibleError, match="not a fitted classifier"):
        sklearn_to_torch(LogisticRegression(), strict=True)


def test_the_module_owns_its_weights_and_the_estimator_is_unchanged() -> None:
    estimator, x = fit("mlp-relu", "multiclass")
    before = estimator.predict_proba(x[:10])
    coefs = [c.copy() for c in estimator.coefs_]
    module = sklearn_to_torch(estimator)
    assert module is not None

    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(1.0)

    assert all(np.array_equal(a, b) for a, b in zip(coefs, estimator.coefs_, strict=True))
    np.testing.assert_array_equal(estimator.predict_proba(x[:10]), before)
    assert not any(p.requires_grad for p in module.parameters())
    assert not module.training


def test_to_white_box_scores_with_the_estimator_and_differentiates_the_module() -> None:
    estimator, x = fit("logistic", "multiclass")
    classifier = SklearnClassifier(estimator, input_shape=(64,))

    white_box, record = to_white_box(classifier, x[:200])

    assert white_box is not None
    assert record["converted"] is True and record["reason"] == ""
    assert record["n_checked"] == 200
    assert record["max_abs_diff"] <= 1e-5
    assert white_box.differentiable
    np.testing.assert_array_equal(white_box.predict_proba(x[:50]), classifier.predict_proba(x[:50]))
    grad = white_box.loss_gradient(torch.from_numpy(x[:4]), torch.tensor([0, 1, 2, 3]))
    assert grad.shape == (4, 64) and bool(grad.abs().sum() > 0)


def test_to_white_box_refuses_a_model_that_knows_only_some_labels() -> None:
    x, y = MULTICLASS
    keep = y < 5
    estimator = LogisticRegression(max_iter=2000).fit(x[keep], y[keep])
    classifier = SklearnClassifier(estimator, input_shape=(64,), n_classes=10)

    white_box, record = to_white_box(classifier, x[:20])

    assert white_box is None
    assert record["converted"] is False
    assert "labels [0, 1, 2, 3, 4] of 10 classes" in record["reason"]
