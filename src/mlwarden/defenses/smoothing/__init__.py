"""Randomized smoothing: a certified L2 radius (Cohen et al., 2019); SAFER for synonym swaps."""

from mlwarden.defenses.smoothing.safer import (
    SaferCertificate,
    SaferSmoothing,
    safer_certified_accuracy,
)
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
    "SaferCertificate",
    "SaferSmoothing",
    "SmoothedClassifier",
    "certified_accuracy",
    "clopper_pearson_lower",
    "safer_certified_accuracy",
]
