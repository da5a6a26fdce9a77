"""The privacy record a DP-trained model carries: its (ε, δ) guarantee and how it was obtained."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["RECORD_VERSION", "PrivacyRecord"]

RECORD_VERSION = 2
"""Version 2: ``dataset_sha256`` is :meth:`~mlwarden.data.Dataset.digest` over the bytes *and*
the shape and dtype of the data (version 1 hashed the bytes only, so a reshaped dataset kept
its digest). Records read without a version are version 1."""


@dataclass(frozen=True)
class PrivacyRecord:
    """The (ε, δ)-DP guarantee a model was trained under and how it was obtained.

    Attributes
    ----------
    epsilon
        The target ε the noise was calibrated to: the claimed guarantee. The accountant's ε
        after training (``epsilon_spent``) never exceeds it. When the noise multiplier was
        given instead of a target, the ε spent.
    delta
        The target δ.
    accountant
        ``"rdp"`` or ``"prv"``: the accountant that calibrated the noise and tracked the spend.
    noise_multiplier
        σ: the noise standard deviation divided by ``max_grad_norm``.
    sample_rate
        q: each sample's probability of joining a (Poisson) batch.
    steps
        Noisy optimizer steps taken.
    max_grad_norm
        C: every per-sample gradient is clipped to this L2 norm.
    epochs, batch_size
        Training length and the expected (logical) batch size.
    dataset_sha256
        SHA-256 of the training data (:meth:`mlwarden.data.Dataset.digest`).
    epsilon_per_epoch
        The chosen accountant's ε spent after each epoch.
    epsilon_rdp, epsilon_prv
        What each accountant says for the finished run (side by side).
    n_samples
        Training-set size (δ must be below ``1/n_samples``).
    grad_sample_mode
        How Opacus computed per-sample gradients.
    converted_layers
        Layers :func:`~mlwarden.defenses.training.dp.make_dp_compatible` replaced (e.g.
        ``"1: BatchNorm2d -> GroupNorm"``).
    record_version
        :data:`RECORD_VERSION` when written; older records say 1 (their digest ignores shape).
    privacy_unit
        What one unit of the guarantee is: ``"sample"`` (one training example),
        ``"line"`` (one line of a text corpus: a line repeated ``k`` times is protected only
        at group level ``k``) or ``"distinct-line"`` (exact duplicate lines were merged before
        training: (ε, δ) covers every copy of a line together).
    duplicates_removed
        Training examples dropped as exact duplicates before training (``"distinct-line"``).
    notes
        What the guarantee does not cover, in words (e.g. near-duplicates).
    secure_mode
        Whether Opacus drew the noise and the batches from a cryptographically secure generator
        (``False``: PyTorch's seedable generator, fine for experiments, not for a release).
    """

    epsilon: float
    delta: float
    accountant: str
    noise_multiplier: float
    sample_rate: float
    steps: int
    max_grad_norm: float
    epochs: int
    batch_size: int
    dataset_sha256: str
    epsilon_per_epoch: tuple[float, ...] = ()
    epsilon_rdp: float | None = None
    epsilon_prv: float | None = None
    n_samples: int = 0
    grad_sample_mode: str = "hooks"
    converted_layers: tuple[str, ...] = ()
    secure_mode: bool = False
    privacy_unit: str = "sample"
    duplicates_removed: int = 0
    notes: tuple[str, ...] = ()
    record_version: int = RECORD_VERSION

    @property
    def epsilon_spent(self) -> float:
        """The chosen accountant's ε at the end of training."""
        return self.epsilon_per_epoch[-1] if self.epsilon_per_epoch else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view (``epsilon_spent`` included)."""
        out = asdict(self)
        out["epsilon_per_epoch"] = list(self.epsilon_per_epoch)
        out["notes"] = list(self.notes)
        out["epsilon_spent"] = self.epsilon_spent
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PrivacyRecord:
        """The record :meth:`to_dict` wrote (extra keys ignored)."""
        names = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in data.items() if k in names}
        values["epsilon_per_epoch"] = tuple(values.get("epsilon_per_epoch", ()))
        values["converted_layers"] = tuple(values.get("converted_layers", ()))
        values["notes"] = tuple(values.get("notes", ()))
        values.setdefault("record_version", 1)
        return cls(**values)
