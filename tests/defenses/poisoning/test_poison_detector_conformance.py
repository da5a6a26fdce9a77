"""Every registered poisoned-data detector keeps the PoisonDetector contract."""

from __future__ import annotations

import numpy as np
import pytest

from mlwarden.defenses.poisoning import POISON_DETECTORS, PoisonDetector, SampleFlags
from mlwarden.errors import DataError


def _features() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 40)
    features = rng.normal(size=(len(labels), 12)) + labels[:, None]
    features[:6] += 8.0  # a tight, far group inside class 0
    return features, labels


def test_the_registry_lists_the_representation_detectors() -> None:
    assert POISON_DETECTORS.names() == ["activation-clustering", "spectral-signatures"]


@pytest.mark.parametrize("name", POISON_DETECTORS.names())
def test_detect_returns_one_score_and_flag_per_sample(name: str) -> None:
    detector = POISON_DETECTORS.get(name)()
    assert isinstance(detector, PoisonDetector)
    features, labels = _features()
    flags = detector.detect(features, labels)
    assert isinstance(flags, SampleFlags)
    assert flags.detector == name == detector.name
    assert flags.scores.shape == flags.flagged.shape == (len(labels),)
    assert flags.flagged.dtype == bool


@pytest.mark.parametrize("name", POISON_DETECTORS.names())
def test_get_params_rebuilds_an_equal_detector(name: str) -> None:
    cls = POISON_DETECTORS.get(name)
    params = cls().get_params()
    assert cls(**params).get_params() == params


@pytest.mark.parametrize("name", POISON_DETECTORS.names())
def test_features_without_one_row_per_label_are_refused(name: str) -> None:
    features, labels = _features()
    with pytest.raises(DataError, match="one label each"):
        POISON_DETECTORS.get(name)().detect(features[:-1], labels)
