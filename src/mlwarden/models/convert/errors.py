"""The error raised when a model cannot be converted to an equivalent PyTorch module."""

from __future__ import annotations

from mlwarden.errors import ModelError

__all__ = ["NotConvertibleError"]


class NotConvertibleError(ModelError):
    """A model (an estimator type, an ONNX operator, an attribute value) has no exact torch form.

    The message names what is not supported; assessments fall back to black-box attacks.
    """
