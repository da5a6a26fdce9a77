"""The clean-accuracy finding every assessment opens with, for any modality."""

from __future__ import annotations

from mlwarden.report.findings import Finding, Severity
from mlwarden.report.taxonomy import Taxonomy

__all__ = ["clean_accuracy_finding"]


def clean_accuracy_finding(accuracy: float, n: int, *, inputs: str = "samples") -> Finding:
    """``model.clean_accuracy``: the share of ``n`` evaluation ``inputs`` classified correctly."""
    return Finding(
        id="model.clean_accuracy",
        check="model",
        title="Clean accuracy",
        summary=f"The model classifies {accuracy:.1%} of {n} evaluation {inputs} correctly.",
        severity=Severity.INFO,
        metrics={"clean_accuracy": accuracy},
        taxonomy=Taxonomy(nist=("MEASURE 2.3",)),
        recommendation="Compare with the accuracy expected in production before reading robustness figures.",
    )
