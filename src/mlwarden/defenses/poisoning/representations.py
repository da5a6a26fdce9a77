"""Hidden-layer activations of a PyTorch classifier: the representations poison detectors use.

Spectral signatures and activation clustering look at a trained model's internal
representation of each training sample. Two layers can be read, both defined by the model's
linear layers so that any architecture has them:

* ``"features"`` (the default for poisoning detection): the input of the *first* linear layer,
  i.e. the output of the convolutional feature extractor of a CNN (``zoo:digits-cnn``: the
  512 pooled conv activations). Tran, Li and Mądry (2018) read a late convolutional layer too;
  on the digits CNN this is where a BadNets patch separates cleanly (measured in
  ``docs/benchmarks.md``);
* ``"penultimate"``: the input of the *last* linear layer (the 64 hidden units of the digits
  CNN), the layer Chen et al. (2018) cluster.

How the layer is found, in order:

1. ``nn.Sequential``: the prefix before the first (or last) ``nn.Linear`` (searched at the top
   level; ``nn.Flatten`` before it is kept);
2. a ``torch.export`` (``.pt2``) fx graph module: the graph is cut at the input of its first
   (last) ``aten.linear`` call, which becomes the output — this covers ``zoo:`` models loaded
   from disk;
3. any other ``nn.Module``: a forward pre-hook on the first (last) *registered* ``nn.Linear``
   submodule records its input during an ordinary forward pass. Define layers in ``__init__``
   in the order they run, or wrap the model in ``nn.Sequential``.

Black-box models have no representations: the model-free detectors in
:mod:`mlwarden.defenses.poisoning.statistics` apply to them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import torch
from torch import nn

from mlwarden.defenses.detectors.features import cut_before_linear
from mlwarden.errors import ConfigError, ModelError
from mlwarden.models.base import Classifier, DifferentiableClassifier

__all__ = ["LAYERS", "Layer", "hidden_activations", "representation_function"]

Layer = Literal["features", "penultimate"]
LAYERS: tuple[str, ...] = ("features", "penultimate")


def representation_function(
    classifier: Classifier, layer: Layer = "features"
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function mapping a batch to the activations of ``layer``, flattened to ``(n, d)``.

    Raises
    ------
    ConfigError
        ``layer`` is not one of :data:`LAYERS`.
    ModelError
        The model is black-box, or has no linear layer to read.
    """
    if layer not in LAYERS:
        raise ConfigError(f"layer must be one of {', '.join(LAYERS)}, got {layer!r}")
    if not isinstance(classifier, DifferentiableClassifier):
        raise ModelError(
            "representation-based poison detectors need a white-box PyTorch model; use the "
            "model-free dataset statistics for black-box models"
        )
    first = layer == "features"
    module = getattr(classifier, "module", None)
    if isinstance(module, nn.Sequential):
        positions = [i for i, m in enumerate(module) if isinstance(m, nn.Linear)]
        if positions:
            body = module[: positions[0] if first else positions[-1]]
            return lambda x: body(x).flatten(1)
    graph = getattr(module, "graph", None)
    if isinstance(module, torch.fx.GraphModule) and isinstance(graph, torch.fx.Graph):
        cut = cut_before_linear(module, which="first" if first else "last")
        return lambda x: cut(x).flatten(1)
    if isinstance(module, nn.Module):
        return _hooked(module, first=first)
    raise ModelError(f"cannot read the hidden layers of a {type(module).__name__}")


def _hooked(module: nn.Module, *, first: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ModelError(
            f"a {type(module).__name__} has no nn.Linear layer to read activations before; use "
            "the model-free dataset statistics"
        )
    chosen = linears[0] if first else linears[-1]

    def features(x: torch.Tensor) -> torch.Tensor:
        captured: list[torch.Tensor] = []

        def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            captured.append(inputs[0])

        handle = chosen.register_forward_pre_hook(hook)
        try:
            module(x)
        finally:
            handle.remove()
        if not captured:
            raise ModelError("the model's chosen nn.Linear layer was not called in forward()")
        return captured[0 if first else -1].flatten(1)

    return features


def hidden_activations(
    classifier: Classifier, x: np.ndarray, *, layer: Layer = "features", batch_size: int = 512
) -> np.ndarray:
    """Activations of ``layer`` for ``x``, shape ``(n, d)``, float64, computed in batches."""
    features = representation_function(classifier, layer)
    x = classifier.check_inputs(x)
    device = getattr(classifier, "device", torch.device("cpu"))
    parts = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size]))
            parts.append(features(batch.to(device)).double().cpu().numpy())
    if not parts:
        raise ModelError("no inputs to compute activations for")
    return np.concatenate(parts)
