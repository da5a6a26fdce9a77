"""Exact PyTorch forms of scikit-learn and ONNX models, for white-box assessments.

:func:`to_white_box` converts a black-box classifier and accepts the conversion only when it
reproduces the model's probabilities; :func:`sklearn_to_torch` and :func:`onnx_to_torch` are
the converters (see their modules for the supported estimators and ONNX operators).
"""

from mlwarden.models.convert.errors import NotConvertibleError
from mlwarden.models.convert.from_onnx import (
    SUPPORTED_ONNX_OPS,
    OnnxGraphModule,
    load_onnx_model,
    onnx_to_torch,
)
from mlwarden.models.convert.from_sklearn import sklearn_to_torch
from mlwarden.models.convert.white_box import ConvertedClassifier, to_white_box

__all__ = [
    "SUPPORTED_ONNX_OPS",
    "ConvertedClassifier",
    "NotConvertibleError",
    "OnnxGraphModule",
    "load_onnx_model",
    "onnx_to_torch",
    "sklearn_to_torch",
    "to_white_box",
]
