"""The federated-privacy check: what a federation's server could rebuild from one update.

Runs for a model written by ``mlwarden fl train`` (its record says how it was trained). The
check replays one FedSGD round of the model's architecture on the assessment data, as the
server of that federation would see it: a plain client update when secure aggregation was off,
the SecAgg+ sum of the round's clients when it was on, and a DP-SGD update when the clients
trained with sample-level DP. It runs gradient leakage (inverting gradients, Geiping et al.,
2020, labels by iDLG) on it, and on a plain update for comparison, and reports PSNR against
the blank guess (the mean image): a reconstruction closer to the client's input than the blank
guess is a leak.

Finding ``federated.gradient_leakage``: high when the federation's own setting leaks, info
when its defences (SecAgg+, DP) bring the attack down to the blank guess.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeGuard

from mlwarden.data.dataset import Dataset
from mlwarden.report.findings import Finding, Severity
from mlwarden.report.taxonomy import GRADIENT_LEAKAGE_TAXONOMY

__all__ = ["FederatedPrivacyOutcome", "is_federated_record", "run_federated_privacy"]

FL_RECIPE = "mlwarden fl train"
_ITERATIONS = 400


@dataclass(frozen=True)
class FederatedPrivacyOutcome:
    """Findings, gate metrics and the report section of the federated-privacy check."""

    findings: list[Finding] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    section: dict[str, Any] = field(default_factory=dict)


def is_federated_record(training: Any) -> TypeGuard[dict[str, Any]]:
    """Whether a model's training record comes from ``mlwarden fl train``."""
    return isinstance(training, dict) and training.get("recipe") == FL_RECIPE


def run_federated_privacy(
    training: dict[str, Any], data: Dataset, *, seed: int = 0
) -> FederatedPrivacyOutcome:
    """Replay the federation's server view and attack it (see the module docstring)."""
    from mlwarden.attacks.privacy.gradient_leakage import GradientLeakage
    from mlwarden.defenses.training.dp_harden import dp_architecture
    from mlwarden.federated.leakage import leakage_experiment, server_view

    architecture = training.get("architecture") or ""
    spec = f"zoo:{architecture}"

    def make_module() -> Any:
        return dp_architecture(spec, seed=seed)[1]

    secure = bool(training.get("secure_aggregation", {}).get("enabled"))
    privacy = training.get("privacy") or {}
    if privacy.get("level") == "sample":
        view = "dp"
        noise = float(min(c["noise_multiplier"] for c in privacy["clients"]))
    elif secure:
        view, noise = "secagg", 0.0
    else:
        view, noise = "plain", 0.0
    clients = int(training.get("clients_per_round") or 3)
    attack = GradientLeakage(iterations=_ITERATIONS, restarts=1, seed=seed)
    blank = data.x.mean(0)
    rows: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(("plain", view)):
        observed = server_view(
            make_module,
            data,
            view=name,  # type: ignore[arg-type]
            batch_size=1,
            clients=max(3, clients),
            noise_multiplier=noise or 1.0,
            seed=seed,
        )
        _, scores = leakage_experiment(observed, attack, batch_size=1, blank=blank)
        scores.pop("originals")
        rows[name] = {k: v for k, v in scores.items() if k != "pairing"}
    own = rows[view]
    leaks = bool(own["beats_blank_guess"])
    defences = [d for d, on in (("SecAgg+", secure), ("sample-level DP", view == "dp")) if on]
    margin = float(own["mean_psnr_db"] - own["mean_blank_psnr_db"])
    metrics = {
        "gradient_leakage_psnr_db": float(own["mean_psnr_db"]),
        "gradient_leakage_margin_db": margin,
    }
    summary = (
        f"From one {view} update of this federation (FedSGD, batch 1, {architecture}), "
        f"inverting gradients rebuilt the client's input at {own['mean_psnr_db']:.1f} dB PSNR, "
        f"against {own['mean_blank_psnr_db']:.1f} dB for a blank guess"
        + (
            f"; a plain update gives {rows['plain']['mean_psnr_db']:.1f} dB"
            if view != "plain"
            else ""
        )
        + ". "
        + (
            "The server can see clients' training inputs."
            if leaks
            else f"{' and '.join(defences) or 'The defences'} kept the attack at the blank guess."
        )
    )
    finding = Finding(
        id="federated.gradient_leakage",
        check="federated_privacy",
        title=(
            "Gradient leakage: a federated update reveals training inputs"
            if leaks
            else "Gradient leakage: the server view reveals no more than a blank guess"
        ),
        summary=summary,
        severity=Severity.HIGH if leaks else Severity.INFO,
        metrics=metrics,
        taxonomy=GRADIENT_LEAKAGE_TAXONOMY,
        recommendation=(
            "Aggregate with SecAgg+ over many clients (mlwarden fl train --secagg) so the server "
            "sees only sums, and train clients with DP-SGD (--dp sample:EPS) so each update is "
            "clipped and noised; avoid single-sample or single-step client updates."
        ),
        details={"views": rows, "view": view},
    )
    section = {
        "view": view,
        "secure_aggregation": secure,
        "privacy": privacy.get("level"),
        "attack": _attack_params(attack),
        "views": rows,
        "blank_guess": "mean training image",
    }
    return FederatedPrivacyOutcome(findings=[finding], metrics=metrics, section=section)


def _attack_params(attack: Any) -> dict[str, Any]:
    """The attack's settings as JSON values."""
    return {
        "method": attack.method,
        "iterations": attack.iterations,
        "restarts": attack.restarts,
        "seed": attack.seed,
    }
