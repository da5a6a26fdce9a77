"""The extraction check: how well a Knockoff-style surrogate copies the model per query budget.

The model is attacked locally through each configured output policy (full probabilities,
probabilities rounded to ``decimals``, top-k, label only) with the attack of
:mod:`mlwarden.attacks.extraction.knockoff` (Orekondy et al. 2019; Papernot et al. 2017 for the
augmentation). The report holds fidelity (agreement with the model on the evaluation sample)
and surrogate accuracy at each budget point. The first policy is the one the model is served
with: ``extraction_resistance@BUDGET`` (one minus its fidelity, higher is better) is the metric
a gate can hold. Mapped to OWASP ML05:2023 Model Theft and ATLAS AML.T0024.002.

Configuration::

    extraction:
      budget: 1000                 # queries the simulated attacker may send
      policies: [probabilities, rounded, label]   # the first is the served policy
      decimals: 2                  # for rounded
      top_k: 1                     # for top_k
      query_data: auto             # pool (training split), random (noise), auto: pool if known
      pool_limit: null             # pool samples before Jacobian augmentation takes over
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlwarden.assess.config import SECTION_CHECKS
from mlwarden.assess.evasion import EvasionOutcome
from mlwarden.data.dataset import Dataset
from mlwarden.errors import ConfigError
from mlwarden.models.base import Classifier
from mlwarden.report.findings import Finding, Severity
from mlwarden.report.taxonomy import EXTRACTION_TAXONOMY

__all__ = ["EXTRACTION_DEFAULTS", "check_extraction", "run_extraction"]

EXTRACTION_DEFAULTS: dict[str, Any] = {
    "budget": 1000,
    "policies": ["probabilities", "rounded", "label"],
    "decimals": 2,
    "top_k": 1,
    "query_data": "auto",
    "pool_limit": None,
}


def check_extraction(value: Any) -> dict[str, Any] | None:
    """Validate the ``extraction`` setting; ``true`` means the defaults."""
    from mlwarden.attacks.extraction import OUTPUT_POLICIES

    if value is None or value is False:
        return None
    if value is True:
        value = {}
    if not isinstance(value, dict):
        raise ConfigError(f"extraction must be a mapping such as {{budget: 1000}}, got {value!r}")
    unknown = sorted(set(value) - set(EXTRACTION_DEFAULTS))
    if unknown:
        raise ConfigError(
            f"extraction: unknown setting(s) {unknown}; allowed: {', '.join(EXTRACTION_DEFAULTS)}"
        )
    merged = {**EXTRACTION_DEFAULTS, **value}
    for key in ("budget", "decimals", "top_k"):
        number = merged[key]
        if isinstance(number, bool) or not isinstance(number, int) or number < (key != "decimals"):
            raise ConfigError(f"extraction.{key} must be a non-negative integer, got {number!r}")
    if merged["budget"] < 10:
        raise ConfigError(f"extraction.budget must be at least 10, got {merged['budget']}")
    policies = merged["policies"]
    if isinstance(policies, str):
        policies = [policies]
    if not isinstance(policies, list) or not policies:
        raise ConfigError(f"extraction.policies must be a non-empty list, got {policies!r}")
    for policy in policies:
        if policy not in OUTPUT_POLICIES:
            raise ConfigError(
                f"extraction.policies: unknown policy {policy!r}; choose from {list(OUTPUT_POLICIES)}"
            )
    if len(set(policies)) != len(policies):
        raise ConfigError(f"extraction.policies lists a policy twice: {policies}")
    if merged["query_data"] not in ("auto", "pool", "random"):
        raise ConfigError(
            f"extraction.query_data must be auto, pool or random, got {merged['query_data']!r}"
        )
    limit = merged["pool_limit"]
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(
            f"extraction.pool_limit must be a positive integer or null, got {limit!r}"
        )
    return {**merged, "policies": list(policies)}


SECTION_CHECKS.register("extraction", check_extraction)


def _label(policy: str, settings: dict[str, Any]) -> str:
    if policy == "rounded":
        return f"rounded({settings['decimals']})"
    if policy == "top_k":
        return f"top_k({settings['top_k']})"
    return policy


def run_extraction(
    classifier: Classifier,
    data: Dataset,
    settings: dict[str, Any],
    *,
    train_data: Dataset | None,
    seed: int,
    on_step: Callable[[str], None] | None = None,
) -> EvasionOutcome:
    """Attack ``classifier`` through each output policy; score on ``data``.

    Raises
    ------
    ConfigError
        ``query_data: pool`` without training data to draw the pool from.
    """
    from mlwarden.attacks.extraction import KnockoffExtraction, LocalVictim

    query_data = settings["query_data"]
    if query_data == "auto":
        query_data = "pool" if train_data is not None else "random"
    if query_data == "pool" and train_data is None:
        raise ConfigError(
            "extraction.query_data is pool but no training data is known; pass --train-data or "
            "set extraction.query_data: random"
        )
    pool = train_data.x if query_data == "pool" and train_data is not None else None
    budget = int(settings["budget"])
    runs: dict[str, dict[str, Any]] = {}
    metrics: dict[str, float] = {}
    for policy in settings["policies"]:
        label = _label(policy, settings)
        if on_step:
            on_step(f"extraction via {label}")
        victim = LocalVictim(
            classifier, policy=policy, decimals=settings["decimals"], k=settings["top_k"]
        )
        attack = KnockoffExtraction(
            budget=budget, query_data=query_data, pool_limit=settings["pool_limit"], seed=seed
        )
        result = attack.run(
            victim,
            x_eval=data.x,
            y_eval=data.y,
            eval_labels=classifier,
            pool=pool,
            query_data_name="training split" if pool is not None else "uniform noise",
        )
        document = result.to_dict()
        runs[label] = document
        for point in result.points:
            if point.fidelity is not None:
                metrics[f"extraction_fidelity[{policy}]@{point.queries}"] = point.fidelity
    served = _label(settings["policies"][0], settings)
    for point in runs[served]["points"]:
        if point["fidelity"] is not None:
            metrics[f"extraction_resistance@{point['queries']}"] = 1.0 - point["fidelity"]
    section = {
        "budget": budget,
        "query_data": query_data,
        "served_policy": served,
        "n_eval": len(data),
        "runs": runs,
    }
    outcome = EvasionOutcome(metrics=metrics, section=section)
    outcome.findings.append(_finding(section))
    return outcome


def _finding(section: dict[str, Any]) -> Finding:
    budget = section["budget"]
    served = section["served_policy"]
    finals = {label: run["fidelity"] for label, run in section["runs"].items()}
    fidelity = finals[served] or 0.0
    others = ", ".join(
        f"{label} {value:.1%}"
        for label, value in finals.items()
        if label != served and value is not None
    )
    summary = (
        f"A surrogate trained on {budget} queries ({section['query_data']}) agrees with the model "
        f"on {fidelity:.1%} of {section['n_eval']} held-out inputs when the API returns {served}"
        + (f" (other output policies: {others})." if others else ".")
    )
    if fidelity >= 0.9:
        severity = Severity.HIGH
    elif fidelity >= 0.7:
        severity = Severity.MEDIUM
    else:
        severity = Severity.LOW
    return Finding(
        id="extraction.knockoff",
        check="extraction",
        title=f"Model extraction: {fidelity:.0%} fidelity after {budget} queries ({served})",
        summary=summary,
        severity=severity,
        metrics={
            f"extraction_resistance@{budget}": 1.0 - fidelity,
            **{
                f"extraction_fidelity[{label}]@{budget}": v
                for label, v in finals.items()
                if v is not None
            },
        },
        taxonomy=EXTRACTION_TAXONOMY,
        recommendation=(
            "Serve the model behind `mlwarden serve` with per-key daily quotas well below the "
            "budget at which fidelity saturates, coarse outputs (label only or top-1) for roles "
            "that do not need probabilities, and the extraction monitor (PRADA, "
            "out-of-distribution share) set to throttle or block."
        ),
        details={"budget": budget, "served_policy": served, "fidelity": finals},
    )
