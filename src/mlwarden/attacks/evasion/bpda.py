"""BPDA: attack through non-differentiable steps with a differentiable stand-in for the backward.

Backward Pass Differentiable Approximation (Athalye, Carlini & Wagner, ICML 2018): a defence
that rounds, quantizes or thresholds its input has a gradient that is zero almost everywhere, so
gradient attacks stall although the model is no more robust. BPDA keeps the forward pass exact
and replaces the backward pass of each such step with the gradient of an approximation: the
identity (the straight-through estimator) when the step is close to ``x ↦ x``, or a
user-supplied differentiable function.

:class:`StraightThrough` does this for the piecewise-constant tensor operations PyTorch models use
(round, floor, ceil, trunc, sign), wherever they are called from: an eager module, a TorchScript-free
``torch.export`` graph, or preprocessing inside ``forward``. :class:`BPDAClassifier` wraps a
differentiable classifier so that attacks see those gradients; its predictions are the wrapped
model's, so every adversarial example an attack returns is scored on the real model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from mlwarden.models.base import DifferentiableClassifier

__all__ = [
    "PIECEWISE_CONSTANT_OPS",
    "BPDAClassifier",
    "StraightThrough",
    "piecewise_constant_ops_used",
]

PIECEWISE_CONSTANT_OPS: dict[str, tuple[Any, ...]] = {
    "round": (torch.round, torch.Tensor.round, torch.ops.aten.round.default),
    "floor": (torch.floor, torch.Tensor.floor, torch.ops.aten.floor.default),
    "ceil": (torch.ceil, torch.Tensor.ceil, torch.ops.aten.ceil.default),
    "trunc": (torch.trunc, torch.Tensor.trunc, torch.ops.aten.trunc.default),
    "sign": (torch.sign, torch.Tensor.sign, torch.ops.aten.sign.default),
}
"""Operations whose gradient is zero almost everywhere, by name: their eager, method and
``torch.export`` (aten) spellings."""

_BY_FUNCTION = {func: name for name, funcs in PIECEWISE_CONSTANT_OPS.items() for func in funcs}

Approximation = Callable[[torch.Tensor], torch.Tensor]


class StraightThrough(TorchFunctionMode):
    """A torch function mode in which piecewise-constant ops keep their value, not their gradient.

    Inside the mode, ``y = op(x)`` is computed as ``g(x) + (op(x) - g(x)).detach()``: the value
    is exactly ``op(x)`` and the gradient is that of ``g``, the identity unless ``approximations``
    maps the op's name (``"round"``, ``"floor"``, …) to a differentiable function.

    Attributes
    ----------
    seen
        Names of the piecewise-constant ops called inside the mode so far.
    """

    def __init__(self, approximations: Mapping[str, Approximation] | None = None) -> None:
        super().__init__()
        self.approximations = dict(approximations or {})
        self.seen: set[str] = set()

    def __torch_function__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        name = _BY_FUNCTION.get(func)
        if name is None:
            return func(*args, **kwargs)
        self.seen.add(name)
        x = args[0]
        with torch._C.DisableTorchFunction():
            value = func(*args, **kwargs)
            if not (isinstance(x, torch.Tensor) and x.is_floating_point()):
                return value
            approximation = self.approximations.get(name)
            surrogate = approximation(x) if approximation is not None else x
            return surrogate + (value - surrogate).detach()


def piecewise_constant_ops_used(classifier: DifferentiableClassifier, x: np.ndarray) -> set[str]:
    """Names of the piecewise-constant ops the model's forward pass calls on ``x``."""
    mode = StraightThrough()
    with torch.no_grad(), mode:
        classifier.logits(torch.from_numpy(np.ascontiguousarray(x[:2], dtype=np.float32)))
    return mode.seen


class BPDAClassifier(DifferentiableClassifier):
    """The view of ``classifier`` that gradient attacks should attack: BPDA gradients, exact outputs.

    ``logits`` runs the wrapped model under :class:`StraightThrough`, so gradients pass through
    rounding and other piecewise-constant steps; ``predict_proba`` is the wrapped model's own.

    Parameters
    ----------
    classifier
        The differentiable classifier to attack.
    approximations
        Optional differentiable stand-ins by op name (default: the identity for every op).
    """

    def __init__(
        self,
        classifier: DifferentiableClassifier,
        *,
        approximations: Mapping[str, Approximation] | None = None,
    ) -> None:
        super().__init__(
            input_shape=classifier.input_shape,
            n_classes=classifier.n_classes,
            clip_range=classifier.clip_range,
            batch_size=classifier.batch_size,
        )
        self.inner = classifier
        self.approximations = dict(approximations or {})
        self.device = getattr(classifier, "device", torch.device("cpu"))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        with StraightThrough(self.approximations):
            return self.inner.logits(x)

    def _predict_proba_batch(self, x: np.ndarray) -> np.ndarray:
        return self.inner.predict_proba(x)
