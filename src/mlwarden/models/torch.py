"""PyTorch adapter: a white-box :class:`~mlwarden.models.base.DifferentiableClassifier`."""

from __future__ import annotations

import torch

from mlwarden.models.base import DifferentiableClassifier

__all__ = ["TorchClassifier"]


class TorchClassifier(DifferentiableClassifier):
    """Wrap a PyTorch module that maps a batch of inputs to logits.

    The module is put in evaluation mode and its parameters are frozen: attacks need gradients
    with respect to inputs only, and skipping parameter gradients makes them cheaper.

    Parameters
    ----------
    module
        A ``torch.nn.Module`` (or a loaded ``torch.export`` / TorchScript module) returning
        logits of shape ``(n, n_classes)``.
    input_shape, n_classes, clip_range, batch_size
        See :class:`~mlwarden.models.base.Classifier`.
    device
        Where the module runs (``"cpu"`` by default).
    """

    def __init__(
        self,
        module: torch.nn.Module,
        *,
        input_shape: tuple[int, ...],
        n_classes: int,
        clip_range: tuple[float, float] = (0.0, 1.0),
        batch_size: int = 512,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__(
            input_shape=input_shape,
            n_classes=n_classes,
            clip_range=clip_range,
            batch_size=batch_size,
        )
        self.device = torch.device(device)
        self.module = module.to(self.device)
        _set_eval(self.module)
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the wrapped module for ``x``."""
        return self.module(x)


def _set_eval(module: torch.nn.Module) -> None:
    """Put a module in evaluation mode; exported graph modules refuse ``.eval()``."""
    try:
        module.eval()
    except (NotImplementedError, RuntimeError):
        # torch.export modules carry their mode in the graph and reject eval()/train().
        return
