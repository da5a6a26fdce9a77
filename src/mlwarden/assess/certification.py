"""The certification check: certified accuracy of a randomized-smoothing model at L2 radii.

It runs when the model's sidecar records ``smoothing.sigma`` (``mlwarden harden smoothing``
writes it) or the configuration sets ``smoothing: {sigma: ...}``. The smoothed classifier
(Cohen, Rosenfeld and Kolter, 2019) is certified on a seeded subset of the evaluation data;
the report holds the certified accuracy at every radius of a grid (a curve) and at the table
radii 0, 0.25, 0.5 and 1.0. The finding is a mitigation of OWASP ML01:2023.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from mlwarden.assess.config import SMOOTHING_DEFAULTS, AssessConfig
from mlwarden.assess.evasion import EvasionOutcome
from mlwarden.data.dataset import Dataset
from mlwarden.defenses.smoothing import SmoothedClassifier, certified_accuracy
from mlwarden.errors import ConfigError, ModelError
from mlwarden.models.base import Classifier
from mlwarden.report.findings import Finding, Severity
from mlwarden.report.taxonomy import Taxonomy

__all__ = ["TABLE_RADII", "run_certification", "smoothing_settings"]

TABLE_RADII = (0.0, 0.25, 0.5, 1.0)
"""The L2 radii of the certified-accuracy table."""

_CURVE_POINTS = 41


def smoothing_settings(classifier: Classifier, config: AssessConfig) -> dict[str, Any] | None:
    """The smoothing settings to certify with, or ``None`` when the model is not smoothed.

    Settings in ``config.smoothing`` win; ``sigma`` comes from there or else from the model's
    sidecar (``smoothing.sigma``, written by ``mlwarden harden smoothing``); the other settings
    take their defaults.

    Raises
    ------
    ConfigError
        ``config.smoothing`` gives no sigma and the model's sidecar records none.
    """
    recorded = classifier.info.get("metadata", {}).get("smoothing")
    sigma = recorded.get("sigma") if isinstance(recorded, dict) else None
    if sigma is not None and (
        isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma > 0
    ):
        raise ModelError(f"the model's sidecar records an invalid smoothing sigma {sigma!r}")
    settings = {**SMOOTHING_DEFAULTS, **(config.smoothing or {})}
    if settings.get("sigma") is None:
        if sigma is None:
            if config.smoothing is not None:
                raise ConfigError(
                    "smoothing: no sigma given and the model's sidecar records none; set "
                    "smoothing.sigma to the noise level the model was trained with"
                )
            return None
        settings["sigma"] = float(sigma)
    return settings


def run_certification(
    classifier: Classifier,
    data: Dataset,
    config: AssessConfig,
    settings: dict[str, Any],
    *,
    on_step: Callable[[str], None] | None = None,
) -> EvasionOutcome:
    """Certify the smoothed model on at most ``settings['max_samples']`` evaluation samples."""
    sigma = float(settings["sigma"])
    sample = data.sample(settings["max_samples"], config.seed)
    if on_step:
        on_step(f"certification σ={sigma:g}")
    smoothed = SmoothedClassifier(
        classifier, sigma=sigma, batch_size=int(settings["batch_size"]), seed=config.seed
    )
    started = time.perf_counter()
    result = smoothed.certify(
        sample.x, n0=int(settings["n0"]), n=int(settings["n"]), alpha=float(settings["alpha"])
    )
    elapsed = time.perf_counter() - started
    max_radius = result.max_radius
    table = certified_accuracy(result, sample.y, TABLE_RADII)
    grid = np.linspace(0.0, max(1.0, max_radius), _CURVE_POINTS)
    curve = certified_accuracy(result, sample.y, grid)
    correct = result.predictions == sample.y
    section = {
        "sigma": sigma,
        "norm": "l2",
        "n0": int(settings["n0"]),
        "n": int(settings["n"]),
        "alpha": float(settings["alpha"]),
        "n_samples": len(sample),
        "max_certifiable_radius": max_radius,
        "abstain_rate": float(np.mean(result.abstained)),
        "smoothed_accuracy": float(np.mean(correct)),
        "mean_certified_radius": float(np.mean(np.where(correct, result.radii, 0.0))),
        "table": [
            {"radius": float(r), "certified_accuracy": float(a)}
            for r, a in zip(TABLE_RADII, table, strict=True)
        ],
        "curve": [
            {"radius": round(float(r), 6), "certified_accuracy": float(a)}
            for r, a in zip(grid, curve, strict=True)
        ],
        "seconds": round(elapsed, 3),
    }
    metrics = {
        f"certified_accuracy@{r:g}": float(a) for r, a in zip(TABLE_RADII, table, strict=True)
    }
    outcome = EvasionOutcome(metrics=metrics, section=section)
    outcome.findings.append(_finding(section))
    return outcome


def _finding(section: dict[str, Any]) -> Finding:
    rows = {row["radius"]: row["certified_accuracy"] for row in section["table"]}
    figures = ", ".join(f"{acc:.1%} within r={r:g}" for r, acc in rows.items() if r > 0)
    summary = (
        f"Randomized smoothing with σ={section['sigma']:g} certifies, against any L2 perturbation, "
        f"{figures} of {section['n_samples']} inputs (smoothed accuracy {rows[0.0]:.1%}, "
        f"{section['abstain_rate']:.1%} abstentions; n={section['n']}, α={section['alpha']:g}). "
        f"With these settings no radius above {section['max_certifiable_radius']:.3f} can be "
        "certified."
    )
    severity = Severity.INFO if rows[0.25] >= 0.5 * max(rows[0.0], 1e-12) else Severity.LOW
    return Finding(
        id="certification.smoothing",
        check="certification",
        title=f"Certified robustness by randomized smoothing (σ={section['sigma']:g})",
        summary=summary,
        severity=severity,
        metrics={f"certified_accuracy@{r:g}": a for r, a in rows.items()},
        taxonomy=Taxonomy(
            atlas=("AML.T0043",), owasp=("ML01:2023",), nist=("MEASURE 2.7", "MANAGE 1.3")
        ),
        recommendation=(
            "Serve the smoothed classifier (SmoothedClassifier.predict, which abstains when "
            "unsure) so the certificate holds in production; train with Gaussian noise at a "
            "larger σ (mlwarden harden smoothing) for larger radii, at some cost in accuracy."
        ),
        details={"mitigation_for": ["ML01:2023"], **section},
    )
