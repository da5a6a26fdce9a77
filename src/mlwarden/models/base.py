"""The classifier interface every check in mlwarden works against.

A :class:`Classifier` is anything that turns a batch of inputs into class probabilities. White-box
models additionally implement :class:`DifferentiableClassifier`, which exposes logits and loss
gradients as PyTorch tensors so gradient attacks can run without leaving the framework.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch

from mlwarden.errors import DataError

__all__ = ["Classifier", "DifferentiableClassifier", "ModelInfo"]


class ModelInfo(dict):  # type: ignore[type-arg]
    """A JSON-serialisable description of a model for reports (format, path, digest, ...)."""


class Classifier(ABC):
    """A batched black-box classifier.

    Parameters
    ----------
    input_shape
        Shape of one input, without the batch dimension (``(1, 8, 8)`` for digits).
    n_classes
        Number of classes; ``predict_proba`` returns this many columns.
    clip_range
        ``(low, high)``: the valid range of every input feature. Attacks never leave it.
    batch_size
        How many inputs are sent to the model at once.
    """

    def __init__(
        self,
        *,
        input_shape: tuple[int, ...],
        n_classes: int,
        clip_range: tuple[float, float] = (0.0, 1.0),
        batch_size: int = 512,
    ) -> None:
        if n_classes < 2:
            raise DataError(f"n_classes must be at least 2, got {n_classes}")
        low, high = float(clip_range[0]), float(clip_range[1])
        if not low < high:
            raise DataError(f"clip_range must be (low, high) with low < high, got {clip_range!r}")
        if batch_size < 1:
            raise DataError(f"batch_size must be a positive integer, got {batch_size}")
        self.input_shape = tuple(int(d) for d in input_shape)
        self.n_classes = int(n_classes)
        self.clip_range = (low, high)
        self.batch_size = int(batch_size)
        self.info: ModelInfo = ModelInfo()

    @property
    def differentiable(self) -> bool:
        """Whether the classifier exposes gradients (white-box)."""
        return isinstance(self, DifferentiableClassifier)

    def check_inputs(self, x: np.ndarray) -> np.ndarray:
        """Return ``x`` as float32, or raise :class:`DataError` naming the shape mismatch."""
        x = np.asarray(x)
        if x.ndim == len(self.input_shape):
            x = x[None]
        if tuple(x.shape[1:]) != self.input_shape:
            raise DataError(
                f"inputs have shape {tuple(x.shape[1:])} per sample but the model expects "
                f"{self.input_shape}"
            )
        return x.astype(np.float32, copy=False)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities, shape ``(n, n_classes)``, computed in batches."""
        x = self.check_inputs(x)
        if len(x) == 0:
            return np.zeros((0, self.n_classes), dtype=np.float32)
        parts = [
            self._predict_proba_batch(x[i : i + self.batch_size])
            for i in range(0, len(x), self.batch_size)
        ]
        proba = np.concatenate(parts).astype(np.float32, copy=False)
        if proba.shape != (len(x), self.n_classes):
            raise DataError(
                f"the model returned outputs of shape {proba.shape}; expected "
                f"({len(x)}, {self.n_classes}) (n_classes={self.n_classes})"
            )
        return proba

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted labels, shape ``(n,)``."""
        return self.predict_proba(x).argmax(axis=1)

    @abstractmethod
    def _predict_proba_batch(self, x: np.ndarray) -> np.ndarray:
        """Probabilities for one batch of already-validated float32 inputs."""


class DifferentiableClassifier(Classifier):
    """A white-box classifier that gives logits and gradients as PyTorch tensors."""

    device: torch.device

    @abstractmethod
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable logits for a batch on :attr:`device`, shape ``(n, n_classes)``."""

    def loss_gradient(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Gradient of the summed cross-entropy loss with respect to ``x``."""
        x = x.detach().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(self.logits(x), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
        return grad

    def _predict_proba_batch(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            logits = self.logits(torch.from_numpy(np.ascontiguousarray(x)).to(self.device))
            return torch.softmax(logits.float(), dim=1).cpu().numpy()


def gradient_path_problem(classifier: DifferentiableClassifier, x: np.ndarray) -> str | None:
    """Why ``classifier``'s logits have no gradient with respect to its input, or ``None``.

    A ``forward`` that leaves autograd (``.detach()``, a NumPy round trip, ``torch.no_grad``
    around preprocessing) gives logits that do not depend differentiably on the input at all;
    one that calls ``.numpy()`` on its input fails outright once the input requires a gradient.
    Either way gradient attacks cannot run, and must not be mistaken for a robust model.
    """
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(classifier.device)
    try:
        with torch.enable_grad():
            logits = classifier.logits(t.requires_grad_(True))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"its forward pass fails when the input requires a gradient ({first})"
    if not logits.requires_grad:
        return (
            "its output has no gradient path to its input (the forward pass leaves autograd: "
            ".detach(), NumPy or torch.no_grad inside forward)"
        )
    return None


class GradientFreeView(Classifier):
    """A differentiable classifier seen as a black box: the same predictions, no gradients.

    Used for a model whose gradients cannot be computed (:func:`gradient_path_problem`), so
    that only gradient-free attacks run against it instead of gradient attacks that fail.
    """

    def __init__(self, inner: Classifier) -> None:
        super().__init__(
            input_shape=inner.input_shape,
            n_classes=inner.n_classes,
            clip_range=inner.clip_range,
            batch_size=inner.batch_size,
        )
        self.inner = inner
        self.info = inner.info

    def _predict_proba_batch(self, x: np.ndarray) -> np.ndarray:
        return self.inner.predict_proba(x)
