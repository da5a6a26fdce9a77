"""The likelihood-ratio membership attack, LiRA (Carlini, Chien, Nasr, Song, Terzis and Tramèr,
2022, "Membership Inference Attacks From First Principles").

Reference ("shadow") models are trained on random halves of a data pool drawn like the target's
training data: the audited members and non-members (plus any extra population data). Shadows
come in complementary pairs, so each pool sample is left out of (about) half of them. For each
audited sample the logit-scaled confidence ``φ = log(p_y / (1 - p_y))`` of the shadows that did
not train on it (OUT) and of those that did (IN) is fitted with a Gaussian:

* offline: score ``(φ_target - μ_out) / σ_out`` (a one-sided test against the OUT distribution);
* online: score ``log N(φ_target; μ_in, σ_in²) - log N(φ_target; μ_out, σ_out²)``.

With few shadows (Carlini et al. suggest under 64) one global variance, pooled over all
samples, is more reliable than per-sample variances (``global_variance=True``).
All shadows are trained at once, stacked with ``torch.func``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from mlwarden.attacks.privacy._shadows import train_stacked
from mlwarden.attacks.privacy.membership import (
    MembershipMetrics,
    MembershipResult,
    check_membership_data,
    logit_confidence,
    phi_from_log_proba,
)
from mlwarden.data.dataset import Dataset
from mlwarden.errors import AttackError
from mlwarden.models.base import Classifier

__all__ = ["LiRA", "complementary_keep"]

_MIN_STD = 1e-6


def complementary_keep(n_shadows: int, n_samples: int, seed: int) -> np.ndarray:
    """A ``(n_shadows, n_samples)`` inclusion mask built from complementary pairs.

    Shadow ``2j`` keeps a random half of the samples and shadow ``2j + 1`` the other half (minus
    one random sample when ``n_samples`` is odd), so every shadow keeps ``n_samples // 2``
    samples and each sample is IN for half of the shadows.
    """
    if n_shadows < 2 or n_shadows % 2:
        raise AttackError(f"n_shadows must be an even number >= 2, got {n_shadows}")
    if n_samples < 4:
        raise AttackError(f"LiRA needs a pool of at least 4 samples, got {n_samples}")
    rng = np.random.default_rng(seed)
    half = n_samples // 2
    keep = np.zeros((n_shadows, n_samples), dtype=bool)
    for j in range(n_shadows // 2):
        order = rng.permutation(n_samples)
        keep[2 * j, order[:half]] = True
        keep[2 * j + 1, order[half : 2 * half]] = True
    return keep


class LiRA:
    """LiRA membership inference with shadow models (Carlini et al., 2022).

    Parameters
    ----------
    make_model
        Builds one fresh, untrained shadow model (same architecture as the target, no
        BatchNorm). Called ``n_shadows`` times after seeding.
    n_shadows
        Number of shadow models (even; each sample is OUT for half of them).
    epochs, lr, batch_size, weight_decay
        The shadows' training recipe (Adam, cross-entropy); match the target's.
    online
        Use IN and OUT Gaussians (online LiRA) instead of OUT only (offline).
    global_variance
        One variance pooled over all samples instead of one per sample.
    seed
        Seeds the pool split, initialisation and shuffling.
    """

    name = "lira"

    def __init__(
        self,
        *,
        make_model: Callable[[], nn.Module],
        n_shadows: int = 16,
        epochs: int = 30,
        lr: float = 1e-3,
        batch_size: int = 64,
        weight_decay: float = 0.0,
        online: bool = False,
        global_variance: bool = True,
        seed: int = 0,
    ) -> None:
        self.make_model = make_model
        self.n_shadows = n_shadows
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.online = online
        self.global_variance = global_variance
        self.seed = seed

    def shadow_confidences(self, pool: Dataset) -> tuple[np.ndarray, np.ndarray]:
        """Train the shadows on halves of ``pool``; return ``(phi, keep)``, both ``(K, n)``."""
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise AttackError(
                f"lira: epochs and batch_size must be >= 1 and lr > 0, got epochs={self.epochs}, "
                f"batch_size={self.batch_size}, lr={self.lr}"
            )
        keep = complementary_keep(self.n_shadows, len(pool), self.seed)
        shadows = train_stacked(
            self.make_model,
            pool.x,
            pool.y,
            keep,
            epochs=self.epochs,
            lr=self.lr,
            batch_size=self.batch_size,
            weight_decay=self.weight_decay,
            seed=self.seed,
        )
        logits = shadows.logits(torch.from_numpy(pool.x)).double()
        labels = torch.from_numpy(pool.y).expand(len(keep), -1)
        phi = phi_from_log_proba(torch.log_softmax(logits, dim=-1), labels).numpy()
        return phi, keep

    def score(self, phi_target: np.ndarray, phi_shadow: np.ndarray, keep: np.ndarray) -> np.ndarray:
        """LiRA scores from the target's and the shadows' confidences (higher means member)."""
        out_mu, out_std = _gaussian(phi_shadow, ~keep, self.global_variance)
        if not self.online:
            return (phi_target - out_mu) / out_std
        in_mu, in_std = _gaussian(phi_shadow, keep, self.global_variance)
        return _log_normal(phi_target, in_mu, in_std) - _log_normal(phi_target, out_mu, out_std)

    def run(
        self,
        classifier: Classifier,
        members: Dataset,
        non_members: Dataset,
        *,
        population: Dataset | None = None,
    ) -> MembershipResult:
        """Score ``members`` against ``non_members`` with shadows trained on halves of both
        (plus ``population``, extra data drawn like the training data, if given)."""
        check_membership_data(classifier, members, non_members)
        parts = [members, non_members] + ([population] if population is not None else [])
        pool = Dataset(
            name="lira-pool",
            x=np.concatenate([p.x for p in parts]),
            y=np.concatenate([p.y for p in parts]),
            n_classes=classifier.n_classes,
            clip_range=members.clip_range,
        )
        phi_shadow, keep = self.shadow_confidences(pool)
        audited = len(members) + len(non_members)
        phi_target = logit_confidence(classifier, pool.x[:audited], pool.y[:audited])
        scores = self.score(phi_target, phi_shadow[:, :audited], keep[:, :audited])
        is_member = np.r_[np.ones(len(members), bool), np.zeros(len(non_members), bool)]
        return MembershipResult(
            attack=f"lira-{'online' if self.online else 'offline'}",
            scores=scores,
            is_member=is_member,
            metrics=MembershipMetrics.from_scores(scores, is_member),
            params={
                "n_shadows": self.n_shadows,
                "epochs": self.epochs,
                "lr": self.lr,
                "batch_size": self.batch_size,
                "online": self.online,
                "global_variance": self.global_variance,
                "pool_size": len(pool),
            },
        )


def _gaussian(
    phi: np.ndarray, mask: np.ndarray, global_variance: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample mean and standard deviation of ``phi`` over the models selected by ``mask``."""
    counts = mask.sum(axis=0)
    if (counts == 0).any():
        raise AttackError(
            f"{int((counts == 0).sum())} samples have no shadow model on that side; use more shadows"
        )
    mu = np.where(mask, phi, 0.0).sum(axis=0) / counts
    residual = np.where(mask, phi - mu, 0.0) ** 2
    if global_variance or (counts < 2).any():
        std = np.full_like(mu, np.sqrt(residual.sum() / max(int(counts.sum()) - len(mu), 1)))
    else:
        std = np.sqrt(residual.sum(axis=0) / (counts - 1))
    return mu, np.maximum(std, _MIN_STD)


def _log_normal(value: np.ndarray, mu: np.ndarray, std: np.ndarray) -> np.ndarray:
    return -0.5 * ((value - mu) / std) ** 2 - np.log(std)
