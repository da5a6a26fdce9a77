"""A hand-built :class:`Report` (no model, no attack) for testing what writers render."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from mlwarden.report import Finding, GateResult, Report, Severity, Taxonomy

EVASION_TAXONOMY = Taxonomy(
    atlas=("AML.T0043", "AML.T0043.000", "AML.T0015"),
    owasp=("ML01:2023",),
    nist=("MEASURE 2.7", "MANAGE 1.3"),
)


def _finding(finding_id: str, severity: Severity, **metrics: float) -> Finding:
    return Finding(
        id=finding_id,
        check="evasion",
        title=f"Evasion by {finding_id}",
        summary=f"{finding_id} lowers accuracy.",
        severity=severity,
        metrics=dict(metrics),
        taxonomy=EVASION_TAXONOMY,
        recommendation="Harden the model with adversarial training.",
        details={"curve": []},
    )


def _examples(count: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    clean = rng.random((count, 1, 8, 8)).round(4)
    adversarial = np.clip(clean + rng.choice([-0.1, 0.1], clean.shape), 0, 1).round(4)
    return {
        "attack": "pgd",
        "eps": 0.1,
        "indices": list(range(count)),
        "labels": [1] * count,
        "adversarial_predictions": [7] * count,
        "clean": clean.tolist(),
        "adversarial": adversarial.tolist(),
    }


@pytest.fixture
def make_report() -> Callable[..., Report]:
    """Build a small report; ``gates`` and ``examples`` (a count, or 0) are optional."""

    def make(
        *,
        findings: list[Finding] | None = None,
        gates: list[GateResult] | None = None,
        examples: int = 0,
    ) -> Report:
        rows = {
            "fgsm": [
                {"eps": 0.05, "robust_accuracy": 0.8, "mean_queries": 1.0},
                {"eps": 0.1, "robust_accuracy": 0.6, "mean_queries": 1.0},
            ],
            "pgd": [
                {"eps": 0.05, "robust_accuracy": 0.7, "mean_queries": 12.0},
                {"eps": 0.1, "robust_accuracy": 0.3, "mean_queries": 18.5},
            ],
        }
        metrics = {
            "clean_accuracy": 0.95,
            "robust_accuracy@0.05": 0.7,
            "robust_accuracy@0.1": 0.3,
        }
        return Report(
            model={
                "name": "toy-model",
                "path": "models/toy.pt2",
                "format": "pt2",
                "sha256": "0" * 64,
                "training": None,
                "n_classes": 10,
                "input_shape": [1, 8, 8],
                "clip_range": [0.0, 1.0],
                "white_box": True,
            },
            data={
                "name": "toy-data",
                "kind": "image",
                "n_samples_total": 100,
                "n_samples_evaluated": 50,
                "sha256": "f" * 64,
                "input_shape": [1, 8, 8],
                "n_classes": 10,
            },
            config={"seed": 0, "epsilons": [0.05, 0.1], "gates": []},
            findings=findings
            if findings is not None
            else [
                _finding("evasion.fgsm", Severity.MEDIUM, clean_accuracy=0.95),
                _finding("evasion.pgd", Severity.HIGH, clean_accuracy=0.95),
            ],
            gates=gates or [],
            metrics=metrics,
            sections={
                "evasion": {
                    "norm": "linf",
                    "epsilons": [0.05, 0.1],
                    "clean_accuracy": 0.95,
                    "worst_case_robust_accuracy": [
                        {"eps": 0.05, "robust_accuracy": 0.7},
                        {"eps": 0.1, "robust_accuracy": 0.3},
                    ],
                    "curves": rows,
                    "skipped": [],
                    "examples": _examples(examples) if examples else None,
                }
            },
            created_at="2024-01-01T00:00:00+00:00",
            duration_s=1.23456,
            tool_version="0.0.test",
        )

    return make


@pytest.fixture
def make_finding() -> Callable[..., Finding]:
    """An evasion finding with the given id and severity."""
    return _finding
