"""BPDA: exact forward values, straight-through gradients, and attacks that get through rounding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlwarden.attacks import APGD
from mlwarden.attacks.evasion.bpda import (
    BPDAClassifier,
    StraightThrough,
    piecewise_constant_ops_used,
)
from mlwarden.attacks.evasion.gradient_descent import classification_objective
from mlwarden.models import TorchClassifier


class Quantized(torch.nn.Module):
    """Inputs rounded to 4 bits before the network: gradients are zero almost everywhere."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(torch.round(x * 15) / 15)


@pytest.mark.parametrize("op", [torch.round, torch.floor, torch.ceil, torch.trunc, torch.sign])
def test_straight_through_keeps_the_value_and_passes_the_gradient(op) -> None:
    x = torch.linspace(-2.3, 2.7, 11, requires_grad=True)
    with StraightThrough() as mode:
        y = op(x * 3)
    assert torch.equal(y.detach(), op(x.detach() * 3))
    (grad,) = torch.autograd.grad(y.sum(), x)
    assert torch.allclose(grad, torch.full_like(grad, 3.0))  # d(3x)/dx through the identity
    assert mode.seen == {op.__name__}


def test_a_user_approximation_replaces_the_backward_only() -> None:
    x = torch.tensor([0.2, 0.7], requires_grad=True)
    with StraightThrough({"round": lambda t: t**2}):
        y = torch.round(x)
    assert y.tolist() == [0.0, 1.0]
    (grad,) = torch.autograd.grad(y.sum(), x)
    assert torch.allclose(grad, 2 * x.detach())


def test_the_ops_a_model_uses_are_found_in_eager_and_exported_modules(digits_cnn) -> None:
    x = np.random.default_rng(0).random((2, *digits_cnn.input_shape), dtype=np.float32)
    assert piecewise_constant_ops_used(digits_cnn, x) == set()
    quantized = TorchClassifier(
        Quantized(digits_cnn.module), input_shape=digits_cnn.input_shape, n_classes=10
    )
    assert piecewise_constant_ops_used(quantized, x) == {"round"}
    exported = torch.export.export(Quantized(digits_cnn.module), (torch.from_numpy(x),)).module()
    graph = TorchClassifier(exported, input_shape=digits_cnn.input_shape, n_classes=10)
    assert piecewise_constant_ops_used(graph, x) == {"round"}


def test_bpda_breaks_a_rounding_defence_that_stops_plain_gradient_attacks(
    digits_cnn, digits_subset
) -> None:
    x, y = digits_subset.x[:100], digits_subset.y[:100]
    quantized = TorchClassifier(
        Quantized(digits_cnn.module), input_shape=digits_cnn.input_shape, n_classes=10
    )
    clean = float((quantized.predict(x) == y).mean())
    blind = APGD(eps=0.15, steps=20).generate(quantized, x, y)
    through = APGD(eps=0.15, steps=20).generate(BPDAClassifier(quantized), x, y)
    assert blind.robust_accuracy(y) >= clean - 0.05  # zero gradients: the attack is blind
    assert through.robust_accuracy(y) <= clean - 0.5
    # and BPDA's adversarial examples are scored on the real (rounding) model
    assert np.array_equal(through.predictions, quantized.predict(through.x_adv))


def test_eot_counts_a_success_only_when_every_draw_is_fooled() -> None:
    # one draw per call, the same for every row of the call (EOTDraws' first call checks that
    # and then calls once per draw): fooled on one draw, not on the other
    draws = iter([torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 0.0]])] * 3)
    objective = classification_objective(
        lambda x: next(draws).expand(len(x), 2),
        torch.tensor([0]),
        targeted=False,
        loss="ce",
        eot_samples=2,
    )
    _, hit = objective(torch.zeros(1, 1), torch.arange(1))
    assert hit.tolist() == [False]
