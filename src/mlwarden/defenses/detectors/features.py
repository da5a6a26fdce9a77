"""Penultimate-layer features of a PyTorch classifier, for feature-space detectors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from mlwarden.errors import ModelError
from mlwarden.models.base import Classifier, DifferentiableClassifier

__all__ = ["cut_before_linear", "penultimate_features"]


def penultimate_features(classifier: Classifier) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function mapping inputs to the activations that feed the model's last linear layer.

    * an ``nn.Sequential`` ending in its classifier layer: ``module[:-1]``;
    * a ``torch.export`` (fx) graph module: the graph is cut at the input of its last
      ``aten.linear`` call, which becomes the output.

    Raises
    ------
    ModelError
        The model is black-box, or no final linear layer can be found.
    """
    if not isinstance(classifier, DifferentiableClassifier):
        raise ModelError(
            "penultimate features need a white-box PyTorch model; use the knn detector for "
            "black-box models"
        )
    module = getattr(classifier, "module", None)
    if isinstance(module, nn.Sequential) and len(module) > 1:
        body = module[:-1]
        return lambda x: body(x).flatten(1)
    graph = getattr(module, "graph", None)
    if isinstance(module, torch.fx.GraphModule) and isinstance(graph, torch.fx.Graph):
        cut = _cut_before_last_linear(module)
        return lambda x: cut(x).flatten(1)
    raise ModelError(
        f"cannot find the penultimate layer of a {type(module).__name__}; export the model with "
        "torch.export (.pt2) or wrap it in nn.Sequential, or use the knn detector"
    )


def _cut_before_last_linear(module: torch.fx.GraphModule) -> torch.fx.GraphModule:
    return cut_before_linear(module, which="last")


_LINEAR_TARGETS = (torch.ops.aten.linear.default, torch.nn.functional.linear)


def cut_before_linear(
    module: torch.fx.GraphModule, *, which: Literal["first", "last"] = "last"
) -> torch.fx.GraphModule:
    """A copy of an exported graph that ends at the input of its first or last linear layer.

    The nodes up to that ``aten.linear`` call are copied into a new graph whose output is the
    linear layer's input: the activations a feature-space detector reads.

    Raises
    ------
    ModelError
        The graph has no linear layer, or the chosen one's input is not computed in it.
    """
    nodes = list(module.graph.nodes)
    linears = [n for n in nodes if n.op == "call_function" and n.target in _LINEAR_TARGETS]
    if not linears:
        raise ModelError(f"the exported model has no linear layer to cut before ({which})")
    chosen = linears[0] if which == "first" else linears[-1]
    feature_node = chosen.args[0]
    graph = torch.fx.Graph()
    env: dict[torch.fx.Node, torch.fx.Node] = {}
    for node in nodes:
        if node is chosen:
            break
        if node.op == "output":
            continue
        env[node] = graph.node_copy(node, lambda n: env[n])
    if not isinstance(feature_node, torch.fx.Node) or feature_node not in env:
        raise ModelError(f"the {which} linear layer's input is not computed inside the graph")
    graph.output(env[feature_node])
    return torch.fx.GraphModule(module, graph)
