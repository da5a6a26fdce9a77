"""Model inversion in the style of MI-Face (Fredrikson, Jha and Ristenpart, 2015, "Model
Inversion Attacks that Exploit Confidence Information and Basic Countermeasures").

For every class, start from a flat input and run gradient ascent on the class's
log-probability, with a prior that keeps the reconstruction image-like: total-variation and L2
penalties, and projection onto the valid input range after every step. All classes are
inverted together as one batch.

A reconstruction leaks training data when it resembles what the class looks like. It is
compared with the mean training input of every class (cosine similarity and Pearson
correlation); an inversion "recovers" a class when its own class mean is the most similar.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mlwarden.data.dataset import Dataset
from mlwarden.errors import AttackError
from mlwarden.models.base import Classifier, DifferentiableClassifier

__all__ = ["InversionResult", "MIFace", "class_similarity"]


def _total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation over the last two (spatial) axes, per sample."""
    if x.dim() < 3:
        return torch.zeros(len(x), dtype=x.dtype, device=x.device)
    dh = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).sum(1)
    dw = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).sum(1)
    return dh + dw


def class_similarity(
    reconstructions: np.ndarray, class_means: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(cosine, correlation)`` matrices, shape ``(n_classes, n_classes)``.

    Entry ``[c, k]`` compares the reconstruction of class ``c`` with the mean input of class
    ``k``; correlation is the Pearson correlation of the flattened inputs.
    """
    a = reconstructions.reshape(len(reconstructions), -1).astype(np.float64)
    b = class_means.reshape(len(class_means), -1).astype(np.float64)

    def normalise(v: np.ndarray) -> np.ndarray:
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)

    cosine = normalise(a) @ normalise(b).T
    correlation = (
        normalise(a - a.mean(1, keepdims=True)) @ normalise(b - b.mean(1, keepdims=True)).T
    )
    return cosine, correlation


@dataclass(frozen=True)
class InversionResult:
    """Reconstructions and how well they match each class's mean training input.

    Attributes
    ----------
    reconstructions
        One input per class, ``(n_classes, *input_shape)``.
    confidence
        The model's probability of the inverted class on each reconstruction.
    cosine, correlation
        ``[c, k]``: similarity of reconstruction ``c`` to the mean of class ``k``.
    class_means
        Mean training input per class.
    """

    reconstructions: np.ndarray
    confidence: np.ndarray
    cosine: np.ndarray
    correlation: np.ndarray
    class_means: np.ndarray

    @property
    def own_correlation(self) -> np.ndarray:
        """Correlation of each reconstruction with its own class mean."""
        return np.diag(self.correlation)

    @property
    def recovered(self) -> np.ndarray:
        """Per class: its own class mean is the most correlated of all class means."""
        return self.correlation.argmax(axis=1) == np.arange(len(self.correlation))

    @property
    def recovery_rate(self) -> float:
        """Share of classes recovered (chance: ``1 / n_classes``)."""
        return float(self.recovered.mean())

    def metrics(self) -> dict[str, float]:
        """Flat metrics for reports and gates."""
        n = len(self.correlation)
        off = ~np.eye(n, dtype=bool)
        return {
            "inversion_recovery_rate": self.recovery_rate,
            "inversion_own_correlation": float(self.own_correlation.mean()),
            "inversion_other_correlation": float(self.correlation[off].mean()),
            "inversion_own_cosine": float(np.diag(self.cosine).mean()),
            "inversion_other_cosine": float(self.cosine[off].mean()),
            "inversion_confidence": float(self.confidence.mean()),
        }

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view (images as nested lists, rounded)."""
        return {
            **self.metrics(),
            "chance_rate": 1.0 / len(self.correlation),
            "recovered": [bool(v) for v in self.recovered],
            "own_correlation": [round(float(v), 4) for v in self.own_correlation],
            "correlation": np.round(self.correlation, 4).tolist(),
            "cosine": np.round(self.cosine, 4).tolist(),
            "reconstructions": np.round(self.reconstructions, 4).tolist(),
            "class_means": np.round(self.class_means, 4).tolist(),
        }


class MIFace:
    """MI-Face model inversion (Fredrikson et al., 2015) with a TV / L2 image prior.

    Parameters
    ----------
    steps
        Gradient-ascent steps.
    lr
        Adam step size, in input units.
    tv_weight, l2_weight
        Weights of the total-variation and squared-L2 penalties (per input element).
    init
        Starting value of every input element, as a fraction of the valid range (0.0: the
        range's low end, 0.5: mid-grey).
    """

    name = "mi-face"

    def __init__(
        self,
        *,
        steps: int = 300,
        lr: float = 0.05,
        tv_weight: float = 0.05,
        l2_weight: float = 0.01,
        init: float = 0.0,
    ) -> None:
        self.steps = steps
        self.lr = lr
        self.tv_weight = tv_weight
        self.l2_weight = l2_weight
        self.init = init

    def invert(self, classifier: Classifier, classes: np.ndarray | None = None) -> np.ndarray:
        """One reconstruction per class in ``classes`` (default: every class)."""
        if not isinstance(classifier, DifferentiableClassifier):
            raise AttackError(
                f"mi-face needs gradients but the model is black-box ({type(classifier).__name__})"
            )
        if self.steps < 1 or not self.lr > 0 or self.tv_weight < 0 or self.l2_weight < 0:
            raise AttackError(
                f"mi-face: steps >= 1, lr > 0 and weights >= 0 needed, got steps={self.steps}, "
                f"lr={self.lr}, tv_weight={self.tv_weight}, l2_weight={self.l2_weight}"
            )
        if not 0.0 <= self.init <= 1.0:
            raise AttackError(f"mi-face: init must be in [0, 1], got {self.init}")
        labels = np.arange(classifier.n_classes) if classes is None else np.asarray(classes)
        low, high = classifier.clip_range
        target = torch.from_numpy(labels.astype(np.int64)).to(classifier.device)
        start = low + self.init * (high - low)
        x = torch.full((len(labels), *classifier.input_shape), start, device=classifier.device)
        x.requires_grad_(True)
        optimizer = torch.optim.Adam([x], lr=self.lr * (high - low))
        size = float(np.prod(classifier.input_shape))
        for _ in range(self.steps):
            log_proba = torch.log_softmax(classifier.logits(x), dim=1)
            gain = log_proba.gather(1, target[:, None])[:, 0]
            prior = (
                self.tv_weight * _total_variation(x) + self.l2_weight * x.flatten(1).pow(2).sum(1)
            ) / size
            loss = (prior - gain).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                x.clamp_(low, high)
        return x.detach().cpu().numpy().astype(np.float32)

    def run(self, classifier: Classifier, train: Dataset) -> InversionResult:
        """Invert every class and compare with ``train``'s class means."""
        if train.input_shape != classifier.input_shape:
            raise AttackError(
                f"training data has input shape {train.input_shape} but the model expects "
                f"{classifier.input_shape}"
            )
        present = np.unique(train.y)
        if len(present) != classifier.n_classes:
            raise AttackError(
                f"inversion compares with every class's mean, but the training data has only "
                f"{len(present)} of {classifier.n_classes} classes"
            )
        reconstructions = self.invert(classifier)
        means = np.stack([train.x[train.y == c].mean(0) for c in range(classifier.n_classes)])
        proba = classifier.predict_proba(reconstructions)
        cosine, correlation = class_similarity(reconstructions, means)
        return InversionResult(
            reconstructions=reconstructions,
            confidence=proba[np.arange(len(proba)), np.arange(len(proba))],
            cosine=cosine,
            correlation=correlation,
            class_means=means.astype(np.float32),
        )
