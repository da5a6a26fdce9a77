"""Train many small models at once: parameters stacked along a leading model axis, one
``torch.vmap``-ed forward pass per step (``torch.func.stack_module_state``).

Adam updates every element independently, so one Adam over the stacked tensors is exactly one
Adam per model; the summed per-model mean losses give each model its own gradient.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, stack_module_state

from mlwarden.errors import AttackError

__all__ = ["StackedModels", "train_stacked"]


@dataclass
class StackedModels:
    """``K`` models of one architecture, their parameters stacked on dimension 0."""

    base: nn.Module
    params: dict[str, torch.Tensor]
    buffers: dict[str, torch.Tensor]

    @property
    def count(self) -> int:
        """Number of stacked models."""
        return int(next(iter(self.params.values())).shape[0])

    def _forward(self) -> Callable[..., torch.Tensor]:
        base = self.base

        def one(
            p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], x: torch.Tensor
        ) -> torch.Tensor:
            return functional_call(base, (p, b), (x,))

        return one

    def logits(self, x: torch.Tensor, *, batch_size: int = 1024) -> torch.Tensor:
        """Logits of every model for the same inputs ``x``: shape ``(K, n, n_classes)``."""
        forward = torch.vmap(self._forward(), in_dims=(0, 0, None))
        params = {k: v.detach() for k, v in self.params.items()}
        with torch.no_grad():
            parts = [
                forward(params, self.buffers, x[i : i + batch_size])
                for i in range(0, len(x), batch_size)
            ]
        return torch.cat(parts, dim=1)


def train_stacked(
    make_model: Callable[[], nn.Module],
    x: np.ndarray,
    y: np.ndarray,
    keep: np.ndarray,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    weight_decay: float = 0.0,
    seed: int = 0,
) -> StackedModels:
    """Train one model per row of ``keep`` (a ``(K, n)`` boolean mask) on its kept samples.

    Every row must keep the same number of samples. Models are initialised, shuffled and
    trained from ``seed`` only, with Adam and cross-entropy (mini-batches of ``batch_size``).

    Raises
    ------
    AttackError
        Rows keep different numbers of samples, or the architecture has batch-norm layers
        (their running statistics cannot be trained stacked).
    """
    keep = np.asarray(keep, dtype=bool)
    sizes = keep.sum(axis=1)
    if keep.ndim != 2 or keep.shape[1] != len(x) or len(set(sizes.tolist())) != 1 or sizes[0] == 0:
        raise AttackError(
            f"keep must be a (K, {len(x)}) mask keeping the same positive number of samples per "
            f"model, got shape {keep.shape} keeping {sorted(set(sizes.tolist()))}"
        )
    torch.manual_seed(seed)
    models = [make_model() for _ in range(len(keep))]
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in models[0].modules()):
        raise AttackError(
            "shadow models cannot contain BatchNorm layers; use GroupNorm or LayerNorm instead"
        )
    for model in models:
        model.train()
    params, buffers = stack_module_state(models)  # type: ignore[arg-type]
    base = copy.deepcopy(models[0]).to("meta")
    stacked = StackedModels(base=base, params=params, buffers=buffers)
    forward = torch.vmap(stacked._forward(), in_dims=(0, 0, 0))

    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
    rows = torch.from_numpy(np.stack([np.flatnonzero(r) for r in keep]))  # (K, m)
    n_models, per_model = rows.shape
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(list(params.values()), lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        order = torch.argsort(torch.rand(n_models, per_model, generator=generator), dim=1)
        shuffled = rows.gather(1, order)
        for start in range(0, per_model, batch_size):
            idx = shuffled[:, start : start + batch_size]
            logits = forward(params, buffers, xt[idx])
            loss = nn.functional.cross_entropy(logits.flatten(0, 1), yt[idx].flatten()) * n_models
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    stacked.base.eval()
    return stacked
