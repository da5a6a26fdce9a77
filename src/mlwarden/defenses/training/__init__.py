"""Robust training: adversarial (PGD, TRADES), Gaussian-noise and differentially private (DP-SGD)."""

from mlwarden.defenses.training.adversarial import METHODS, AdversarialTrainer
from mlwarden.defenses.training.base import EpochRecord, RobustTrainer
from mlwarden.defenses.training.dp import (
    DPTrainingResult,
    PrivacyRecord,
    PrivateTraining,
    make_private,
    train_dp,
)
from mlwarden.defenses.training.noise import GaussianNoiseTrainer

__all__ = [
    "METHODS",
    "AdversarialTrainer",
    "DPTrainingResult",
    "EpochRecord",
    "GaussianNoiseTrainer",
    "PrivacyRecord",
    "PrivateTraining",
    "RobustTrainer",
    "make_private",
    "train_dp",
]
