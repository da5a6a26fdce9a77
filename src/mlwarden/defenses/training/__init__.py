"""Robust training: adversarial training (PGD, TRADES) and Gaussian-noise training."""

from mlwarden.defenses.training.adversarial import METHODS, AdversarialTrainer
from mlwarden.defenses.training.base import EpochRecord, RobustTrainer
from mlwarden.defenses.training.noise import GaussianNoiseTrainer

__all__ = ["METHODS", "AdversarialTrainer", "EpochRecord", "GaussianNoiseTrainer", "RobustTrainer"]
