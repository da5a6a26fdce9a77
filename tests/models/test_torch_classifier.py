"""TorchClassifier: probabilities from logits, batching, and input gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mlwarden.errors import DataError
from mlwarden.models import TorchClassifier

N_FEATURES, N_CLASSES = 4, 3


def wrap(module: nn.Module, batch_size: int = 512) -> TorchClassifier:
    return TorchClassifier(
        module, input_shape=(N_FEATURES,), n_classes=N_CLASSES, batch_size=batch_size
    )


def test_predict_proba_has_one_row_per_input_and_one_column_per_class(
    tiny_module: nn.Module, inputs: np.ndarray
) -> None:
    proba = wrap(tiny_module).predict_proba(inputs)

    assert proba.shape == (len(inputs), N_CLASSES)
    assert proba.dtype == np.float32


def test_predict_proba_rows_are_probability_distributions(
    tiny_module: nn.Module, inputs: np.ndarray
) -> None:
    proba = wrap(tiny_module).predict_proba(inputs)

    assert (proba >= 0).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)


def test_predict_proba_is_the_softmax_of_the_module_logits(
    tiny_module: nn.Module, inputs: np.ndarray
) -> None:
    with torch.no_grad():
        expected = torch.softmax(tiny_module(torch.from_numpy(inputs)), dim=1).numpy()

    np.testing.assert_allclose(wrap(tiny_module).predict_proba(inputs), expected, rtol=1e-6)


def test_small_batches_give_the_same_probabilities_as_one_batch(
    tiny_module: nn.Module, inputs: np.ndarray
) -> None:
    one_batch = wrap(tiny_module, batch_size=len(inputs)).predict_proba(inputs)
    uneven_batches = wrap(tiny_module, batch_size=3).predict_proba(inputs)

    np.testing.assert_allclose(uneven_batches, one_batch, rtol=1e-6)


def test_a_single_unbatched_input_is_accepted(tiny_module: nn.Module, inputs: np.ndarray) -> None:
    classifier = wrap(tiny_module)

    np.testing.assert_allclose(
        classifier.predict_proba(inputs[0]), classifier.predict_proba(inputs[:1]), rtol=1e-6
    )


def test_inputs_of_the_wrong_shape_are_refused_with_both_shapes_named(
    tiny_module: nn.Module,
) -> None:
    with pytest.raises(DataError, match=r"\(5,\).*\(4,\)"):
        wrap(tiny_module).predict_proba(np.zeros((2, 5), np.float32))


def test_loss_gradient_matches_a_finite_difference_estimate(tiny_module: nn.Module) -> None:
    classifier = wrap(tiny_module.double())
    x = torch.from_numpy(np.random.default_rng(1).random((2, N_FEATURES)))
    y = torch.tensor([0, 2])

    def loss(z: torch.Tensor) -> float:
        with torch.no_grad():
            logits = classifier.logits(z)
            return float(nn.functional.cross_entropy(logits, y, reduction="sum"))

    step = 1e-6
    numeric = torch.zeros_like(x)
    for index in np.ndindex(*x.shape):
        delta = torch.zeros_like(x)
        delta[index] = step
        numeric[index] = (loss(x + delta) - loss(x - delta)) / (2 * step)

    analytic = classifier.loss_gradient(x, y)

    torch.testing.assert_close(analytic, numeric, rtol=1e-5, atol=1e-8)


def test_loss_gradient_does_not_require_or_change_input_gradients(tiny_module: nn.Module) -> None:
    x = torch.rand(3, N_FEATURES)

    grad = wrap(tiny_module).loss_gradient(x, torch.tensor([0, 1, 2]))

    assert grad.shape == x.shape
    assert not x.requires_grad
