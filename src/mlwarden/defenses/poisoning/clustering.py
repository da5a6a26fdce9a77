"""Activation clustering (Chen, Carvalho, Baracaldo, Ludwig, Edwards, Lee, Molloy and Srivastava, 2018).

Per class, the representations are reduced to ``n_components`` dimensions (PCA, or ICA as in
the paper) and split in two by 2-means. A poisoned class holds two populations — its own
samples and the triggered samples of other classes that the backdoor maps to it — so the split
isolates the poison in the smaller cluster. A class is judged poisoned when

* its smaller cluster holds at most ``max_relative_size`` of the class (the paper's
  *relative size* criterion), and
* the two clusters are well separated: the Fisher separation ``|μ₁ − μ₂| / √((σ₁² + σ₂²)/2)``
  of the projections on the line joining the centroids is at least ``min_separation`` (a
  stricter stand-in for the paper's silhouette criterion, which is also reported), and
* when a ``reclassify`` function is given, the paper's *exclusionary reclassification*
  agrees: a model trained without every candidate cluster classifies the cluster's samples as
  their label less often than as the most frequent other class (``l / p < 1``). Triggered
  samples of other classes go back to their source classes; a legitimate sub-population of the
  class does not.

The samples of the smaller cluster of a poisoned class are flagged.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score

from mlwarden.defenses.poisoning.base import PoisonDetector, SampleFlags, check_features
from mlwarden.errors import ConfigError

__all__ = ["ActivationClustering", "ClassClusters", "fisher_separation"]


@dataclass
class ClassClusters:
    """The 2-means split of one class: its smaller cluster and how distinct it is."""

    label: int
    members: np.ndarray
    relative_size: float
    separation: float
    silhouette: float
    reclassification_ratio: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON values (the member indices as their count)."""
        return {
            "class": self.label,
            "small_cluster_size": len(self.members),
            "relative_size": self.relative_size,
            "separation": self.separation,
            "silhouette": self.silhouette,
            "reclassification_ratio": self.reclassification_ratio,
        }


def fisher_separation(points: np.ndarray, assignment: np.ndarray) -> float:
    """Fisher separation of two clusters along the line joining their centroids."""
    a, b = points[assignment == 0], points[assignment == 1]
    if len(a) < 2 or len(b) < 2:
        return 0.0
    direction = a.mean(axis=0) - b.mean(axis=0)
    norm = float(np.linalg.norm(direction))
    if norm == 0.0:
        return 0.0
    pa, pb = a @ (direction / norm), b @ (direction / norm)
    spread = np.sqrt((pa.var() + pb.var()) / 2.0)
    return float(abs(pa.mean() - pb.mean()) / spread) if spread > 0 else float("inf")


class ActivationClustering(PoisonDetector):
    """2-means per class on reduced activations; flags the smaller cluster of poisoned classes.

    Parameters
    ----------
    n_components
        Dimensions kept by the reduction (10 in the paper).
    reduction
        ``"pca"`` (deterministic) or ``"ica"`` (FastICA, as in the paper).
    max_relative_size
        The smaller cluster must hold at most this fraction of its class.
    min_separation
        Smallest Fisher separation of the two clusters for a poisoned class. On the digits CNN's
        conv features, clean classes measure 3.2–6.0 and classes holding 5% BadNets poison
        6.9–10.4; 6.5 sits between them (the reclassification is the second safeguard).
    seed
        Seed of k-means (and ICA).
    """

    name = "activation-clustering"

    def __init__(
        self,
        *,
        n_components: int = 10,
        reduction: str = "pca",
        max_relative_size: float = 0.35,
        min_separation: float = 6.5,
        seed: int = 0,
    ) -> None:
        self.n_components = n_components
        self.reduction = reduction
        self.max_relative_size = max_relative_size
        self.min_separation = min_separation
        self.seed = seed

    def _validate(self) -> None:
        if (
            isinstance(self.n_components, bool)
            or not isinstance(self.n_components, int)
            or self.n_components < 1
        ):
            raise ConfigError(f"n_components must be a positive integer, got {self.n_components!r}")
        if self.reduction not in ("pca", "ica"):
            raise ConfigError(f"reduction must be 'pca' or 'ica', got {self.reduction!r}")
        if not 0 < self.max_relative_size <= 0.5:
            raise ConfigError(
                f"max_relative_size must be in (0, 0.5], got {self.max_relative_size!r}"
            )
        if not self.min_separation >= 0:
            raise ConfigError(f"min_separation must be >= 0, got {self.min_separation!r}")

    def _reduce(self, features: np.ndarray) -> np.ndarray:
        k = min(self.n_components, features.shape[1], len(features) - 1)
        centred = features - features.mean(axis=0)
        if self.reduction == "ica":
            from sklearn.decomposition import FastICA

            with warnings.catch_warnings():  # FastICA warns when it stops at max_iter
                warnings.simplefilter("ignore")
                ica = FastICA(n_components=k, random_state=self.seed, max_iter=500)
                return np.asarray(ica.fit_transform(centred))
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        return centred @ vt[:k].T

    def clusters(self, features: np.ndarray, labels: np.ndarray) -> list[ClassClusters]:
        """Per class: the 2-means split of its reduced activations."""
        self._validate()
        features, labels = check_features(features, labels)
        out: list[ClassClusters] = []
        for c in np.unique(labels):
            members = np.flatnonzero(labels == c)
            if len(members) < 4:
                continue
            reduced = self._reduce(features[members])
            assignment = KMeans(n_clusters=2, n_init=10, random_state=self.seed).fit_predict(
                reduced
            )
            sizes = np.bincount(assignment, minlength=2)
            if sizes.min() == 0:
                continue
            smaller = int(np.argmin(sizes))
            out.append(
                ClassClusters(
                    label=int(c),
                    members=members[assignment == smaller],
                    relative_size=float(sizes.min() / len(members)),
                    separation=fisher_separation(reduced, assignment),
                    silhouette=float(silhouette_score(reduced, assignment)),
                )
            )
        return out

    def detect(
        self,
        features: np.ndarray,
        labels: np.ndarray,
        *,
        reclassify: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> SampleFlags:
        """Cluster every class and flag the smaller cluster of each class judged poisoned.

        Parameters
        ----------
        features, labels
            ``(n, d)`` representations and their training labels.
        reclassify
            Optional exclusionary reclassification: given the boolean mask of samples to keep,
            train a model on them and return its predicted labels for *all* ``n`` samples.
        """
        labels = np.asarray(labels)
        per_class = self.clusters(features, labels)
        candidates = [
            c
            for c in per_class
            if c.relative_size <= self.max_relative_size and c.separation >= self.min_separation
        ]
        if reclassify is not None and candidates:
            keep = np.ones(len(labels), dtype=bool)
            for c in candidates:
                keep[c.members] = False
            predictions = np.asarray(reclassify(keep))
            n_classes = max(int(labels.max()), int(predictions.max())) + 1
            for c in candidates:
                counts = np.bincount(predictions[c.members], minlength=n_classes)
                other = int(np.delete(counts, c.label).max())
                c.reclassification_ratio = int(counts[c.label]) / max(other, 1)
            candidates = [c for c in candidates if (c.reclassification_ratio or 0.0) < 1.0]
        scores = np.zeros(len(labels))
        flagged = np.zeros(len(labels), dtype=bool)
        for c in per_class:
            scores[c.members] = c.separation
        for c in candidates:
            flagged[c.members] = True
        return SampleFlags(
            detector=self.name,
            scores=scores,
            flagged=flagged,
            reason=(
                "in the small, well-separated activation cluster of a class judged poisoned"
                + (" (confirmed by exclusionary reclassification)" if reclassify else "")
            ),
            details={
                "classes": [c.to_dict() for c in per_class],
                "poisoned_classes": sorted(c.label for c in candidates),
            },
        )
