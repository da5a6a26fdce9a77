"""Models under test: the classifier interface, framework adapters, safe loading and the zoo.

The names are imported on first use (PEP 562), so that modules which need only a light helper
of this package (``mlwarden scan`` checks ``.pt2`` archives with ``_export_archive``) do not
import torch and scikit-learn.
"""

from __future__ import annotations

import importlib
import typing

if typing.TYPE_CHECKING:
    from mlwarden.models.base import Classifier, DifferentiableClassifier
    from mlwarden.models.convert import ConvertedClassifier, to_white_box
    from mlwarden.models.loading import load_model
    from mlwarden.models.sklearn import SklearnClassifier
    from mlwarden.models.text import SklearnTextClassifier, TextClassifier, TorchTextClassifier
    from mlwarden.models.torch import TorchClassifier

__all__ = [
    "Classifier",
    "ConvertedClassifier",
    "DifferentiableClassifier",
    "SklearnClassifier",
    "SklearnTextClassifier",
    "TextClassifier",
    "TorchClassifier",
    "TorchTextClassifier",
    "load_model",
    "to_white_box",
]

_HOMES = {
    "Classifier": "mlwarden.models.base",
    "DifferentiableClassifier": "mlwarden.models.base",
    "load_model": "mlwarden.models.loading",
    "SklearnClassifier": "mlwarden.models.sklearn",
    "TorchClassifier": "mlwarden.models.torch",
    "TextClassifier": "mlwarden.models.text",
    "SklearnTextClassifier": "mlwarden.models.text",
    "TorchTextClassifier": "mlwarden.models.text",
    "ConvertedClassifier": "mlwarden.models.convert",
    "to_white_box": "mlwarden.models.convert",
}


def __getattr__(name: str) -> typing.Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'mlwarden.models' has no attribute {name!r}")
    if name == "load_model":
        # the package's load_model knows zoo:NAME and text models: the zoo registers its scheme
        # and the text module its modality on import
        importlib.import_module("mlwarden.models.zoo")
        importlib.import_module("mlwarden.models.text")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
