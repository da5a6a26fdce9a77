"""Fixtures for the attack tests: small seeded models whose behaviour is known, and the zoo."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from mlwarden.data import Dataset, load_dataset
from mlwarden.models import Classifier, SklearnClassifier, TorchClassifier, load_model
from mlwarden.models.zoo import train_zoo_model


class LinearScore(torch.nn.Module):
    """Logits ``[0, w·x + b]``: class 1 exactly when ``w·x + b > 0``."""

    def __init__(self, w: np.ndarray, b: float) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.as_tensor(w, dtype=torch.float32))
        self.b = torch.nn.Parameter(torch.tensor(float(b)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = x.flatten(1) @ self.w + self.b
        return torch.stack([torch.zeros_like(score), score], dim=1)


@dataclass(frozen=True)
class LinearProblem:
    """A linear binary classifier, data in ``[-1, 1]`` and labels, with exact robustness known."""

    classifier: TorchClassifier
    w: np.ndarray
    b: float
    x: np.ndarray
    y: np.ndarray

    @property
    def signed_margin(self) -> np.ndarray:
        """``s·(w·x + b)`` with ``s = +1`` for label 1 and ``-1`` for label 0."""
        score = self.x.astype(np.float64) @ self.w + self.b
        return (2 * self.y - 1) * score

    def exact_robust_accuracy(self, eps: float, norm: str) -> float:
        """Share of points no perturbation of ``norm`` at most ``eps`` can misclassify.

        The worst perturbation moves the score by ``eps·‖w‖_q`` with ``q`` the dual norm
        (``‖w‖₁`` for L∞, ``‖w‖₂`` for L2), so a point survives iff its margin exceeds that.
        """
        dual = np.abs(self.w).sum() if norm == "linf" else np.linalg.norm(self.w)
        return float(np.mean(self.signed_margin > eps * dual))


@pytest.fixture(scope="session")
def make_linear_classifier() -> Callable[..., TorchClassifier]:
    """A factory of linear binary classifiers ``f(x) = w·x + b`` as :class:`TorchClassifier`."""

    def make(
        w: np.ndarray, b: float = 0.0, clip_range: tuple[float, float] = (-10.0, 10.0)
    ) -> TorchClassifier:
        return TorchClassifier(
            LinearScore(w, b), input_shape=(len(w),), n_classes=2, clip_range=clip_range
        )

    return make


@pytest.fixture(scope="session")
def linear_problem(make_linear_classifier: Callable[..., TorchClassifier]) -> LinearProblem:
    """d=20, n=2000 points uniform in ``[-1, 1]``, 10% of labels flipped; the box never binds."""
    rng = np.random.default_rng(20240601)
    d, n = 20, 2000
    w = rng.normal(size=d)
    b = 0.1
    x = rng.uniform(-1.0, 1.0, size=(n, d)).astype(np.float32)
    y = (x.astype(np.float64) @ w + b > 0).astype(np.int64)
    flipped = rng.random(n) < 0.1
    y[flipped] = 1 - y[flipped]
    return LinearProblem(make_linear_classifier(w, b), w, b, x, y)


def _tiny_mlp(input_shape: tuple[int, ...], n_classes: int, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    features = int(np.prod(input_shape))
    return torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(features, 16),
        torch.nn.Tanh(),
        torch.nn.Linear(16, n_classes),
    )


@pytest.fixture(scope="session")
def tiny_vector_classifier() -> TorchClassifier:
    """A random-weight MLP over 6 features in ``[0, 1]``, 3 classes."""
    return TorchClassifier(_tiny_mlp((6,), 3, seed=1), input_shape=(6,), n_classes=3)


@pytest.fixture(scope="session")
def tiny_image_classifier() -> TorchClassifier:
    """A random-weight MLP over ``1x6x6`` images in ``[0, 1]``, 3 classes."""
    return TorchClassifier(_tiny_mlp((1, 6, 6), 3, seed=2), input_shape=(1, 6, 6), n_classes=3)


@pytest.fixture(scope="session", params=["vector", "image"])
def tiny_classifier(
    request: pytest.FixtureRequest,
    tiny_vector_classifier: TorchClassifier,
    tiny_image_classifier: TorchClassifier,
) -> TorchClassifier:
    """Each tiny differentiable classifier in turn: tabular and image-shaped inputs."""
    return tiny_vector_classifier if request.param == "vector" else tiny_image_classifier


@pytest.fixture(scope="session")
def make_batch() -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """A factory of ``n`` seeded inputs uniform in a classifier's range, with random labels."""

    def make(classifier: Classifier, n: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        low, high = classifier.clip_range
        x = rng.uniform(low, high, size=(n, *classifier.input_shape)).astype(np.float32)
        y = rng.integers(0, classifier.n_classes, size=n)
        return x, y

    return make


@pytest.fixture(scope="session")
def blackbox_classifier() -> SklearnClassifier:
    """A logistic regression over 6 features in ``[0, 1]``, 3 classes: no gradients exposed."""
    rng = np.random.default_rng(3)
    x = rng.uniform(0.0, 1.0, size=(90, 6))
    y = np.arange(90) % 3
    return SklearnClassifier(LogisticRegression().fit(x, y), input_shape=(6,))


@pytest.fixture(scope="session")
def zoo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder for the zoo models these tests train."""
    return tmp_path_factory.mktemp("attack-zoo")


@pytest.fixture(scope="session")
def digits_cnn(zoo_dir: Path) -> Classifier:
    """The zoo digits CNN, trained once per session (about 6 s)."""
    return load_model(train_zoo_model("digits-cnn", zoo_dir))


@pytest.fixture(scope="session")
def digits_subset() -> Dataset:
    """The first 200 digits test samples."""
    return load_dataset("builtin:digits").subset(np.arange(200))


@pytest.fixture(scope="session")
def breast_cancer_gbm(zoo_dir: Path) -> Classifier:
    """The zoo gradient-boosted trees on breast cancer: a black-box scikit-learn model."""
    return load_model(train_zoo_model("breast-cancer-gbm", zoo_dir))


@pytest.fixture(scope="session")
def breast_cancer() -> Dataset:
    """The breast-cancer test split (171 samples, 30 features in ``[0, 1]``)."""
    return load_dataset("builtin:breast-cancer")
