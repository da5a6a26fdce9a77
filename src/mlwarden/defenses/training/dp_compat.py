"""Which models Opacus can DP-train, and converting those it can fix (BatchNorm → GroupNorm).

Per-sample gradients, which DP-SGD clips, are undefined for layers that mix the samples of a
batch (BatchNorm) and unavailable for graphs whose layers are gone (``torch.export``,
TorchScript). :func:`make_dp_compatible` converts what ``opacus.validators.ModuleValidator`` can
fix, in a copy; :func:`check_dp_compatible` only checks, naming each layer it refuses.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from mlwarden.errors import ModelError

__all__ = ["check_dp_compatible", "make_dp_compatible"]


def make_dp_compatible(module: nn.Module) -> tuple[nn.Module, list[str]]:
    """``module`` made trainable by Opacus, and the names of the layers that were replaced.

    Uses ``opacus.validators.ModuleValidator``: layers it can fix (BatchNorm → GroupNorm,
    InstanceNorm running statistics) are replaced in a copy; anything left that Opacus cannot
    compute per-sample gradients for is refused.

    Raises
    ------
    ModelError
        The module is a ``torch.export`` / TorchScript graph (its layers are gone, so Opacus
        cannot hook them), or a layer cannot be fixed; the message names the layer.
    """
    from opacus.validators import ModuleValidator

    _refuse_graphs(module)
    before = {name: type(sub).__name__ for name, sub in module.named_modules()}
    errors = _layer_errors(module)
    if not errors:
        return module, []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fixed = ModuleValidator.fix(module)
    remaining = _layer_errors(fixed)
    if remaining:
        detail = "; ".join(f"layer {name!r}: {reason}" for name, reason in remaining)
        raise ModelError(
            f"Opacus cannot train this model with differential privacy: {detail}. Replace "
            "those layers (e.g. BatchNorm → GroupNorm, LSTM → opacus.layers.DPLSTM)"
        )
    after = {name: type(sub).__name__ for name, sub in fixed.named_modules()}
    converted = [
        f"{name or '<root>'}: {kind} -> {after.get(name, '?')}"
        for name, kind in before.items()
        if after.get(name) != kind
    ]
    return fixed, converted


def _refuse_graphs(module: nn.Module) -> None:
    if isinstance(module, torch.jit.ScriptModule | torch.fx.GraphModule):
        raise ModelError(
            f"a {type(module).__name__} (exported or scripted graph) has no layers Opacus can "
            "hook for per-sample gradients; DP-train an nn.Module architecture instead "
            "(--model zoo:NAME trains that zoo model's architecture from scratch)"
        )


def _layer_errors(module: nn.Module) -> list[tuple[str, str]]:
    """``(layer name, Opacus's reason)`` for every leaf layer Opacus's validators reject."""
    from opacus.validators import ModuleValidator

    errors: list[tuple[str, str]] = []
    for name, sub in module.named_modules():
        if any(True for _ in sub.children()):
            continue
        for error in ModuleValidator.validate(sub, strict=False):
            errors.append((name or "<root>", str(error).strip().splitlines()[0]))
    return errors


def check_dp_compatible(module: nn.Module) -> None:
    """Raise :class:`ModelError` naming each layer Opacus cannot train (nothing is converted).

    Raises
    ------
    ModelError
        An exported or scripted graph, or a layer Opacus's validators reject.
    """
    _refuse_graphs(module)
    errors = _layer_errors(module)
    if errors:
        detail = "; ".join(f"layer {name!r}: {reason}" for name, reason in errors)
        raise ModelError(
            f"Opacus cannot train this model with differential privacy: {detail}. Convert it "
            "with make_dp_compatible(module) before building the optimizer, or replace those "
            "layers (e.g. BatchNorm → GroupNorm, LSTM → opacus.layers.DPLSTM)"
        )
