"""Model-free statistics, the detectors' building blocks, and STRIP's entropy, against ground truth."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import precision_score, recall_score
from torch import nn

from mlwarden.attacks.poisoning import LabelFlip
from mlwarden.data import Dataset, load_builtin
from mlwarden.defenses.detectors import STRIP
from mlwarden.defenses.poisoning import (
    ActivationClustering,
    SpectralSignatures,
    confident_joint,
    feature_outliers,
    find_duplicates,
    hidden_activations,
    holdout_validation,
    label_errors,
    precision_recall,
)
from mlwarden.errors import ConfigError, ModelError
from mlwarden.models.base import Classifier
from mlwarden.models.torch import TorchClassifier
from mlwarden.models.zoo import digits_cnn


def _tabular(x: np.ndarray, y: np.ndarray, n_classes: int) -> Dataset:
    return Dataset(name="synthetic", x=x.astype(np.float32), y=y, n_classes=n_classes)


# -- label errors (confident learning) -------------------------------------------------------


def test_confident_learning_finds_random_label_flips_on_digits() -> None:
    train = load_builtin("digits").train
    flipped = LabelFlip(rate=0.1, seed=0).poison(train)
    flags = label_errors(flipped.dataset, seed=0)
    precision, recall = precision_recall(flags.flagged, flipped.mask)
    assert recall >= 0.8
    assert precision >= 0.7
    assert flags.details["estimated_noise_rate"] == pytest.approx(0.1, abs=0.03)


def test_the_confident_joint_matches_a_hand_count() -> None:
    labels = np.array([0, 0, 0, 1, 1, 2])
    proba = np.array(
        [
            [0.9, 0.05, 0.05],  # confidently 0
            [0.7, 0.2, 0.1],  # 0: reaches t0 = (0.9 + 0.7 + 0.1) / 3 ≈ 0.567
            [0.1, 0.85, 0.05],  # labelled 0, confidently 1
            [0.2, 0.8, 0.0],  # 1: t1 = (0.8 + 0.5) / 2 = 0.65
            [0.3, 0.5, 0.2],  # reaches no threshold (t2 = 0.6)
            [0.1, 0.3, 0.6],  # 2
        ]
    )
    expected = np.array([[2, 1, 0], [0, 1, 0], [0, 0, 1]])
    np.testing.assert_array_equal(confident_joint(labels, proba), expected)


def test_precision_and_recall_agree_with_sklearn() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        flagged, truth = rng.random(50) < 0.3, rng.random(50) < 0.2
        assert precision_recall(flagged, truth) == pytest.approx(
            (
                precision_score(truth, flagged, zero_division=0),
                recall_score(truth, flagged, zero_division=0),
            )
        )
    assert precision_recall(np.zeros(5, bool), np.zeros(5, bool)) == (0.0, 0.0)


# -- duplicates ------------------------------------------------------------------------------


def test_duplicates_finds_planted_exact_near_and_conflicting_copies() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((300, 20))
    y = rng.integers(0, 3, 300)
    x[10] = x[3]  # exact copy, same label
    y[10] = y[3]
    x[20] = x[5] + 0.001  # near copy, conflicting label
    y[20] = (y[5] + 1) % 3
    flags = find_duplicates(_tabular(x, y, 3), near_tolerance=0.01)
    groups = {tuple(g["indices"]): g for g in flags.details["groups"]}
    assert set(groups) == {(3, 10), (5, 20)}
    assert groups[(3, 10)]["exact"] and not groups[(3, 10)]["conflicting_labels"]
    assert groups[(5, 20)]["conflicting_labels"] and not groups[(5, 20)]["exact"]
    assert set(flags.indices.tolist()) == {10, 5, 20}  # the copy; both conflicting samples
    assert flags.scores[10] == 1.0


def test_duplicates_finds_nothing_in_a_duplicate_free_set() -> None:
    rng = np.random.default_rng(1)
    flags = find_duplicates(_tabular(rng.random((400, 20)), rng.integers(0, 2, 400), 2))
    assert not flags.flagged.any()
    assert flags.details["groups"] == []


# -- feature outliers ------------------------------------------------------------------------


def test_feature_outliers_flag_planted_far_points_only() -> None:
    rng = np.random.default_rng(0)
    x = np.clip(rng.normal(0.5, 0.05, size=(400, 5)), 0, 1)
    y = np.repeat([0, 1], 200)
    x[[7, 250]] = 0.99
    flags = feature_outliers(_tabular(x, y, 2))
    assert {7, 250} <= set(flags.indices.tolist())
    assert flags.flagged.sum() <= 10


# -- spectral signatures and activation clustering -------------------------------------------


def test_spectral_scores_are_squared_projections_on_the_top_eigenvector() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, 6))
    features[:20, 0] += 8.0  # a shifted sub-population: the spectral signature
    labels = np.zeros(200, dtype=np.int64)
    scores = SpectralSignatures.scores(features, labels)
    centred = features - features.mean(axis=0)
    _, vectors = np.linalg.eigh(centred.T @ centred)
    np.testing.assert_allclose(scores, (centred @ vectors[:, -1]) ** 2, rtol=1e-9)
    flags = SpectralSignatures(expected_rate=0.1, removal_factor=1.0).detect(features, labels)
    assert set(flags.indices.tolist()) == set(range(20))


def test_activation_clustering_flags_a_separated_minority_and_nothing_in_one_blob() -> None:
    rng = np.random.default_rng(0)
    one_blob = rng.normal(size=(300, 12))
    labels = np.repeat([0, 1], 150)
    two_blobs = one_blob.copy()
    two_blobs[:40] += 6.0  # class 0: 40 of 150 samples far away
    clustering = ActivationClustering(seed=0)
    flags = clustering.detect(two_blobs, labels)
    assert set(flags.indices.tolist()) == set(range(40))
    assert flags.details["poisoned_classes"] == [0]
    assert not clustering.detect(one_blob, labels).flagged.any()


def test_exclusionary_reclassification_clears_a_cluster_that_keeps_its_label() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(300, 12))
    features[:40] += 6.0
    labels = np.repeat([0, 1], 150)
    clustering = ActivationClustering(seed=0)
    kept = clustering.detect(features, labels, reclassify=lambda keep: labels.copy())
    assert not kept.flagged.any()  # a retrained model still calls them class 0: legitimate
    moved = clustering.detect(features, labels, reclassify=lambda keep: 1 - labels)
    assert set(moved.indices.tolist()) == set(range(40))


def test_activation_clustering_refuses_bad_settings() -> None:
    with pytest.raises(ConfigError, match="reduction"):
        ActivationClustering(reduction="tsne").detect(np.zeros((10, 3)), np.zeros(10, int))


# -- representations -------------------------------------------------------------------------


def test_features_of_a_sequential_are_the_input_of_its_first_linear_layer() -> None:
    torch.manual_seed(0)
    module = digits_cnn().eval()
    classifier = TorchClassifier(module, input_shape=(1, 8, 8), n_classes=10)
    x = np.random.default_rng(0).random((4, 1, 8, 8)).astype(np.float32)
    with torch.no_grad():
        expected = module[:6](torch.from_numpy(x)).double().numpy()
        penultimate = module[:8](torch.from_numpy(x)).double().numpy()
    np.testing.assert_allclose(hidden_activations(classifier, x), expected, rtol=1e-6)
    np.testing.assert_allclose(
        hidden_activations(classifier, x, layer="penultimate"), penultimate, rtol=1e-6
    )


class _Custom(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(5, 7)
        self.head = nn.Linear(7, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.body(x)))


def test_features_of_any_module_come_from_a_hook_on_its_linear_layers() -> None:
    torch.manual_seed(0)
    module = _Custom()
    classifier = TorchClassifier(module, input_shape=(5,), n_classes=3)
    x = np.random.default_rng(0).random((6, 5)).astype(np.float32)
    with torch.no_grad():
        hidden = torch.tanh(module.body(torch.from_numpy(x))).double().numpy()
    np.testing.assert_allclose(hidden_activations(classifier, x, layer="penultimate"), hidden)
    np.testing.assert_allclose(hidden_activations(classifier, x), x.astype(np.float64))


def test_features_of_the_exported_zoo_model_feed_its_dense_layers(
    digits_cnn: Classifier,
) -> None:
    x = np.random.default_rng(0).random((3, 1, 8, 8)).astype(np.float32)
    features = torch.from_numpy(hidden_activations(digits_cnn, x)).float()
    module = digits_cnn.module  # type: ignore[attr-defined]
    w6, b6 = module.get_parameter("6.weight"), module.get_parameter("6.bias")
    w8, b8 = module.get_parameter("8.weight"), module.get_parameter("8.bias")
    with torch.no_grad():
        logits = torch.relu(features @ w6.T + b6) @ w8.T + b8
        torch.testing.assert_close(logits, digits_cnn.logits(torch.from_numpy(x)))  # type: ignore[attr-defined]


class _Uniform(Classifier):
    def _predict_proba_batch(self, x: np.ndarray) -> np.ndarray:
        return np.full((len(x), self.n_classes), 1 / self.n_classes, dtype=np.float32)


def test_black_box_models_have_no_representations() -> None:
    with pytest.raises(ModelError, match="white-box"):
        hidden_activations(_Uniform(input_shape=(4,), n_classes=2), np.zeros((2, 4)))


# -- STRIP -----------------------------------------------------------------------------------


class _ConstantLogits(nn.Module):
    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = nn.Parameter(logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(len(x), -1) + 0 * x.flatten(1).sum(1, keepdim=True)


@pytest.mark.parametrize("probabilities", [[0.25, 0.25, 0.25, 0.25], [0.7, 0.1, 0.1, 0.1]])
def test_strip_score_is_minus_the_entropy_in_closed_form(probabilities: list[float]) -> None:
    p = np.array(probabilities)
    model = _ConstantLogits(torch.log(torch.tensor(p, dtype=torch.float32)))
    classifier = TorchClassifier(model, input_shape=(3,), n_classes=4)
    x = np.random.default_rng(0).random((30, 3)).astype(np.float32)
    scores = STRIP(classifier, n_overlays=5).fit(x).score(x[:7])
    np.testing.assert_allclose(scores, np.sum(p * np.log(p)), rtol=1e-5)


def test_strip_needs_enough_clean_inputs_for_its_overlays() -> None:
    classifier = _Uniform(input_shape=(3,), n_classes=2)
    with pytest.raises(Exception, match="n_overlays"):
        STRIP(classifier, n_overlays=10).fit(np.zeros((4, 3), dtype=np.float32))


# -- holdout validation ----------------------------------------------------------------------


class _Oracle(Classifier):
    """Knows the true class: it is written in the first feature."""

    def _predict_proba_batch(self, x: np.ndarray) -> np.ndarray:
        proba = np.full((len(x), self.n_classes), 0.01, dtype=np.float32)
        proba[np.arange(len(x)), np.round(x[:, 0] * 10).astype(int)] = 0.91
        return proba


def test_holdout_validation_flags_the_class_whose_labels_were_flipped() -> None:
    rng = np.random.default_rng(0)
    true = np.repeat(np.arange(10), 50)
    x = np.c_[true / 10, rng.random((500, 3))]
    clean = _tabular(x, true, 10)
    labels = true.copy()
    flipped = np.flatnonzero(true == 3)[:15]
    labels[flipped] = 4
    result = holdout_validation(
        _Oracle(input_shape=(4,), n_classes=10), _tabular(x, labels, 10), clean
    )
    assert result.flagged_classes == [4]  # 15 of its 65 training samples are 3s
    assert (
        holdout_validation(_Oracle(input_shape=(4,), n_classes=10), clean, clean).flagged_classes
        == []
    )
