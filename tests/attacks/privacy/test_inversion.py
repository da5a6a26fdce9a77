"""MI-Face model inversion recovers class means from a trained model, not from an untrained one."""

from __future__ import annotations

import numpy as np
import pytest

from mlwarden.attacks.privacy import MIFace, class_similarity
from mlwarden.data import Dataset
from mlwarden.errors import AttackError
from mlwarden.models import TorchClassifier

from .conftest import Target, mlp, wrap


@pytest.fixture(scope="module")
def digits_model(overfit_target: Target) -> tuple[TorchClassifier, Dataset]:
    """The overfit MLP and its 200 training digits."""
    return overfit_target.classifier, overfit_target.members


def test_class_similarity_is_cosine_and_pearson() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.random((3, 1, 4, 4)), rng.random((3, 1, 4, 4))
    cosine, correlation = class_similarity(a, b)
    fa, fb = a.reshape(3, -1), b.reshape(3, -1)
    assert cosine[1, 2] == pytest.approx(
        fa[1] @ fb[2] / np.linalg.norm(fa[1]) / np.linalg.norm(fb[2])
    )
    assert correlation[2, 0] == pytest.approx(np.corrcoef(fa[2], fb[0])[0, 1])


def test_inversion_recovers_most_class_means(digits_model: tuple[TorchClassifier, Dataset]) -> None:
    classifier, train = digits_model
    result = MIFace(steps=200).run(classifier, train)
    assert result.reconstructions.shape == (10, 1, 8, 8)
    low, high = classifier.clip_range
    assert result.reconstructions.min() >= low and result.reconstructions.max() <= high
    assert result.recovery_rate >= 0.6  # chance: 0.1
    metrics = result.metrics()
    assert metrics["inversion_own_correlation"] > metrics["inversion_other_correlation"] + 0.15
    assert metrics["inversion_confidence"] > 0.9


def test_an_untrained_model_reveals_nothing(digits_model: tuple[TorchClassifier, Dataset]) -> None:
    _, train = digits_model
    import torch

    torch.manual_seed(0)
    result = MIFace(steps=200).run(wrap(mlp()), train)
    assert result.recovery_rate <= 0.4


def test_inversion_is_deterministic(digits_model: tuple[TorchClassifier, Dataset]) -> None:
    classifier, _ = digits_model
    first = MIFace(steps=20).invert(classifier)
    np.testing.assert_array_equal(first, MIFace(steps=20).invert(classifier))


def test_inversion_refuses_bad_settings(digits_model: tuple[TorchClassifier, Dataset]) -> None:
    classifier, train = digits_model
    with pytest.raises(AttackError, match="steps"):
        MIFace(steps=0).run(classifier, train)
    with pytest.raises(AttackError, match="classes"):
        MIFace().run(classifier, train.subset(np.flatnonzero(train.y < 5)))
