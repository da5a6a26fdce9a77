"""Loss-threshold membership inference and the metrics every membership attack is scored with.

The attack of Yeom, Giacomelli, Fredrikson and Jha (2018), "Privacy Risk in Machine Learning:
Analyzing the Connection to Overfitting": a sample whose cross-entropy loss under the model is
low is guessed to be a training member. Its score is the negative loss; any threshold on it
gives one (FPR, TPR) point of the ROC curve.

Metrics follow Carlini et al. (2022), "Membership Inference Attacks From First Principles": the
ROC AUC and balanced accuracy summarise the average case, the TPR at a low FPR (0.1% and 1%) the
worst case that matters for privacy. A TPR at an FPR below ``1 / n_non_members`` cannot be
measured; it is interpolated from the ROC and flagged in :attr:`MembershipMetrics.fpr_resolution`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from sklearn import metrics as sk_metrics

from mlwarden.data.dataset import Dataset
from mlwarden.errors import AttackError
from mlwarden.models.base import Classifier, DifferentiableClassifier

__all__ = [
    "REPORTED_FPRS",
    "LossThresholdAttack",
    "MembershipMetrics",
    "MembershipResult",
    "balanced_accuracy",
    "check_membership_data",
    "per_sample_loss",
    "roc_auc",
    "roc_curve",
    "tpr_at_fpr",
]

REPORTED_FPRS: tuple[float, ...] = (0.001, 0.01)
"""The false-positive rates at which every membership result reports its TPR."""


def _check_scores(scores: np.ndarray, is_member: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    m = np.asarray(is_member)
    if s.ndim != 1 or m.shape != s.shape:
        raise AttackError(
            f"scores and membership labels must be 1-D of the same length, got {s.shape} and {m.shape}"
        )
    if m.dtype != bool:
        if not np.isin(m, (0, 1)).all():
            raise AttackError("membership labels must be booleans or 0/1")
        m = m.astype(bool)
    if not np.isfinite(s).all():
        raise AttackError(f"scores contain {int((~np.isfinite(s)).sum())} NaN/inf values")
    if m.all() or not m.any():
        raise AttackError(
            f"membership metrics need both members and non-members, got {int(m.sum())} members "
            f"of {len(m)}"
        )
    return s, m


def roc_curve(
    scores: np.ndarray, is_member: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ROC curve of a score where higher means "member".

    Returns ``(fpr, tpr, thresholds)``: point ``i`` flags every sample with
    ``score >= thresholds[i]``. The first point is ``(0, 0)`` at threshold ``+inf``; tied scores
    make one point. This is :func:`sklearn.metrics.roc_curve` with ``drop_intermediate=False``
    (every distinct threshold is kept, so low-FPR points are never dropped).
    """
    s, m = _check_scores(scores, is_member)
    fpr, tpr, thresholds = sk_metrics.roc_curve(m, s, drop_intermediate=False)
    return fpr, tpr, thresholds


def roc_auc(scores: np.ndarray, is_member: np.ndarray) -> float:
    """Area under the ROC curve (:func:`sklearn.metrics.roc_auc_score`: ties count one half)."""
    s, m = _check_scores(scores, is_member)
    return float(sk_metrics.roc_auc_score(m, s))


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, target_fpr: float) -> float:
    """The TPR at ``target_fpr``, read off the ROC curve by linear interpolation.

    Takes the highest TPR among points with ``fpr <= target_fpr`` and interpolates linearly
    towards the next point to the right (a randomised choice between the two thresholds
    achieves every point on that segment).
    """
    if not 0.0 <= target_fpr <= 1.0:
        raise AttackError(f"target_fpr must be in [0, 1], got {target_fpr}")
    left = int(np.searchsorted(fpr, target_fpr, side="right")) - 1
    if fpr[left] == target_fpr or left == len(fpr) - 1:
        return float(tpr[left])
    right = left + 1
    weight = (target_fpr - fpr[left]) / (fpr[right] - fpr[left])
    return float(tpr[left] + weight * (tpr[right] - tpr[left]))


def balanced_accuracy(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """The best balanced accuracy ``(TPR + 1 - FPR) / 2`` over all thresholds."""
    return float(np.max((tpr + 1.0 - fpr) / 2.0))


@dataclass(frozen=True)
class MembershipMetrics:
    """The summary of one membership attack's ROC curve.

    Attributes
    ----------
    auc
        ROC AUC (0.5: no better than guessing).
    balanced_accuracy
        Best balanced accuracy over thresholds.
    tpr_at_fpr
        ``{fpr: tpr}`` at :data:`REPORTED_FPRS`.
    n_members, n_non_members
        Sample counts.
    fpr_resolution
        ``1 / n_non_members``: the smallest non-zero FPR that can be measured. A TPR at a lower
        FPR is an interpolation between the ROC's first two points, not a measurement.
    fpr, tpr
        The full ROC curve.
    """

    auc: float
    balanced_accuracy: float
    tpr_at_fpr: dict[float, float]
    n_members: int
    n_non_members: int
    fpr_resolution: float
    fpr: np.ndarray = field(repr=False)
    tpr: np.ndarray = field(repr=False)

    @classmethod
    def from_scores(cls, scores: np.ndarray, is_member: np.ndarray) -> MembershipMetrics:
        """Compute every metric from scores (higher means member) and true membership."""
        s, m = _check_scores(scores, is_member)
        fpr, tpr, _ = roc_curve(s, m)
        return cls(
            auc=float(sk_metrics.roc_auc_score(m, s)),
            balanced_accuracy=balanced_accuracy(fpr, tpr),
            tpr_at_fpr={f: tpr_at_fpr(fpr, tpr, f) for f in REPORTED_FPRS},
            n_members=int(m.sum()),
            n_non_members=int((~m).sum()),
            fpr_resolution=1.0 / float((~m).sum()),
            fpr=fpr,
            tpr=tpr,
        )

    def measured(self, target_fpr: float) -> bool:
        """Whether the TPR at ``target_fpr`` is backed by at least one false positive's worth of data."""
        return target_fpr * self.n_non_members >= 1.0

    def as_metrics(self, prefix: str) -> dict[str, float]:
        """Flat metrics such as ``{prefix}_auc`` and ``{prefix}_tpr@0.01``."""
        out = {f"{prefix}_auc": self.auc, f"{prefix}_balanced_accuracy": self.balanced_accuracy}
        out.update({f"{prefix}_tpr@{f:g}": v for f, v in self.tpr_at_fpr.items()})
        return out

    def to_dict(self, max_points: int = 400) -> dict[str, Any]:
        """A JSON-serialisable view with the ROC curve thinned to at most ``max_points`` points."""
        keep = _thin(len(self.fpr), max_points)
        return {
            "auc": self.auc,
            "balanced_accuracy": self.balanced_accuracy,
            "tpr_at_fpr": {
                f"{f:g}": {"tpr": v, "measured": self.measured(f)}
                for f, v in self.tpr_at_fpr.items()
            },
            "n_members": self.n_members,
            "n_non_members": self.n_non_members,
            "fpr_resolution": self.fpr_resolution,
            "roc": {
                "fpr": [float(v) for v in self.fpr[keep]],
                "tpr": [float(v) for v in self.tpr[keep]],
            },
        }


def _thin(n: int, max_points: int) -> np.ndarray:
    """Indices of at most ``max_points`` ROC points, denser at low FPR (log spacing), ends kept."""
    if n <= max_points:
        return np.arange(n)
    grid = np.unique(np.round(np.geomspace(1, n, max_points)).astype(np.int64) - 1)
    return np.unique(np.r_[0, grid, n - 1])


@dataclass(frozen=True)
class MembershipResult:
    """What a membership attack produced: a score per sample (higher means member)."""

    attack: str
    scores: np.ndarray
    is_member: np.ndarray
    metrics: MembershipMetrics
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary (scores are not included)."""
        return {"attack": self.attack, "params": dict(self.params), **self.metrics.to_dict()}


def check_membership_data(classifier: Classifier, members: Dataset, non_members: Dataset) -> None:
    """Raise :class:`AttackError` if the two datasets cannot be scored by ``classifier``."""
    for what, data in (("members", members), ("non_members", non_members)):
        if data.input_shape != classifier.input_shape:
            raise AttackError(
                f"{what} have input shape {data.input_shape} but the model expects "
                f"{classifier.input_shape}"
            )
        if int(data.y.max()) >= classifier.n_classes:
            raise AttackError(
                f"{what} have label {int(data.y.max())} but the model has "
                f"{classifier.n_classes} classes"
            )


def _logits_or_log_proba(classifier: Classifier, x: np.ndarray) -> torch.Tensor:
    """Float64 log-probabilities (exact from logits for white-box models)."""
    if isinstance(classifier, DifferentiableClassifier):
        parts = []
        with torch.no_grad():
            for i in range(0, len(x), classifier.batch_size):
                batch = torch.from_numpy(np.ascontiguousarray(x[i : i + classifier.batch_size]))
                parts.append(classifier.logits(batch.to(classifier.device)).double().cpu())
        return torch.log_softmax(torch.cat(parts), dim=1)
    proba = torch.from_numpy(classifier.predict_proba(x).astype(np.float64))
    return torch.log(proba.clamp_min(1e-300))


def per_sample_loss(classifier: Classifier, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Cross-entropy loss of each sample, in float64 (from logits when the model has them)."""
    log_proba = _logits_or_log_proba(classifier, classifier.check_inputs(x))
    labels = torch.from_numpy(np.asarray(y, dtype=np.int64))
    return (-log_proba.gather(1, labels[:, None])[:, 0]).numpy()


def logit_confidence(classifier: Classifier, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """LiRA's logit-scaled confidence ``φ = log(p_y / (1 - p_y))`` of each sample (float64).

    Computed as ``log p_y - log Σ_{j≠y} p_j`` so that confident predictions do not round to
    ``p_y = 1``.
    """
    log_proba = _logits_or_log_proba(classifier, classifier.check_inputs(x))
    labels = torch.from_numpy(np.asarray(y, dtype=np.int64))
    return phi_from_log_proba(log_proba, labels).numpy()


def phi_from_log_proba(log_proba: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``log p_y - log Σ_{j≠y} p_j`` over the last dimension (any leading batch dims)."""
    own = log_proba.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    mask = torch.nn.functional.one_hot(labels, log_proba.shape[-1]).bool()
    others = torch.logsumexp(log_proba.masked_fill(mask, -math.inf), dim=-1)
    return own - others


class LossThresholdAttack:
    """Membership inference by thresholding the per-sample loss (Yeom et al., 2018).

    The score of a sample is its negative cross-entropy loss. Every threshold is evaluated (the
    ROC curve); :attr:`MembershipResult.params` also records the accuracy at Yeom's threshold,
    the members' mean loss, which an attacker who knows the training loss would use.
    """

    name = "loss-threshold"

    def run(
        self, classifier: Classifier, members: Dataset, non_members: Dataset
    ) -> MembershipResult:
        """Score ``members`` (training samples) against ``non_members`` (held-out samples)."""
        check_membership_data(classifier, members, non_members)
        loss_in = per_sample_loss(classifier, members.x, members.y)
        loss_out = per_sample_loss(classifier, non_members.x, non_members.y)
        scores = -np.r_[loss_in, loss_out]
        is_member = np.r_[np.ones(len(loss_in), bool), np.zeros(len(loss_out), bool)]
        threshold = float(loss_in.mean())
        yeom = 0.5 * (float((loss_in <= threshold).mean()) + float((loss_out > threshold).mean()))
        return MembershipResult(
            attack=self.name,
            scores=scores,
            is_member=is_member,
            metrics=MembershipMetrics.from_scores(scores, is_member),
            params={"yeom_threshold": threshold, "yeom_balanced_accuracy": yeom},
        )
