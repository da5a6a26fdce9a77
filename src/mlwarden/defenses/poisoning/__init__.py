"""Detect poisoned training data: representation-based, model-free, and holdout checks.

* :class:`SpectralSignatures` (Tran et al., 2018) and :class:`ActivationClustering` (Chen et
  al., 2018) on a trained model's hidden representations (:func:`hidden_activations`);
* model-free statistics: :func:`feature_outliers`, :func:`find_duplicates`,
  :func:`label_errors` (confident learning, Northcutt et al., 2021);
* :func:`holdout_validation` against a curated clean set;
* :func:`inspect_training_data` runs all that apply and collects the verdicts;
* text data (:func:`inspect_text_data`): phrase-label association (:class:`PhraseAssociation`,
  Fisher's exact test), spectral signatures and activation clustering on a text model's
  representations (:func:`text_representations`), and the run-time :class:`TextSTRIP` and
  :class:`ONION` (outlier-word deletion with a small language model trained here).

The run-time STRIP detector (Gao et al., 2019) lives with the other input detectors in
:mod:`mlwarden.defenses.detectors`.
"""

from __future__ import annotations

from mlwarden.defenses.poisoning.base import (
    POISON_DETECTORS,
    PoisonDetector,
    SampleFlags,
    precision_recall,
)
from mlwarden.defenses.poisoning.clustering import ActivationClustering, fisher_separation
from mlwarden.defenses.poisoning.holdout import ClassDivergence, holdout_validation
from mlwarden.defenses.poisoning.inspection import (
    DEFAULT_REMOVE_BY,
    Inspection,
    inspect_training_data,
    inspection_detector_names,
)
from mlwarden.defenses.poisoning.representations import hidden_activations
from mlwarden.defenses.poisoning.spectral import SpectralSignatures
from mlwarden.defenses.poisoning.statistics import (
    confident_joint,
    cross_val_probabilities,
    feature_outliers,
    find_duplicates,
    label_errors,
)
from mlwarden.defenses.poisoning.text_association import PhraseAssociation
from mlwarden.defenses.poisoning.text_inspection import inspect_text_data
from mlwarden.defenses.poisoning.text_onion import ONION
from mlwarden.defenses.poisoning.text_representations import text_representations
from mlwarden.defenses.poisoning.text_strip import TextSTRIP
from mlwarden.defenses.poisoning.training import train_classifier

for _cls in (SpectralSignatures, ActivationClustering):
    POISON_DETECTORS.register(_cls.name, _cls)

__all__ = [
    "DEFAULT_REMOVE_BY",
    "ONION",
    "POISON_DETECTORS",
    "ActivationClustering",
    "ClassDivergence",
    "Inspection",
    "PhraseAssociation",
    "PoisonDetector",
    "SampleFlags",
    "SpectralSignatures",
    "TextSTRIP",
    "confident_joint",
    "cross_val_probabilities",
    "feature_outliers",
    "find_duplicates",
    "fisher_separation",
    "hidden_activations",
    "holdout_validation",
    "inspect_text_data",
    "inspect_training_data",
    "inspection_detector_names",
    "label_errors",
    "precision_recall",
    "text_representations",
    "train_classifier",
]
