"""SklearnClassifier: column order by label, flattened inputs, refusal of unusable estimators."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.svm import SVC, LinearSVC

from mlwarden.errors import ModelError
from mlwarden.models import SklearnClassifier


@pytest.fixture
def features() -> np.ndarray:
    return np.random.default_rng(0).random((60, 4), dtype=np.float32)


def test_probabilities_match_the_estimator_when_it_saw_every_label(features: np.ndarray) -> None:
    labels = np.arange(len(features)) % 3
    estimator = LogisticRegression().fit(features, labels)

    proba = SklearnClassifier(estimator, input_shape=(4,)).predict_proba(features)

    np.testing.assert_allclose(proba, estimator.predict_proba(features), rtol=1e-6)


def test_columns_follow_label_values_when_the_estimator_saw_a_subset(
    features: np.ndarray,
) -> None:
    labels = np.where(np.arange(len(features)) % 2 == 0, 0, 2)
    estimator = LogisticRegression().fit(features, labels)
    assert list(estimator.classes_) == [0, 2]

    proba = SklearnClassifier(estimator, input_shape=(4,), n_classes=3).predict_proba(features)

    raw = estimator.predict_proba(features)
    assert proba.shape == (len(features), 3)
    np.testing.assert_allclose(proba[:, 0], raw[:, 0], rtol=1e-6)
    np.testing.assert_array_equal(proba[:, 1], 0.0)
    np.testing.assert_allclose(proba[:, 2], raw[:, 1], rtol=1e-6)


def test_n_classes_defaults_to_the_largest_label_plus_one(features: np.ndarray) -> None:
    labels = np.where(np.arange(len(features)) % 2 == 0, 0, 2)
    estimator = LogisticRegression().fit(features, labels)

    assert SklearnClassifier(estimator, input_shape=(4,)).n_classes == 3


def test_image_shaped_inputs_are_flattened_for_the_estimator(features: np.ndarray) -> None:
    labels = np.arange(len(features)) % 2
    estimator = LogisticRegression().fit(features, labels)
    images = features.reshape(-1, 1, 2, 2)

    proba = SklearnClassifier(estimator, input_shape=(1, 2, 2)).predict_proba(images)

    np.testing.assert_allclose(proba, estimator.predict_proba(features), rtol=1e-6)


@pytest.mark.parametrize("estimator", [LinearSVC(), SVC()], ids=["LinearSVC", "SVC"])
def test_an_estimator_without_predict_proba_is_refused_with_a_remedy(
    estimator: object, features: np.ndarray
) -> None:
    estimator.fit(features, np.arange(len(features)) % 2)  # type: ignore[attr-defined]

    with pytest.raises(ModelError, match=r"no predict_proba.*probability=True"):
        SklearnClassifier(estimator, input_shape=(4,))


def test_an_unfitted_estimator_is_refused() -> None:
    with pytest.raises(ModelError, match="LogisticRegression is not fitted"):
        SklearnClassifier(LogisticRegression(), input_shape=(4,))


def test_string_labels_are_refused(features: np.ndarray) -> None:
    labels = np.where(np.arange(len(features)) % 2 == 0, "cat", "dog")
    estimator = LogisticRegression().fit(features, labels)

    with pytest.raises(ModelError, match="non-negative integer labels"):
        SklearnClassifier(estimator, input_shape=(4,))


def test_n_classes_smaller_than_the_estimator_labels_is_refused(features: np.ndarray) -> None:
    estimator = LogisticRegression().fit(features, np.arange(len(features)) % 3)

    with pytest.raises(ModelError, match="label 2 >= n_classes=2"):
        SklearnClassifier(estimator, input_shape=(4,), n_classes=2)
