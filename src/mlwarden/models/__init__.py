"""Models under test: the classifier interface, framework adapters, safe loading and the zoo."""

from mlwarden.models import zoo as _zoo  # noqa: F401  registers the zoo: scheme with load_model
from mlwarden.models.base import Classifier, DifferentiableClassifier
from mlwarden.models.convert import ConvertedClassifier, to_white_box
from mlwarden.models.loading import load_model
from mlwarden.models.sklearn import SklearnClassifier
from mlwarden.models.torch import TorchClassifier

__all__ = [
    "Classifier",
    "ConvertedClassifier",
    "DifferentiableClassifier",
    "SklearnClassifier",
    "TorchClassifier",
    "load_model",
    "to_white_box",
]
