"""Holdout validation: compare a model's per-class behaviour on its training data and on a
curated clean set, and flag the classes where they diverge.

A model fitted to poisoned data behaves differently on the data it was trained on than on
trusted data of the same classes: flipped labels lower its training accuracy in the classes
they were flipped into (and out of); a backdoor's target class holds training samples that do
not look like it, which changes the class's confidence and loss. For each class ``c`` the
check computes accuracy, mean confidence in the label and mean cross-entropy on the training
samples labelled ``c`` and on the clean samples of ``c``; a class is flagged when a gap
(training − clean, loss gap sign-reversed) is both a robust-z outlier among the classes
(``z > z_threshold``) and practically large (accuracy or confidence gap beyond
``min_gap``), in the direction poisoning moves it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mlwarden.data.dataset import Dataset
from mlwarden.defenses.poisoning.statistics import robust_z
from mlwarden.errors import DataError
from mlwarden.models.base import Classifier

__all__ = ["ClassDivergence", "holdout_validation"]


@dataclass(frozen=True)
class ClassDivergence:
    """Per-class behaviour on training vs clean data and the classes flagged."""

    rows: list[dict[str, Any]]
    flagged_classes: list[int]

    def to_dict(self) -> dict[str, Any]:
        """JSON values."""
        return {"classes": self.rows, "flagged_classes": self.flagged_classes}


def _per_class(classifier: Classifier, data: Dataset, n_classes: int) -> np.ndarray:
    proba = classifier.predict_proba(data.x).astype(np.float64)
    given = proba[np.arange(len(data)), data.y]
    correct = proba.argmax(axis=1) == data.y
    loss = -np.log(np.clip(given, 1e-12, 1.0))
    table = np.full((n_classes, 4), np.nan)
    for c in range(n_classes):
        members = data.y == c
        if members.any():
            table[c] = [
                correct[members].mean(),
                given[members].mean(),
                loss[members].mean(),
                members.sum(),
            ]
    return table


def holdout_validation(
    classifier: Classifier,
    train: Dataset,
    clean: Dataset,
    *,
    z_threshold: float = 3.5,
    min_gap: float = 0.05,
) -> ClassDivergence:
    """Flag classes whose training-data behaviour diverges from the clean holdout's.

    Raises
    ------
    DataError
        The two datasets have different numbers of classes or input shapes.
    """
    if train.input_shape != clean.input_shape or train.n_classes != clean.n_classes:
        raise DataError(
            f"the clean holdout ({clean.input_shape}, {clean.n_classes} classes) does not match "
            f"the training data ({train.input_shape}, {train.n_classes} classes)"
        )
    k = train.n_classes
    on_train, on_clean = _per_class(classifier, train, k), _per_class(classifier, clean, k)
    both = ~np.isnan(on_train[:, 0]) & ~np.isnan(on_clean[:, 0])
    gaps = on_clean[:, :3] - on_train[:, :3]  # accuracy, confidence: clean − train
    gaps[:, 2] = on_train[:, 2] - on_clean[:, 2]  # loss: train − clean
    z = np.zeros_like(gaps)
    for col in range(3):
        # a 1-point floor on the scale: when most classes agree exactly, the MAD is 0
        z[both, col] = robust_z(np.abs(gaps[both, col]), min_scale=0.01)
    rows, flagged = [], []
    for c in range(k):
        if not both[c]:
            continue
        is_flagged = bool(
            np.any(z[c] > z_threshold) and max(abs(gaps[c, 0]), abs(gaps[c, 1])) > min_gap
        )
        if is_flagged:
            flagged.append(c)
        rows.append(
            {
                "class": c,
                "train_accuracy": float(on_train[c, 0]),
                "clean_accuracy": float(on_clean[c, 0]),
                "train_confidence": float(on_train[c, 1]),
                "clean_confidence": float(on_clean[c, 1]),
                "train_loss": float(on_train[c, 2]),
                "clean_loss": float(on_clean[c, 2]),
                "max_robust_z": float(z[c].max()),
                "flagged": is_flagged,
            }
        )
    return ClassDivergence(rows=rows, flagged_classes=flagged)
