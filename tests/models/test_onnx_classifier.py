"""OnnxClassifier: ONNX Runtime output agrees with the same computation in NumPy."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mlwarden.errors import ModelError

pytest.importorskip("onnxruntime")

from mlwarden.models.onnx import OnnxClassifier

RNG = np.random.default_rng(0)
WEIGHT = RNG.normal(size=(4, 3)).astype(np.float32)
BIAS = RNG.normal(size=3).astype(np.float32)


def numpy_softmax_linear(x: np.ndarray) -> np.ndarray:
    logits = x.astype(np.float64) @ WEIGHT + BIAS
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


@pytest.fixture
def x() -> np.ndarray:
    return np.random.default_rng(1).random((9, 4), dtype=np.float32)


@pytest.mark.parametrize("softmax", [True, False], ids=["probabilities", "logits"])
def test_output_matches_numpy_softmax_of_the_linear_layer(
    onnx_linear: Callable[..., Path], x: np.ndarray, softmax: bool
) -> None:
    classifier = OnnxClassifier(
        onnx_linear(WEIGHT, BIAS, softmax=softmax), input_shape=(4,), n_classes=3
    )

    np.testing.assert_allclose(classifier.predict_proba(x), numpy_softmax_linear(x), atol=1e-5)


def test_declared_logits_get_a_softmax_even_when_they_look_like_probabilities(
    onnx_linear: Callable[..., Path],
) -> None:
    # Logits (0.2, 0.3, 0.5) are non-negative and sum to one; "auto" would take them as they are.
    path = onnx_linear(np.zeros((4, 3)), np.array([0.2, 0.3, 0.5]), softmax=False)
    x = np.zeros((1, 4), np.float32)

    auto = OnnxClassifier(path, input_shape=(4,), n_classes=3).predict_proba(x)
    logits = OnnxClassifier(path, input_shape=(4,), n_classes=3, output="logits").predict_proba(x)

    np.testing.assert_allclose(auto, [[0.2, 0.3, 0.5]], atol=1e-6)
    expected = np.exp([0.2, 0.3, 0.5]) / np.exp([0.2, 0.3, 0.5]).sum()
    np.testing.assert_allclose(logits, [expected], atol=1e-6)


def test_batches_give_the_same_result_as_one_batch(
    onnx_linear: Callable[..., Path], x: np.ndarray
) -> None:
    path = onnx_linear(WEIGHT, BIAS, softmax=True)

    one = OnnxClassifier(path, input_shape=(4,), n_classes=3).predict_proba(x)
    many = OnnxClassifier(path, input_shape=(4,), n_classes=3, batch_size=2).predict_proba(x)

    np.testing.assert_allclose(many, one, atol=1e-7)


def test_an_unknown_output_kind_is_refused(onnx_linear: Callable[..., Path]) -> None:
    path = onnx_linear(WEIGHT, BIAS, softmax=True)

    with pytest.raises(ModelError, match="output must be auto, logits or probabilities"):
        OnnxClassifier(path, input_shape=(4,), n_classes=3, output="scores")  # type: ignore[arg-type]


def test_a_file_that_is_not_onnx_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "garbage.onnx"
    path.write_bytes(b"not a protobuf")

    with pytest.raises(ModelError, match=r"garbage\.onnx: not a valid ONNX model"):
        OnnxClassifier(path, input_shape=(4,), n_classes=3)


def test_inputs_the_graph_cannot_take_raise_model_error(onnx_linear: Callable[..., Path]) -> None:
    # The graph multiplies by a 4x3 matrix; an input_shape of (5,) passes the adapter's own check.
    classifier = OnnxClassifier(
        onnx_linear(WEIGHT, BIAS, softmax=True), input_shape=(5,), n_classes=3
    )

    with pytest.raises(ModelError, match="ONNX Runtime could not run"):
        classifier.predict_proba(np.zeros((2, 5), np.float32))
