"""White-box views of black-box models: converted modules accepted only when they are exact.

A scikit-learn or ONNX model is converted to a PyTorch module (:mod:`.from_sklearn`,
:mod:`.from_onnx`); the conversion is accepted only when the module's softmax reproduces the
original model's probabilities on a check batch and every predicted label agrees. The
resulting :class:`ConvertedClassifier` gives gradient attacks the module's logits, while its
``predict_proba`` still runs the original model, so every verdict is scored on the real thing.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mlwarden.errors import ModelError
from mlwarden.models.base import Classifier, DifferentiableClassifier, ModelInfo
from mlwarden.models.convert.errors import NotConvertibleError
from mlwarden.models.convert.from_onnx import OnnxGraphModule, load_onnx_model
from mlwarden.models.convert.from_sklearn import sklearn_to_torch

__all__ = ["ConvertedClassifier", "to_white_box"]


class ConvertedClassifier(DifferentiableClassifier):
    """Gradients from a converted module, predictions from the original model.

    Parameters
    ----------
    original
        The black-box classifier the module was converted from; ``predict_proba`` and
        ``predict`` call it, so attacks are scored on the real model.
    module
        A module mapping a float32 batch to logits whose softmax matches ``original``'s
        probabilities (checked by :func:`to_white_box`). It is owned by the classifier and
        moved to ``device``.
    device
        Where the module runs.
    """

    def __init__(
        self, original: Classifier, module: nn.Module, *, device: str | torch.device = "cpu"
    ) -> None:
        super().__init__(
            input_shape=original.input_shape,
            n_classes=original.n_classes,
            clip_range=original.clip_range,
            batch_size=original.batch_size,
        )
        self.original = original
        self.device = torch.device(device)
        self.module = module.to(self.device)
        self.info = ModelInfo(original.info)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The converted module's logits for ``x``."""
        return self.module(x)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """The original model's probabilities (not the converted module's)."""
        return self.original.predict_proba(x)


def to_white_box(
    classifier: Classifier,
    check_x: np.ndarray,
    *,
    atol: float = 1e-4,
    device: str | torch.device = "cpu",
) -> tuple[ConvertedClassifier | None, dict[str, Any]]:
    """A white-box view of a scikit-learn or ONNX classifier, if an exact one can be made.

    The model is converted to a PyTorch module, and the conversion is accepted only when, on
    every input of ``check_x``, the softmax of the module's logits is within ``atol`` of the
    original ``predict_proba`` and the predicted labels are the same.

    Parameters
    ----------
    classifier
        A :class:`~mlwarden.models.sklearn.SklearnClassifier` or
        :class:`~mlwarden.models.onnx.OnnxClassifier`; it is not changed.
    check_x
        Inputs to compare the two on, shape ``(n, *classifier.input_shape)``; include points
        near the ones that will be attacked (perturbed evaluation samples).
    atol
        Largest accepted absolute difference between probabilities.
    device
        Where the converted module runs.

    Returns
    -------
    tuple
        ``(white_box, record)``: the :class:`ConvertedClassifier`, or ``None`` when the model
        cannot be converted or the conversion is not exact; and
        ``{"converted": bool, "reason": str, "max_abs_diff": float, "n_checked": int}``,
        where ``reason`` says why a conversion was refused (empty when it was accepted) and
        ``max_abs_diff`` is NaN when no comparison ran.
    """
    record: dict[str, Any] = {
        "converted": False,
        "reason": "",
        "max_abs_diff": math.nan,
        "n_checked": 0,
    }
    try:
        module = _module_for(classifier)
        x = classifier.check_inputs(check_x)
        if len(x) == 0:
            raise NotConvertibleError("there are no inputs to check the conversion on")
        module = module.to(device)
        original = classifier.predict_proba(x)
        converted = _softmax_in_batches(module, x, classifier.batch_size, torch.device(device))
    except (ModelError, RuntimeError, ValueError, TypeError, IndexError) as exc:
        # a graph that fails on real inputs (shapes, dtypes) is as unusable as an unknown op
        record["reason"] = str(exc) or type(exc).__name__
        return None, record
    record["n_checked"] = len(x)
    if converted.shape != original.shape:
        record["reason"] = (
            f"the converted module gives {converted.shape[1:]} scores per input; the model "
            f"gives {original.shape[1:]}"
        )
        return None, record
    if not np.isfinite(converted).all():
        record["reason"] = "the converted module's logits are not finite on the check batch"
        return None, record
    diff = float(np.abs(converted - original.astype(np.float64)).max())
    record["max_abs_diff"] = diff
    disagree = int((converted.argmax(axis=1) != original.argmax(axis=1)).sum())
    if diff > atol or disagree:
        record["reason"] = (
            f"the converted module's probabilities differ from the model's by up to {diff:.3g} "
            f"(tolerance {atol:g}) and its label differs on {disagree} of {len(x)} check inputs"
        )
        return None, record
    record["converted"] = True
    return ConvertedClassifier(classifier, module, device=device), record


def _softmax_in_batches(
    module: nn.Module, x: np.ndarray, batch_size: int, device: torch.device
) -> np.ndarray:
    parts = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size]))
            logits = module(batch.to(device))
            parts.append(torch.softmax(logits.double(), dim=1).cpu().numpy())
    return np.concatenate(parts)


def _module_for(classifier: Classifier) -> nn.Module:
    """The converted module of a supported black-box classifier; raises NotConvertibleError."""
    from mlwarden.models.sklearn import SklearnClassifier

    if isinstance(classifier, DifferentiableClassifier):
        raise NotConvertibleError("the model is already white-box")
    if isinstance(classifier, SklearnClassifier):
        columns = np.asarray(classifier._columns)
        if not np.array_equal(columns, np.arange(classifier.n_classes)):
            raise NotConvertibleError(
                f"the estimator knows labels {columns.tolist()} of {classifier.n_classes} "
                "classes; only estimators fitted on every label are converted"
            )
        module = sklearn_to_torch(classifier.estimator, strict=True)
        assert module is not None
        return module
    path = getattr(classifier, "path", None)
    if path is not None and hasattr(classifier, "session"):
        logits_mode = getattr(classifier, "output", "auto") == "logits"
        # declared logits get a softmax in OnnxClassifier: then a final Softmax stays in
        return OnnxGraphModule(load_onnx_model(Path(path)), logits_before_softmax=not logits_mode)
    raise NotConvertibleError(
        f"a {type(classifier).__name__} cannot be converted; only scikit-learn and ONNX models are"
    )
