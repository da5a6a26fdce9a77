"""The poisoning check of ``mlwarden assess``: inspect the training data the user gives.

Runs :func:`mlwarden.defenses.poisoning.inspect_training_data` over ``--train-data`` with the
assessed model (spectral signatures and activation clustering on its representations when it
is white-box, with exclusionary reclassification by a small model retrained on the data) and
the model-free statistics, and turns the verdicts into findings mapped to OWASP ML02:2023 /
ML10:2023 and ATLAS AML.T0020 / AML.T0018.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlwarden.assess.config import AssessConfig
from mlwarden.data.dataset import Dataset
from mlwarden.defenses.poisoning import inspect_training_data, train_classifier
from mlwarden.errors import DataError
from mlwarden.models.base import Classifier
from mlwarden.report.findings import Finding, Severity
from mlwarden.report.taxonomy import BACKDOOR_TAXONOMY, DATA_POISONING_TAXONOMY

__all__ = ["LABEL_NOISE_WARN", "PoisoningOutcome", "run_poisoning"]

LABEL_NOISE_WARN = 0.05
"""Estimated label-noise rate above which label errors are a medium-severity finding."""

_MAX_LISTED = 50


@dataclass(frozen=True)
class PoisoningOutcome:
    """Findings, metrics and the report section of the poisoning check."""

    findings: list[Finding]
    metrics: dict[str, float]
    section: dict[str, Any]


def run_poisoning(
    classifier: Classifier,
    train_data: Dataset,
    config: AssessConfig,
    *,
    on_step: Callable[[str], None] | None = None,
) -> PoisoningOutcome:
    """Inspect ``train_data`` for poison and report findings."""
    if train_data.input_shape != classifier.input_shape:
        raise DataError(
            f"--train-data samples have shape {train_data.input_shape} but the model expects "
            f"{classifier.input_shape}"
        )
    inspection = inspect_training_data(
        train_data,
        classifier=classifier,
        retrain=lambda data: train_classifier(data, seed=config.seed),
        seed=config.seed,
        on_step=on_step,
    )
    doc = inspection.to_dict()
    findings: list[Finding] = []
    metrics: dict[str, float] = {"poisoning.n_suspicious": float(doc["n_suspicious"])}

    clustering = inspection.by_name("activation-clustering")
    if clustering is not None:
        poisoned = clustering.details["poisoned_classes"]
        n = int(clustering.flagged.sum())
        metrics["poisoning.backdoor_suspects"] = float(n)
        findings.append(
            Finding(
                id="poisoning.backdoor",
                check="poisoning",
                title="Backdoor clusters in the training data",
                summary=(
                    f"Activation clustering found a separate, relabelled population in class(es) "
                    f"{poisoned} ({n} samples): the signature of a backdoor."
                    if poisoned
                    else "Activation clustering found no class with a separate, relabelled "
                    "population of samples."
                ),
                severity=Severity.HIGH if poisoned else Severity.INFO,
                metrics={"backdoor_suspects": float(n), "poisoned_classes": float(len(poisoned))},
                taxonomy=BACKDOOR_TAXONOMY,
                recommendation=(
                    "Run `mlwarden data inspect --model train --remove --retrain` on the training "
                    "data, review the flagged samples and retrain without them; screen inputs "
                    "at run time with the STRIP detector."
                ),
                details={
                    "classes": clustering.details["classes"],
                    "indices": clustering.indices[:_MAX_LISTED].tolist(),
                },
            )
        )
    errors = inspection.by_name("label-errors")
    if errors is not None:
        rate = float(errors.details["estimated_noise_rate"])
        n = int(errors.flagged.sum())
        metrics["poisoning.label_noise_rate"] = rate
        findings.append(
            Finding(
                id="poisoning.label_errors",
                check="poisoning",
                title="Likely label errors",
                summary=(
                    f"Confident learning flags {n} samples whose labels disagree with "
                    f"out-of-sample predictions (estimated label noise {rate:.1%})."
                ),
                severity=(
                    Severity.MEDIUM
                    if rate > LABEL_NOISE_WARN
                    else Severity.LOW
                    if n
                    else Severity.INFO
                ),
                metrics={"label_noise_rate": rate, "suspected_label_errors": float(n)},
                taxonomy=DATA_POISONING_TAXONOMY,
                recommendation="Review the flagged labels; check who can write to the labelling pipeline.",
                details={"indices": errors.indices[:_MAX_LISTED].tolist()},
            )
        )
    duplicates = inspection.by_name("duplicates")
    if duplicates is not None:
        groups = duplicates.details["groups"]
        conflicting = [g for g in groups if g["conflicting_labels"]]
        findings.append(
            Finding(
                id="poisoning.duplicates",
                check="poisoning",
                title="Duplicated training samples",
                summary=(
                    f"{len(groups)} groups of exact or near-duplicate samples, "
                    f"{len(conflicting)} of them with conflicting labels."
                ),
                severity=Severity.MEDIUM
                if conflicting
                else Severity.LOW
                if groups
                else Severity.INFO,
                metrics={
                    "duplicate_groups": float(len(groups)),
                    "conflicting_groups": float(len(conflicting)),
                },
                taxonomy=DATA_POISONING_TAXONOMY,
                recommendation="Deduplicate the data; resolve conflicting labels at the source.",
                details={"groups": groups[:_MAX_LISTED]},
            )
        )
    section = {
        "train_data": train_data.name,
        "n_samples": len(train_data),
        "detectors": doc["detectors"],
        "skipped": doc["skipped"],
        "n_suspicious": doc["n_suspicious"],
        "suspicious": doc["suspicious"][:_MAX_LISTED],
    }
    return PoisoningOutcome(findings=findings, metrics=metrics, section=section)
