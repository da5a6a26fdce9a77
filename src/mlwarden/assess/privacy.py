"""The privacy check: how much the model leaks about its training data.

* membership inference with the loss-threshold attack (Yeom et al., 2018) and, when
  ``lira_shadows`` > 0, offline LiRA with that many shadow models (Carlini et al., 2022);
  members are the model's training data, non-members the evaluation data (equal counts);
* model inversion with MI-Face (Fredrikson et al., 2015) for white-box models.

Enabled by ``privacy:`` in the assessment config, e.g.
``privacy: {membership: true, lira_shadows: 8, inversion: true}``. The gate metric
``membership_resistance`` is one minus the largest membership advantage ``max(TPR − FPR)``
(Yeom et al., 2018) over the attacks run: 1 means no attack beats guessing. Membership inference needs
the model's training data: the built-in dataset's train split (zoo models are trained on it) or
``--train-data``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from mlwarden.assess.config import SECTION_CHECKS
from mlwarden.assess.evasion import EvasionOutcome
from mlwarden.attacks.privacy import LiRA, LossThresholdAttack, MembershipResult, MIFace
from mlwarden.data.dataset import Dataset
from mlwarden.errors import ConfigError
from mlwarden.models.base import Classifier
from mlwarden.report.findings import Finding, Severity
from mlwarden.report.taxonomy import INVERSION_TAXONOMY, MEMBERSHIP_TAXONOMY

__all__ = ["PRIVACY_DEFAULTS", "ShadowRecipe", "check_privacy", "run_privacy", "shadow_recipe"]

PRIVACY_DEFAULTS: dict[str, Any] = {
    "membership": True,
    "lira_shadows": 0,
    "inversion": True,
    "max_samples": 500,
    "inversion_steps": 300,
}
"""Privacy settings used for every key that ``privacy:`` leaves out."""

_DP_ADVICE = (
    "Train with differential privacy (mlwarden harden dp) and stop training before the model "
    "memorises; limit the API to labels or rounded confidences, and rate-limit queries."
)


def check_privacy(value: Any) -> dict[str, Any] | None:
    """Validate ``privacy:`` (``true`` or a mapping) and fill in :data:`PRIVACY_DEFAULTS`."""
    if value is None or value is False:
        return None
    if value is True:
        value = {}
    if not isinstance(value, dict):
        raise ConfigError(
            f"privacy must be true or a mapping such as {{membership: true, lira_shadows: 8}}, got {value!r}"
        )
    unknown = sorted(set(value) - set(PRIVACY_DEFAULTS))
    if unknown:
        raise ConfigError(
            f"privacy: unknown setting(s) {unknown}; allowed: {', '.join(PRIVACY_DEFAULTS)}"
        )
    merged = {**PRIVACY_DEFAULTS, **value}
    for key in ("membership", "inversion"):
        if not isinstance(merged[key], bool):
            raise ConfigError(f"privacy.{key} must be true or false, got {merged[key]!r}")
    shadows = merged["lira_shadows"]
    if isinstance(shadows, bool) or not isinstance(shadows, int) or shadows < 0 or shadows % 2:
        raise ConfigError(
            f"privacy.lira_shadows must be an even integer >= 0 (0: no LiRA), got {shadows!r}"
        )
    for key in ("max_samples", "inversion_steps"):
        count = merged[key]
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ConfigError(f"privacy.{key} must be a positive integer, got {count!r}")
    if shadows and not merged["membership"]:
        raise ConfigError("privacy.lira_shadows needs privacy.membership: true")
    return merged


SECTION_CHECKS.register("privacy", check_privacy)


@dataclass(frozen=True)
class ShadowRecipe:
    """How LiRA's shadow models are built and trained."""

    make_model: Callable[[], nn.Module]
    epochs: int
    lr: float
    batch_size: int
    description: str


def _generic_mlp(input_size: int, n_classes: int) -> Callable[[], nn.Module]:
    def make() -> nn.Module:
        return nn.Sequential(
            nn.Flatten(), nn.Linear(input_size, 128), nn.ReLU(), nn.Linear(128, n_classes)
        )

    return make


def shadow_recipe(classifier: Classifier) -> ShadowRecipe:
    """The zoo recipe for ``zoo:`` models, else a 128-unit MLP trained like the digits CNN."""
    from mlwarden.models import zoo

    name = str(classifier.info.get("name", ""))
    if name == "zoo:digits-cnn":
        return ShadowRecipe(
            zoo.digits_cnn, 30, 1e-3, 64, "zoo:digits-cnn recipe (30 epochs, Adam 1e-3)"
        )
    if name == "zoo:breast-cancer-mlp":
        return ShadowRecipe(
            zoo.breast_cancer_mlp,
            60,
            3e-3,
            64,
            "zoo:breast-cancer-mlp recipe (60 epochs, Adam 3e-3)",
        )
    size = int(np.prod(classifier.input_shape))
    return ShadowRecipe(
        _generic_mlp(size, classifier.n_classes),
        30,
        1e-3,
        64,
        "generic 128-unit MLP, 30 epochs, Adam 1e-3 (the model's own recipe is unknown)",
    )


def _membership_finding(result: MembershipResult, title: str) -> Finding:
    m = result.metrics
    tpr1 = m.tpr_at_fpr[0.01]
    if m.auc >= 0.75 or tpr1 >= 0.2:
        severity = Severity.HIGH
    elif m.auc >= 0.6 or tpr1 >= 0.05:
        severity = Severity.MEDIUM
    elif m.auc >= 0.53 or tpr1 >= 0.02:
        severity = Severity.LOW
    else:
        severity = Severity.INFO
    note = (
        ""
        if m.measured(0.001)
        else f" (TPR at 0.1% FPR is interpolated: only {m.n_non_members} non-members)"
    )
    return Finding(
        id=f"privacy.membership.{result.attack.split('-')[0]}",
        check="privacy",
        title=title,
        summary=(
            f"{result.attack} tells {m.n_members} training samples from {m.n_non_members} unseen "
            f"ones with ROC AUC {m.auc:.3f} and balanced accuracy {m.balanced_accuracy:.1%}; "
            f"TPR {tpr1:.1%} at 1% FPR, {m.tpr_at_fpr[0.001]:.1%} at 0.1% FPR{note}."
        ),
        severity=severity,
        metrics=m.as_metrics("membership" if result.attack == "loss-threshold" else "lira"),
        taxonomy=MEMBERSHIP_TAXONOMY,
        recommendation=_DP_ADVICE,
        details={"attack": result.attack, "params": result.params},
    )


def run_privacy(
    classifier: Classifier,
    data: Dataset,
    settings: dict[str, Any],
    *,
    train_data: Dataset,
    seed: int = 0,
    on_step: Callable[[str], None] | None = None,
) -> EvasionOutcome:
    """Run the configured privacy attacks; ``train_data`` must be the model's training data."""
    outcome = EvasionOutcome()
    section: dict[str, Any] = {"train_data": train_data.name, "eval_data": data.name}
    if settings["membership"]:
        n = min(len(train_data), len(data), settings["max_samples"])
        members = train_data.sample(n, seed)
        non_members = data.sample(n, seed + 1)
        if on_step:
            on_step("membership inference (loss)")
        loss = LossThresholdAttack().run(classifier, members, non_members)
        results = [loss]
        outcome.findings.append(_membership_finding(loss, "Membership inference (loss threshold)"))
        if settings["lira_shadows"]:
            recipe = shadow_recipe(classifier)
            if on_step:
                on_step(f"membership inference (LiRA, {settings['lira_shadows']} shadows)")
            lira = LiRA(
                make_model=recipe.make_model,
                n_shadows=settings["lira_shadows"],
                epochs=recipe.epochs,
                lr=recipe.lr,
                batch_size=recipe.batch_size,
                seed=seed,
            ).run(classifier, members, non_members)
            lira.params["shadow_recipe"] = recipe.description
            results.append(lira)
            outcome.findings.append(_membership_finding(lira, "Membership inference (LiRA)"))
        section["membership"] = {r.attack: r.to_dict() for r in results}
        for finding in outcome.findings:
            outcome.metrics.update(finding.metrics)
        # Yeom et al.'s membership advantage max(TPR - FPR) = 2 * balanced accuracy - 1
        advantage = max(2.0 * r.metrics.balanced_accuracy - 1.0 for r in results)
        outcome.metrics["membership_resistance"] = 1.0 - advantage
        section["membership_resistance"] = 1.0 - advantage
    if settings["inversion"] and classifier.differentiable:
        if on_step:
            on_step("model inversion")
        inversion = MIFace(steps=settings["inversion_steps"]).run(classifier, train_data)
        metrics = inversion.metrics()
        rate = inversion.recovery_rate
        chance = 1.0 / classifier.n_classes
        severity = (
            Severity.MEDIUM if rate >= 0.5 else Severity.LOW if rate > 2 * chance else Severity.INFO
        )
        outcome.findings.append(
            Finding(
                id="privacy.inversion",
                check="privacy",
                title="Model inversion (MI-Face)",
                summary=(
                    f"Gradient ascent on each class score rebuilds an input that correlates best "
                    f"with its own class's mean training input for {rate:.0%} of classes (chance "
                    f"{chance:.0%}); mean correlation {metrics['inversion_own_correlation']:.2f} "
                    f"with the own class vs {metrics['inversion_other_correlation']:.2f} with others."
                ),
                severity=severity,
                metrics=metrics,
                taxonomy=INVERSION_TAXONOMY,
                recommendation=(
                    "Return labels or rounded confidences instead of full scores, rate-limit "
                    "queries, and train with differential privacy where class prototypes are sensitive."
                ),
                details={"steps": settings["inversion_steps"]},
            )
        )
        outcome.metrics.update(metrics)
        section["inversion"] = inversion.to_dict()
    elif settings["inversion"]:
        section["inversion"] = {"skipped": "model inversion needs gradients (white-box model)"}
    outcome.section = section
    return outcome
