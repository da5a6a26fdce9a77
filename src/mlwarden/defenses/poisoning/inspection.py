"""Run every applicable poisoned-data detector over a training set and collect the verdicts.

:func:`inspect_training_data` is what ``mlwarden data inspect`` and the poisoning section of
``mlwarden assess`` run:

* always (no model needed): feature outliers, duplicates, label errors (confident learning);
* with a white-box model trained on the data: spectral signatures and activation clustering on
  its hidden representations (:mod:`~mlwarden.defenses.poisoning.representations`), with the
  exclusionary reclassification of activation clustering when ``retrain`` is allowed;
* with a curated clean holdout: holdout validation, and STRIP run over the training data with
  overlays and a threshold (1% false positives) taken from the holdout.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlwarden.data.dataset import Dataset
from mlwarden.defenses.poisoning.base import POISON_DETECTORS, SampleFlags, precision_recall
from mlwarden.defenses.poisoning.clustering import ActivationClustering
from mlwarden.defenses.poisoning.holdout import ClassDivergence, holdout_validation
from mlwarden.defenses.poisoning.representations import Layer, hidden_activations
from mlwarden.defenses.poisoning.spectral import SpectralSignatures
from mlwarden.defenses.poisoning.statistics import feature_outliers, find_duplicates, label_errors
from mlwarden.errors import DataError
from mlwarden.models.base import Classifier

__all__ = ["DEFAULT_REMOVE_BY", "Inspection", "inspect_training_data", "inspection_detector_names"]

logger = logging.getLogger(__name__)

DEFAULT_REMOVE_BY: tuple[str, ...] = ("activation-clustering", "label-errors", "duplicates")
"""Detectors whose flags ``--remove`` acts on by default (precise ones; spectral signatures
remove a fixed share of every class by design, and outliers include rare clean samples)."""

STRIP_FPR = 0.01

MODEL_FREE_DETECTORS: tuple[str, ...] = ("feature-outliers", "duplicates", "label-errors")
"""The checks that need no model (:mod:`~mlwarden.defenses.poisoning.statistics`)."""


def inspection_detector_names() -> list[str]:
    """Names of every detector :func:`inspect_training_data` can run (``--remove-by`` choices)."""
    return sorted({*MODEL_FREE_DETECTORS, *POISON_DETECTORS.names(), "strip"})


@dataclass
class Inspection:
    """The verdicts of every detector run over one training set."""

    data: Dataset
    detections: list[SampleFlags]
    holdout: ClassDivergence | None = None
    truth: np.ndarray | None = None
    skipped: list[str] = field(default_factory=list)

    def by_name(self, name: str) -> SampleFlags | None:
        """The verdict of detector ``name``, if it ran."""
        return next((d for d in self.detections if d.detector == name), None)

    def flagged_by(self, names: Sequence[str]) -> np.ndarray:
        """Union of the flags of the detectors ``names`` that ran (boolean mask)."""
        mask = np.zeros(len(self.data), dtype=bool)
        for detection in self.detections:
            if detection.detector in names:
                mask |= detection.flagged
        return mask

    def suspicious(self) -> list[dict[str, Any]]:
        """Every sample at least one detector flagged: index, label, scores and reasons."""
        union = self.flagged_by([d.detector for d in self.detections])
        rows = []
        for index in np.flatnonzero(union):
            hits = [d for d in self.detections if d.flagged[index]]
            rows.append(
                {
                    "index": int(index),
                    "label": int(self.data.y[index]),
                    "detectors": [d.detector for d in hits],
                    "scores": {d.detector: float(d.scores[index]) for d in hits},
                    "reasons": [d.reason for d in hits],
                }
            )
        return rows

    def evaluation(self, remove_by: Sequence[str] = DEFAULT_REMOVE_BY) -> dict[str, Any] | None:
        """Precision and recall of each detector (and of the removal set) against the truth."""
        if self.truth is None:
            return None
        rows: dict[str, Any] = {}
        for name, mask in [
            *((d.detector, d.flagged) for d in self.detections),
            ("removal-set", self.flagged_by(remove_by)),
        ]:
            precision, recall = precision_recall(mask, self.truth)
            rows[name] = {
                "precision": precision,
                "recall": recall,
                "n_flagged": int(mask.sum()),
                "n_true_positives": int(np.sum(mask & self.truth)),
            }
        return {"n_poisoned": int(self.truth.sum()), "detectors": rows}

    def to_dict(self, remove_by: Sequence[str] = DEFAULT_REMOVE_BY) -> dict[str, Any]:
        """JSON values for reports."""
        return {
            "data": {
                "name": self.data.name,
                "n_samples": len(self.data),
                "sha256": self.data.digest(),
                "n_classes": self.data.n_classes,
            },
            "detectors": [
                {
                    "name": d.detector,
                    "n_flagged": int(d.flagged.sum()),
                    "reason": d.reason,
                    "details": d.details,
                }
                for d in self.detections
            ],
            "skipped": self.skipped,
            "holdout": self.holdout.to_dict() if self.holdout else None,
            "remove_by": list(remove_by),
            "n_suspicious": int(self.flagged_by([d.detector for d in self.detections]).sum()),
            "suspicious": self.suspicious(),
            "evaluation": self.evaluation(remove_by),
        }


def inspect_training_data(
    data: Dataset,
    *,
    classifier: Classifier | None = None,
    clean: Dataset | None = None,
    truth: np.ndarray | None = None,
    retrain: Callable[[Dataset], Classifier] | None = None,
    layer: Layer = "features",
    seed: int = 0,
    on_step: Callable[[str], None] | None = None,
) -> Inspection:
    """Run the applicable detectors over ``data``.

    Parameters
    ----------
    data
        The (possibly poisoned) training data.
    classifier
        A model trained on ``data``; white-box models enable the representation detectors.
    clean
        A curated clean holdout of the same task (holdout validation and STRIP).
    truth
        Boolean mask of the truly poisoned samples, for precision and recall.
    retrain
        Trains a fresh model on a dataset; enables the exclusionary reclassification of
        activation clustering.
    layer
        Which hidden layer the representation detectors read.
    """
    if truth is not None and truth.shape != (len(data),):
        raise DataError(f"the truth mask has shape {truth.shape}; expected ({len(data)},)")
    step = on_step or (lambda _: None)
    detections: list[SampleFlags] = []
    skipped: list[str] = []
    step("feature outliers")
    detections.append(feature_outliers(data))
    step("duplicates")
    detections.append(find_duplicates(data))
    step("label errors (confident learning)")
    detections.append(label_errors(data, seed=seed))
    holdout = None
    if classifier is not None and classifier.differentiable:
        step("hidden representations")
        features = hidden_activations(classifier, data.x, layer=layer)
        step("spectral signatures")
        detections.append(SpectralSignatures().detect(features, data.y))
        step("activation clustering")
        reclassify = None
        if retrain is not None:
            train_fn = retrain

            def reclassify(keep: np.ndarray) -> np.ndarray:
                return train_fn(data.subset(np.flatnonzero(keep))).predict(data.x)

        detections.append(
            ActivationClustering(seed=seed).detect(features, data.y, reclassify=reclassify)
        )
    elif classifier is not None:
        skipped.append("spectral signatures and activation clustering need a white-box model")
    else:
        skipped.append("spectral signatures and activation clustering need a model (--model)")
    if clean is not None and classifier is not None:
        step("holdout validation")
        holdout = holdout_validation(classifier, data, clean)
        step("STRIP")
        detections.append(_strip_over_training_data(classifier, data, clean, seed))
    elif clean is None:
        skipped.append("holdout validation and STRIP need a clean holdout (--clean)")
    return Inspection(
        data=data, detections=detections, holdout=holdout, truth=truth, skipped=skipped
    )


def _strip_over_training_data(
    classifier: Classifier, data: Dataset, clean: Dataset, seed: int
) -> SampleFlags:
    from mlwarden.defenses.detectors.strip import STRIP

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(clean))
    half = len(clean) // 2
    detector = STRIP(classifier, seed=seed, n_overlays=min(20, half)).fit(clean.x[order[:half]])
    detector.calibrate(clean.x[order[half:]], fpr=STRIP_FPR)
    scores = detector.score(data.x)
    return SampleFlags(
        detector="strip",
        scores=scores,
        flagged=scores > detector.threshold_,
        reason=(
            "its predictions stay confident when blended with clean images (STRIP entropy "
            f"below the clean holdout's {STRIP_FPR:.0%} quantile)"
        ),
        details={"threshold": float(detector.threshold_), "fpr": STRIP_FPR},
    )
