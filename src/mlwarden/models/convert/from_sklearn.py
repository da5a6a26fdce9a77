"""scikit-learn classifiers as equivalent PyTorch modules, so gradient attacks can run on them.

Each module maps inputs (any shape; flattened first, as
:class:`~mlwarden.models.sklearn.SklearnClassifier` does) to logits whose softmax is the
estimator's ``predict_proba``, one column per entry of ``classes_``:

* ``LogisticRegression``: binary, logits ``[0, z]`` (``softmax`` of them is ``[1 - σ(z), σ(z)]``);
  multiclass (multinomial), ``Wx + b``;
* ``SGDClassifier(loss="log_loss")`` and ``OneVsRestClassifier`` over binary models of this
  list: binary ``[0, z]``; multiclass one-vs-rest, ``log σ(z)``, whose softmax is
  ``σ(z) / Σ σ(z)``, scikit-learn's normalised one-vs-rest probabilities;
* ``LinearDiscriminantAnalysis``: ``[0, z]`` or ``Wx + b`` (its probabilities are those of a
  linear model);
* ``MLPClassifier`` with ``relu``, ``tanh``, ``logistic`` or ``identity`` hidden layers: the same
  layers, then ``[0, z]`` (binary) or the output layer's values (softmax output);
* a ``Pipeline`` of ``StandardScaler`` / ``MinMaxScaler`` steps ending in one of the above.

Anything else (trees, ensembles, kernels, multilabel models) raises
:class:`~mlwarden.models.convert.errors.NotConvertibleError` naming the reason, or gives
``None`` from :func:`sklearn_to_torch`. Weights are copied: the estimator is never changed.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch import nn

from mlwarden.models.convert.errors import NotConvertibleError

__all__ = ["MinMaxScale", "OneVsRestLogits", "Standardize", "sklearn_to_torch"]

logger = logging.getLogger(__name__)

_MLP_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "logistic": nn.Sigmoid,
    "identity": nn.Identity,
}


def _tensor(values: Any) -> torch.Tensor:
    """A float32 tensor that owns a copy of ``values``."""
    return torch.tensor(np.array(values, dtype=np.float32))


class Standardize(nn.Module):
    """``(x - mean) / scale``, as ``StandardScaler.transform`` (``None`` skips a step)."""

    mean: torch.Tensor | None
    scale: torch.Tensor | None

    def __init__(self, mean: Any | None, scale: Any | None) -> None:
        super().__init__()
        self.register_buffer("mean", None if mean is None else _tensor(mean))
        self.register_buffer("scale", None if scale is None else _tensor(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mean is not None:
            x = x - self.mean
        if self.scale is not None:
            x = x / self.scale
        return x


class MinMaxScale(nn.Module):
    """``x * scale + offset``, clamped to ``clip`` when given, as ``MinMaxScaler.transform``."""

    scale: torch.Tensor
    offset: torch.Tensor

    def __init__(self, scale: Any, offset: Any, clip: tuple[float, float] | None = None) -> None:
        super().__init__()
        self.register_buffer("scale", _tensor(scale))
        self.register_buffer("offset", _tensor(offset))
        self.clip = clip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.scale + self.offset
        if self.clip is not None:
            x = x.clamp(self.clip[0], self.clip[1])
        return x


class OneVsRestLogits(nn.Module):
    """Logits ``log σ(z_k)`` from binary models' ``[0, z_k]`` outputs: normalised one-vs-rest."""

    def __init__(self, binaries: list[nn.Module]) -> None:
        super().__init__()
        self.binaries = nn.ModuleList(binaries)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = [(out[:, 1] - out[:, 0]) for out in (m(x) for m in self.binaries)]
        return nn.functional.logsigmoid(torch.stack(scores, dim=1))


def sklearn_to_torch(estimator: Any, *, strict: bool = False) -> nn.Module | None:
    """A PyTorch module whose logits reproduce ``estimator.predict_proba`` through a softmax.

    Parameters
    ----------
    estimator
        A fitted scikit-learn classifier (see the module docstring for the supported ones).
    strict
        Raise :class:`NotConvertibleError` naming the reason instead of returning ``None``.

    Returns
    -------
    torch.nn.Module or None
        A module in evaluation mode whose parameters take no gradients, mapping a float32 batch
        to logits of shape ``(n, len(estimator.classes_))``; ``None`` when the estimator (or a
        setting of it) has no exact torch form.

    Raises
    ------
    NotConvertibleError
        Only with ``strict=True``: the estimator is not supported; the message says why.
    """
    try:
        body = _convert(estimator)
    except NotConvertibleError as exc:
        if strict:
            raise
        logger.info("no torch form for %s: %s", type(estimator).__name__, exc)
        return None
    module = nn.Sequential(nn.Flatten(), *body)
    module.eval()
    module.requires_grad_(False)
    return module


def _convert(estimator: Any) -> list[nn.Module]:
    """The layers after flattening; raises :class:`NotConvertibleError` for unsupported models."""
    name = type(estimator).__name__
    if name == "Pipeline":
        return _pipeline(estimator)
    if getattr(estimator, "classes_", None) is None:
        raise NotConvertibleError(f"{name} is not a fitted classifier (it has no classes_)")
    if name == "MLPClassifier":
        return _mlp(estimator)
    if name == "OneVsRestClassifier":
        return [_one_vs_rest(estimator)]
    if name in ("LogisticRegression", "SGDClassifier", "LinearDiscriminantAnalysis"):
        return _linear_model(estimator)
    raise NotConvertibleError(
        f"{name} has no exact torch form; supported: LogisticRegression, "
        "SGDClassifier(loss='log_loss'), LinearDiscriminantAnalysis, MLPClassifier, "
        "OneVsRestClassifier of those, and Pipelines of StandardScaler/MinMaxScaler before them"
    )


def _pipeline(pipeline: Any) -> list[nn.Module]:
    steps = [step for _, step in pipeline.steps if step is not None and step != "passthrough"]
    if not steps:
        raise NotConvertibleError("the Pipeline has no steps")
    layers: list[nn.Module] = []
    for step in steps[:-1]:
        layers.append(_scaler(step))
    return layers + _convert(steps[-1])


def _scaler(step: Any) -> nn.Module:
    name = type(step).__name__
    if name == "StandardScaler":
        if getattr(step, "n_features_in_", None) is None:
            raise NotConvertibleError("a StandardScaler in the Pipeline is not fitted")
        return Standardize(step.mean_, step.scale_)
    if name == "MinMaxScaler":
        if getattr(step, "scale_", None) is None:
            raise NotConvertibleError("a MinMaxScaler in the Pipeline is not fitted")
        low, high = step.feature_range
        return MinMaxScale(step.scale_, step.min_, (float(low), float(high)) if step.clip else None)
    raise NotConvertibleError(
        f"Pipeline step {name} has no exact torch form; only StandardScaler and MinMaxScaler "
        "may come before the classifier"
    )


def _linear(weight: np.ndarray, bias: np.ndarray, binary: bool) -> nn.Linear:
    """``Wx + b``; for a binary model (one row) the logits ``[0, z]`` as a two-row layer."""
    weight = np.atleast_2d(np.asarray(weight, dtype=np.float64))
    bias = np.atleast_1d(np.asarray(bias, dtype=np.float64))
    if binary:
        if weight.shape[0] != 1 or bias.shape != (1,):
            raise NotConvertibleError(
                f"a binary model has {weight.shape[0]} weight rows; expected one"
            )
        weight = np.vstack([np.zeros_like(weight), weight])
        bias = np.concatenate([[0.0], bias])
    layer = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        layer.weight.copy_(_tensor(weight))
        layer.bias.copy_(_tensor(bias))
    return layer


def _linear_model(estimator: Any) -> list[nn.Module]:
    name = type(estimator).__name__
    coef = getattr(estimator, "coef_", None)
    if coef is None:
        raise NotConvertibleError(f"{name} is not fitted (it has no coef_)")
    if not isinstance(coef, np.ndarray):
        raise NotConvertibleError(f"{name} has sparse coefficients; densify() it first")
    n_classes = len(estimator.classes_)
    binary = n_classes == 2
    if name == "SGDClassifier":
        if estimator.loss not in ("log_loss", "log"):
            raise NotConvertibleError(
                f"SGDClassifier(loss={estimator.loss!r}) has no exact torch form; only "
                "loss='log_loss' gives sigmoid probabilities"
            )
        layer = _linear(coef, estimator.intercept_, binary)
        return [layer] if binary else [layer, nn.LogSigmoid()]
    # LogisticRegression (multinomial when multiclass) and LinearDiscriminantAnalysis: sigmoid
    # of the decision function when binary, softmax of it otherwise.
    if name == "LogisticRegression" and _one_vs_rest_logistic(estimator):
        layer = _linear(coef, estimator.intercept_, binary)
        return [layer] if binary else [layer, nn.LogSigmoid()]
    return [_linear(coef, estimator.intercept_, binary)]


def _one_vs_rest_logistic(estimator: Any) -> bool:
    """Whether a (pre-1.8 scikit-learn) LogisticRegression fits one model per class."""
    multi_class = getattr(estimator, "multi_class", "deprecated")
    return multi_class == "ovr" or (multi_class == "auto" and estimator.solver == "liblinear")


def _one_vs_rest(estimator: Any) -> nn.Module:
    if getattr(estimator, "multilabel_", False):
        raise NotConvertibleError(
            "a multilabel OneVsRestClassifier's probabilities are not a softmax"
        )
    binaries: list[nn.Module] = []
    for sub in estimator.estimators_:
        classes = getattr(sub, "classes_", None)
        if classes is None or len(classes) != 2:
            raise NotConvertibleError(
                f"OneVsRestClassifier holds a {type(sub).__name__} that is not a binary "
                "classifier (a class seen in every or no training sample)"
            )
        binaries.append(nn.Sequential(*_convert(sub)))
    if len(binaries) == 1:  # a binary problem: the one model's [1 - p, p]
        return binaries[0]
    return OneVsRestLogits(binaries)


def _mlp(estimator: Any) -> list[nn.Module]:
    activation = _MLP_ACTIVATIONS.get(estimator.activation)
    if activation is None:
        raise NotConvertibleError(
            f"MLPClassifier(activation={estimator.activation!r}) has no torch form here"
        )
    output = estimator.out_activation_
    if output == "logistic" and estimator.n_outputs_ != 1:
        raise NotConvertibleError("a multilabel MLPClassifier's probabilities are not a softmax")
    if output not in ("logistic", "softmax"):
        raise NotConvertibleError(f"MLPClassifier output {output!r} is not a classifier output")
    layers: list[nn.Module] = []
    last = len(estimator.coefs_) - 1
    for i, (weight, bias) in enumerate(zip(estimator.coefs_, estimator.intercepts_, strict=True)):
        layers.append(
            _linear(np.asarray(weight).T, bias, binary=i == last and output == "logistic")
        )
        if i != last:
            layers.append(activation())
    return layers
