"""Small seeded text data and models shared by the text tests (trained once per session)."""

from __future__ import annotations

import numpy as np
import pytest

from mlwarden.data.text import TextDataset, load_text_builtin
from mlwarden.models import Classifier, SklearnClassifier
from mlwarden.models.text import (
    SklearnTextClassifier,
    TorchTextClassifier,
    fit_embedding_bag,
    fit_tfidf_logreg,
)


@pytest.fixture(scope="session")
def speeches() -> tuple[TextDataset, TextDataset]:
    """The convention-speech paragraphs: (train, test)."""
    return load_text_builtin("convention-speeches")


@pytest.fixture(scope="session")
def tfidf_model(speeches: tuple[TextDataset, TextDataset]) -> SklearnTextClassifier:
    train, _ = speeches
    return fit_tfidf_logreg(train.texts, train.y)


@pytest.fixture(scope="session")
def embedding_model(speeches: tuple[TextDataset, TextDataset]) -> TorchTextClassifier:
    train, _ = speeches
    return fit_embedding_bag(train.texts, train.y, seed=0)


@pytest.fixture(scope="session")
def speech_sample(speeches: tuple[TextDataset, TextDataset]) -> TextDataset:
    """Twelve test paragraphs of both parties (fixed), for the attack tests."""
    _, test = speeches
    return test.subset(np.linspace(0, len(test) - 1, 12).astype(np.int64))


@pytest.fixture
def tiny_tensor_classifier() -> Classifier:
    """A fitted scikit-learn model over 4 numeric features: not a text model."""
    from sklearn.linear_model import LogisticRegression

    x = np.random.default_rng(0).random((20, 4)).astype(np.float32)
    y = (x[:, 0] > 0.5).astype(np.int64)
    return SklearnClassifier(LogisticRegression().fit(x, y), input_shape=(4,))
