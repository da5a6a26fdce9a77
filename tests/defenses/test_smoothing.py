"""Randomized smoothing: ground truth on a linear classifier, Clopper–Pearson, abstention, seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import norm

from mlwarden.defenses.smoothing import (
    ABSTAIN,
    SmoothedClassifier,
    certified_accuracy,
    clopper_pearson_lower,
)
from mlwarden.errors import ConfigError
from mlwarden.models.base import Classifier
from mlwarden.models.torch import TorchClassifier

DIM = 10


class _Linear(torch.nn.Module):
    """f(x) = sign(w·x + b) as two logits: class 1 where w·x + b > 0."""

    def __init__(self, w: torch.Tensor, b: float) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(w)
        self.b = torch.nn.Parameter(torch.tensor(b))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x @ self.w + self.b
        return torch.stack([-z, z], dim=1)


def _linear(seed: int = 0) -> tuple[TorchClassifier, np.ndarray, float]:
    rng = np.random.default_rng(seed)
    w = rng.normal(size=DIM).astype(np.float32)
    b = 0.3
    model = _Linear(torch.from_numpy(w), b)
    return TorchClassifier(model, input_shape=(DIM,), n_classes=2, clip_range=(-10, 10)), w, b


def _points_at_radii(w: np.ndarray, b: float, radii: np.ndarray, seed: int) -> np.ndarray:
    """Points whose signed distance to the hyperplane w·x + b = 0 is ``radii``."""
    rng = np.random.default_rng(seed)
    unit = w / np.linalg.norm(w)
    base = rng.normal(size=(len(radii), DIM)).astype(np.float64)
    base -= np.outer(base @ unit + b / np.linalg.norm(w), unit)  # project onto the hyperplane
    return (base + np.outer(radii, unit)).astype(np.float32)


def _true_radius(x: np.ndarray, w: np.ndarray, b: float) -> np.ndarray:
    return np.abs(x.astype(np.float64) @ w + b) / np.linalg.norm(w)


def test_clopper_pearson_matches_known_values() -> None:
    # k = n: the bound solves p^n = alpha
    assert clopper_pearson_lower(100, 100, 0.001) == pytest.approx(0.001 ** (1 / 100), rel=1e-9)
    # k = 0: the bound is 0
    assert clopper_pearson_lower(0, 50, 0.05) == 0.0
    # a tabulated value: 7 of 10 at one-sided 95% (two-sided 90% exact interval lower end)
    assert clopper_pearson_lower(7, 10, 0.05) == pytest.approx(0.3933758, abs=1e-6)


def test_clopper_pearson_covers_the_true_proportion_at_level_alpha() -> None:
    rng = np.random.default_rng(0)
    p, n, alpha = 0.7, 200, 0.05
    counts = rng.binomial(n, p, size=20_000)
    misses = np.mean(clopper_pearson_lower(counts, n, alpha) > p)
    assert misses <= alpha


def test_certified_radius_never_exceeds_the_true_radius_and_is_within_10_percent() -> None:
    classifier, w, b = _linear()
    sigma = 0.5
    true = np.linspace(0.5, 2.5, 12) * sigma * np.where(np.arange(12) % 2, 1, -1)
    x = _points_at_radii(w, b, true, seed=1)
    expected = _true_radius(x, w, b)
    smoothed = SmoothedClassifier(classifier, sigma=sigma, batch_size=50_000, seed=0)
    result = smoothed.certify(x, n0=100, n=100_000, alpha=0.001)
    base_labels = classifier.predict(x)
    assert np.all(result.predictions == base_labels)
    assert np.all(result.radii <= expected + 1e-9)
    assert np.all(result.radii >= 0.9 * expected)


def test_certified_radius_is_never_above_truth_near_the_boundary() -> None:
    classifier, w, b = _linear(seed=3)
    sigma = 0.25
    true = np.linspace(-0.3, 0.3, 25) * sigma
    x = _points_at_radii(w, b, true, seed=2)
    result = SmoothedClassifier(classifier, sigma=sigma, seed=1).certify(x, n0=100, n=20_000)
    certified = ~result.abstained
    assert np.all(result.radii[certified] <= _true_radius(x, w, b)[certified] + 1e-9)
    assert np.all(result.radii[~certified] == 0)


def test_certify_abstains_on_the_decision_boundary() -> None:
    classifier, w, b = _linear()
    x = _points_at_radii(w, b, np.zeros(5), seed=4)
    result = SmoothedClassifier(classifier, sigma=0.5, seed=0).certify(x, n0=100, n=5_000)
    assert np.all(result.predictions == ABSTAIN)
    assert np.all(result.radii == 0)


def test_predict_abstains_on_the_boundary_and_answers_far_from_it() -> None:
    classifier, w, b = _linear()
    near = _points_at_radii(w, b, np.zeros(5), seed=5)
    far = _points_at_radii(w, b, np.array([3.0, -3.0, 4.0]), seed=6)
    smoothed = SmoothedClassifier(classifier, sigma=0.5, seed=0)
    assert np.all(smoothed.predict(near, n=1_000) == ABSTAIN)
    np.testing.assert_array_equal(smoothed.predict(far, n=100), classifier.predict(far))


def test_the_same_seed_gives_identical_certificates_and_different_seeds_differ() -> None:
    classifier, w, b = _linear()
    x = _points_at_radii(w, b, np.linspace(0.1, 0.6, 6), seed=7)
    first = SmoothedClassifier(classifier, sigma=0.5, seed=11).certify(x, n=2_000)
    again = SmoothedClassifier(classifier, sigma=0.5, seed=11, batch_size=777).certify(x, n=2_000)
    other = SmoothedClassifier(classifier, sigma=0.5, seed=12).certify(x, n=2_000)
    np.testing.assert_array_equal(first.radii, again.radii)
    np.testing.assert_array_equal(first.top_counts, again.top_counts)
    assert not np.array_equal(first.top_counts, other.top_counts)


def test_an_input_certifies_the_same_alone_or_in_a_batch() -> None:
    classifier, w, b = _linear()
    x = _points_at_radii(w, b, np.linspace(0.1, 0.6, 6), seed=8)
    smoothed = SmoothedClassifier(classifier, sigma=0.5, seed=3)
    together = smoothed.certify(x, n=1_000)
    alone = smoothed.certify(x[:2], n=1_000)
    np.testing.assert_array_equal(together.top_counts[:2], alone.top_counts)


def test_sample_counts_rows_sum_to_n() -> None:
    classifier, w, b = _linear()
    x = _points_at_radii(w, b, np.linspace(-1, 1, 7), seed=9)
    counts = SmoothedClassifier(classifier, sigma=0.5, batch_size=64).sample_counts(x, 150)
    assert counts.shape == (7, 2)
    assert np.all(counts.sum(axis=1) == 150)


def test_the_radius_follows_sigma_times_inverse_normal_of_the_bound() -> None:
    classifier, w, b = _linear()
    x = _points_at_radii(w, b, np.array([0.4, 0.8]), seed=10)
    result = SmoothedClassifier(classifier, sigma=0.5, seed=0).certify(x, n=4_000)
    np.testing.assert_allclose(result.radii, 0.5 * norm.ppf(result.p_lower))


def test_certified_accuracy_counts_correct_predictions_with_enough_radius() -> None:
    classifier, w, b = _linear()
    x = _points_at_radii(w, b, np.array([0.2, 0.6, -1.2, 0.0]), seed=11)
    y = classifier.predict(x)
    result = SmoothedClassifier(classifier, sigma=0.5, seed=0).certify(x, n=10_000)
    acc = certified_accuracy(result, y, [0.0, 0.5, 1.0, 5.0])
    assert list(acc) == sorted(acc, reverse=True)
    assert acc[-1] == 0.0
    assert acc[0] == pytest.approx(np.mean(result.predictions == y))


class _Constant(Classifier):
    def _predict_proba_batch(self, x: np.ndarray) -> np.ndarray:
        proba = np.zeros((len(x), self.n_classes), dtype=np.float32)
        proba[:, 1] = 1.0
        return proba


def test_black_box_base_classifiers_are_smoothed_through_predict_proba() -> None:
    base = _Constant(input_shape=(3,), n_classes=3)
    result = SmoothedClassifier(base, sigma=1.0).certify(np.zeros((2, 3), np.float32), n=200)
    assert np.all(result.predictions == 1)
    assert result.max_radius == pytest.approx(result.radii[0])


@pytest.mark.parametrize("kwargs", [{"sigma": 0}, {"sigma": -1.0}, {"sigma": float("nan")}])
def test_invalid_sigma_is_refused(kwargs: dict[str, float]) -> None:
    classifier, _, _ = _linear()
    with pytest.raises(ConfigError, match="sigma"):
        SmoothedClassifier(classifier, **kwargs)  # type: ignore[arg-type]


def test_invalid_alpha_is_refused() -> None:
    classifier, _, _ = _linear()
    with pytest.raises(ConfigError, match="alpha"):
        SmoothedClassifier(classifier, sigma=0.5).certify(np.zeros((1, DIM), np.float32), alpha=0)
