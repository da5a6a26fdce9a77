"""PyTorch adapter: a white-box :class:`~mlwarden.models.base.DifferentiableClassifier`."""

from __future__ import annotations

import copy
import warnings

import torch

from mlwarden.models.base import DifferentiableClassifier

__all__ = ["TorchClassifier", "frozen_view", "set_eval"]


class TorchClassifier(DifferentiableClassifier):
    """Wrap a PyTorch module that maps a batch of inputs to logits.

    The caller's module is never changed: its mode, its parameters' ``requires_grad`` flags and
    its device stay as they were. When it is in training mode, has trainable parameters or lives
    on another device, the classifier runs a :func:`frozen_view` of it instead (evaluation
    mode, parameters that share the module's weights but take no gradients), so attacks get
    gradients with respect to inputs only, which is cheaper, and never touch ``.grad`` of the
    caller's parameters.

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
        self.module = module
        self._inference = module if _is_frozen(module, self.device) else frozen_view(module)
        self._inference = self._inference.to(self.device)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the wrapped module for ``x`` (evaluation mode, no parameter gradients)."""
        return self._inference(x)


def set_eval(module: torch.nn.Module) -> None:
    """Put a module in evaluation mode; exported graph modules refuse ``.eval()``."""
    try:
        module.eval()
    except (NotImplementedError, RuntimeError):
        # torch.export modules carry their mode in the graph and reject eval()/train().
        return


def _is_frozen(module: torch.nn.Module, device: torch.device) -> bool:
    """Whether ``module`` can be run as it is: evaluation mode, no trainable parameter, on ``device``."""
    if any(m.training for m in module.modules()) and _accepts_eval(module):
        return False
    return all(not p.requires_grad and p.device == device for p in module.parameters())


def _accepts_eval(module: torch.nn.Module) -> bool:
    # torch.export graph modules carry their mode in the graph and replace eval()/train() on the
    # instance with methods that refuse; their training flag means nothing.
    return "eval" not in vars(module) and "train" not in vars(module)


def frozen_view(module: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``module``'s structure in evaluation mode whose parameters share its weights.

    The parameters of the view are new ``Parameter`` objects over the same storage with
    ``requires_grad=False``, and buffers are shared, so in-place updates of ``module`` (an
    optimizer step) show in the view while ``module`` itself (its mode, its flags, its
    ``.grad``) is never touched. A module whose mode is fixed (``torch.export`` graph modules)
    and whose parameters are already frozen, or one that cannot be copied, is returned as it is.
    """
    if not _accepts_eval(module) and not any(p.requires_grad for p in module.parameters()):
        return module
    memo: dict[int, object] = {
        id(p): torch.nn.Parameter(p.detach(), requires_grad=False) for p in module.parameters()
    }
    memo.update({id(b): b for b in module.buffers()})
    try:
        with warnings.catch_warnings():  # torch's own deprecations inside graph-module copies
            warnings.simplefilter("ignore", FutureWarning)
            view = copy.deepcopy(module, memo)
    except Exception:
        return module
    set_eval(view)
    return view
