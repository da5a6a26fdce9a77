"""Randomized smoothing: a classifier with a certified L2 radius (Cohen et al., 2019)."""

from mlwarden.defenses.smoothing.smoothed import (
    ABSTAIN,
    CertificationResult,
    SmoothedClassifier,
    certified_accuracy,
    clopper_pearson_lower,
)

__all__ = [
    "ABSTAIN",
    "CertificationResult",
    "SmoothedClassifier",
    "certified_accuracy",
    "clopper_pearson_lower",
]
