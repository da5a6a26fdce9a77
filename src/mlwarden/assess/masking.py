"""Gradient-masking diagnostics: the checks that say when robust-accuracy figures may be wrong.

A robust accuracy measured by attacks is only an upper bound, and a defence that breaks the
attacks' gradients (saturated softmax, non-differentiable or randomized pre-processing) can make
it a very loose one (Athalye, Carlini & Wagner, ICML 2018; Carlini et al., "On Evaluating
Adversarial Robustness", 2019). Each check below follows one item of Carlini et al.'s checklist
and becomes a high-severity finding when it fires; while any fires, gates on robust accuracy fail
closed unless the configuration sets ``acknowledge_masking: true``.

* ``masking.randomized``: the same input gets different outputs on identical calls, so
  attacks need Expectation over Transformation (``eot_samples``) and one evaluation is a draw.
* ``masking.vanishing_gradients``: the loss gradient with respect to the input is exactly zero
  on many correctly classified inputs (a saturated softmax, defensive distillation, quantized
  inputs): gradient attacks on cross-entropy see nothing.
* ``masking.black_box_beats_white_box``: a gradient-free attack broke inputs the gradient
  attacks could not; on an honest model white-box attacks are the stronger ones.
* ``masking.probe_not_near_zero``: at the probe budget (L∞: half the input range; L2: the
  largest distance from an input to the range's centre) every input can be moved to the same
  point, so a sound attack drives accuracy to that point's class share; the suite leaving more
  than that means it fails to follow the loss.
* ``masking.not_converged``: re-attacking what the suite left standing with twice the
  iterations and a fresh start still breaks inputs, so the figure has not converged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from mlwarden.attacks import APGD
from mlwarden.data.dataset import Dataset
from mlwarden.models.base import Classifier, DifferentiableClassifier
from mlwarden.report.findings import Finding, Severity
from mlwarden.report.taxonomy import Taxonomy

__all__ = [
    "MASKING_PREFIX",
    "MaskingOutcome",
    "black_box_advantage",
    "gradient_vanishing_rate",
    "prediction_variability",
    "probe_eps",
]

MASKING_PREFIX = "masking."
"""Finding ids of this check start with it; gates on robust accuracy look for them."""

_GRADIENT_SAMPLES = 256
_VANISHING_SHARE = 0.1
_BLACK_BOX_SHARE = 0.01
_PROBE_SAMPLES = 100
_PROBE_SLACK = 0.05
_CONVERGENCE_SAMPLES = 100
_CONVERGENCE_SHARE = 0.01
_MIN_SAMPLES = 2

_RECOMMENDATION = (
    "Do not trust the robust-accuracy figures of this report until the cause is removed or "
    "accounted for: attack the model with BPDA through non-differentiable steps and EOT over "
    "randomness (attack_params eot_samples), use the DLR loss (apgd-t), and compare with "
    "black-box attacks (Athalye, Carlini & Wagner 2018; Carlini et al. 2019). Set "
    "acknowledge_masking: true only once the evaluation has been made adaptive."
)
_TAXONOMY = Taxonomy(
    atlas=("AML.T0043", "AML.T0015"), owasp=("ML01:2023",), nist=("MEASURE 2.7", "MEASURE 2.3")
)


@dataclass
class MaskingOutcome:
    """Findings (one per diagnostic that fired), metrics and the report section."""

    findings: list[Finding] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    section: dict[str, Any] = field(default_factory=dict)


def prediction_variability(classifier: Classifier, x: np.ndarray) -> float:
    """The largest change in any output probability between two identical calls on ``x``."""
    first = classifier.predict_proba(x)
    second = classifier.predict_proba(x)
    return float(np.abs(first - second).max()) if len(x) else 0.0


def gradient_vanishing_rate(
    classifier: DifferentiableClassifier, x: np.ndarray, y: np.ndarray
) -> tuple[float, float]:
    """Share of inputs whose cross-entropy input gradient is exactly zero, and of saturated ones.

    Saturated: the largest softmax probability rounds to exactly 1 in float32.
    """
    if len(x) == 0:
        return 0.0, 0.0
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(classifier.device)
    yt = torch.from_numpy(y.astype(np.int64)).to(classifier.device)
    xt.requires_grad_(True)
    logits = classifier.logits(xt)
    loss = F.cross_entropy(logits, yt, reduction="sum")
    (grad,) = torch.autograd.grad(loss, xt)
    zero = grad.flatten(1).abs().amax(dim=1) == 0
    saturated = F.softmax(logits.detach(), dim=1).amax(dim=1) == 1.0
    return float(zero.float().mean()), float(saturated.float().mean())


def probe_eps(norm: str, x: np.ndarray, clip_range: tuple[float, float]) -> float:
    """The budget at which every input of ``x`` can reach the centre of the valid range."""
    low, high = clip_range
    if norm == "linf":
        return (high - low) / 2
    centre = (low + high) / 2
    return float(np.linalg.norm((x - centre).reshape(len(x), -1), axis=1).max())


def black_box_advantage(
    curves: dict[str, list[dict[str, Any]]], white_box_names: set[str], cascade: bool
) -> list[dict[str, Any]]:
    """Per ε, how much lower a gradient-free attack drove accuracy than the gradient attacks.

    In a suite (``cascade``) the rows are cumulative, so a black-box attack's contribution is
    the drop it adds after the gradient attacks ran; with independent attacks it is the gap
    between the best black-box and the best white-box figure.
    """
    rows: list[dict[str, Any]] = []
    names = list(curves)
    if not names or not white_box_names & set(names) or not set(names) - white_box_names:
        return rows
    for i, eps in enumerate(row["eps"] for row in curves[names[0]]):
        if cascade:
            previous = None
            drop = 0.0
            for name in names:
                value = curves[name][i]["robust_accuracy"]
                if previous is not None and name not in white_box_names:
                    drop += previous - value
                previous = value
        else:
            white = min(curves[n][i]["robust_accuracy"] for n in names if n in white_box_names)
            black = min(curves[n][i]["robust_accuracy"] for n in names if n not in white_box_names)
            drop = max(white - black, 0.0)
        rows.append({"eps": eps, "extra_broken_share": float(drop)})
    return rows


def run_masking(
    classifier: Classifier,
    data: Dataset,
    *,
    norm: str,
    seed: int,
    batch_size: int,
    curves: dict[str, list[dict[str, Any]]],
    white_box_names: set[str],
    cascade: bool,
    clean_predictions: np.ndarray,
    survivors: np.ndarray,
    suite: Callable[[float, np.ndarray, np.ndarray], np.ndarray],
    convergence_steps: int,
    adaptations: dict[str, Any] | None = None,
    on_step: Callable[[str], None] | None = None,
) -> MaskingOutcome:
    """Run every diagnostic; ``suite(eps, x, y)`` re-runs the evasion suite, returning predictions.

    ``survivors`` are the indices the suite left correctly classified at the largest ε;
    ``adaptations`` says what the evaluation already did about masking (EOT samples, ops
    attacked with BPDA), so that the findings can say so.
    """
    adapted = adaptations or {}
    outcome = MaskingOutcome()
    n = len(data)
    rng = np.random.default_rng(seed)
    section: dict[str, Any] = {}

    if on_step:
        on_step("masking diagnostics")
    check = data.x[: min(64, n)]
    variability = prediction_variability(classifier, check)
    section["prediction_variability"] = variability
    outcome.metrics["masking.prediction_variability"] = variability
    if variability > 1e-6:
        outcome.findings.append(
            _finding(
                "randomized",
                "Randomized model: outputs change between identical calls",
                f"Two identical calls on {len(check)} inputs changed an output probability by "
                f"up to {variability:.3g}. Each evaluation is one draw, and gradient attacks "
                "that do not average over the randomness (EOT) overstate robustness. This "
                f"assessment's gradient attacks averaged {adapted.get('eot_samples', 1)} "
                "forward passes per step unless the profile or attack_params set their own "
                "(EOT), and it reports robust accuracy as the mean over draws.",
                {"prediction_variability": variability},
            )
        )

    correct = np.nonzero(clean_predictions == data.y)[0]
    if isinstance(classifier, DifferentiableClassifier) and len(correct):
        chosen = np.sort(rng.choice(correct, min(_GRADIENT_SAMPLES, len(correct)), replace=False))
        zero_share, saturated_share = gradient_vanishing_rate(
            classifier, data.x[chosen], data.y[chosen]
        )
        section["zero_gradient_share"] = zero_share
        section["saturated_softmax_share"] = saturated_share
        outcome.metrics["masking.zero_gradient_share"] = zero_share
        if zero_share >= _VANISHING_SHARE:
            outcome.findings.append(
                _finding(
                    "vanishing_gradients",
                    "Vanishing input gradients (saturated softmax)",
                    f"The cross-entropy gradient with respect to the input is exactly zero on "
                    f"{zero_share:.1%} of {len(chosen)} correctly classified inputs "
                    f"({saturated_share:.1%} have a softmax saturated at 1.0). Gradient attacks "
                    "on cross-entropy see a flat loss there; scale-invariant losses (DLR) and "
                    "black-box attacks do not."
                    + (
                        " The model rounds or quantizes ("
                        + ", ".join(adapted["bpda_ops"])
                        + "): the attacks ran with straight-through gradients (BPDA)."
                        if adapted.get("bpda_ops")
                        else ""
                    ),
                    {"zero_gradient_share": zero_share, "saturated_softmax_share": saturated_share},
                )
            )

    advantage = black_box_advantage(curves, white_box_names, cascade)
    section["black_box_advantage"] = advantage
    worst = max(advantage, key=lambda row: row["extra_broken_share"], default=None)
    if worst is not None:
        outcome.metrics["masking.black_box_advantage"] = worst["extra_broken_share"]
        extra = worst["extra_broken_share"]
        if extra >= _BLACK_BOX_SHARE and extra * n >= _MIN_SAMPLES:
            outcome.findings.append(
                _finding(
                    "black_box_beats_white_box",
                    "Black-box attacks beat white-box attacks",
                    f"At ε={worst['eps']:g} gradient-free attacks broke {extra:.1%} of the "
                    "inputs that gradient attacks left correctly classified. With honest "
                    "gradients white-box attacks are the stronger ones: the gradients mislead.",
                    {"extra_broken_share": extra, "eps": worst["eps"]},
                )
            )

    probe = probe_eps(norm, data.x, classifier.clip_range)
    if on_step:
        on_step(f"masking probe ε={probe:g}")
    pick = np.sort(rng.choice(n, min(_PROBE_SAMPLES, n), replace=False)) if n else np.arange(0)
    probe_predictions = suite(probe, data.x[pick], data.y[pick])
    probe_accuracy = float((probe_predictions == data.y[pick]).mean()) if len(pick) else 0.0
    centre = np.full((1, *data.x.shape[1:]), sum(classifier.clip_range) / 2, dtype=np.float32)
    centre_class = int(classifier.predict(centre)[0])
    bound = float((data.y[pick] == centre_class).mean()) if len(pick) else 0.0
    section["probe"] = {
        "eps": probe,
        "robust_accuracy": probe_accuracy,
        "sound_bound": bound,
        "n_samples": len(pick),
    }
    outcome.metrics["masking.probe_robust_accuracy"] = probe_accuracy
    if probe_accuracy > bound + _PROBE_SLACK:
        outcome.findings.append(
            _finding(
                "probe_not_near_zero",
                "Attacks fail at a budget where any input can be changed",
                f"At the probe budget ε={probe:g} ({norm}) every input can be moved to the centre "
                f"of the input range, which the model labels {centre_class}; a sound attack "
                f"leaves at most {bound:.1%} correctly classified, the suite left "
                f"{probe_accuracy:.1%}.",
                {"probe_eps": probe, "probe_robust_accuracy": probe_accuracy, "sound_bound": bound},
            )
        )

    if isinstance(classifier, DifferentiableClassifier) and len(survivors):
        if on_step:
            on_step("masking convergence check")
        eps = float(curves[next(iter(curves))][-1]["eps"])
        chosen = survivors
        if len(chosen) > _CONVERGENCE_SAMPLES:
            chosen = np.sort(rng.choice(chosen, _CONVERGENCE_SAMPLES, replace=False))
        broken = np.zeros(len(chosen), dtype=bool)
        for loss in ("ce", "dlr"):
            attack = APGD(
                eps=eps,
                norm=norm,  # type: ignore[arg-type]
                loss=loss,
                steps=2 * convergence_steps,
                seed=seed + 7919,
                batch_size=batch_size,
            )
            result = attack.generate(classifier, data.x[chosen], data.y[chosen])
            broken |= result.predictions != data.y[chosen]
        share = float(broken.sum()) / n if n else 0.0
        section["convergence"] = {
            "eps": eps,
            "steps": 2 * convergence_steps,
            "re_attacked": len(chosen),
            "newly_broken": int(broken.sum()),
        }
        outcome.metrics["masking.unconverged_share"] = share
        if share >= _CONVERGENCE_SHARE and broken.sum() >= _MIN_SAMPLES:
            outcome.findings.append(
                _finding(
                    "not_converged",
                    "More attack iterations still lower robust accuracy",
                    f"Re-attacking {len(chosen)} inputs the suite left standing at ε={eps:g} with "
                    f"{2 * convergence_steps} APGD steps (CE and DLR, a fresh random start) broke "
                    f"{int(broken.sum())} more ({share:.1%} of the evaluation set): the reported "
                    "robust accuracy has not converged and is too high.",
                    {"unconverged_share": share, "eps": eps},
                )
            )
    outcome.section = section
    return outcome


def no_gradient_path_finding(reason: str) -> Finding:
    """The finding for a white-box model whose gradients cannot be computed (attacked black-box)."""
    return _finding(
        "no_gradient_path",
        "No input gradient: the model was attacked black-box only",
        f"Gradients of this PyTorch model cannot be computed: {reason}. Only gradient-free "
        "attacks ran, so its robust accuracy may be far higher than the truth (the forward "
        "pass itself masks the gradient). Declare the non-differentiable step as a torch op "
        "(torch.round, torch.floor, ...) so that BPDA can attack through it.",
        {},
    )


def _finding(key: str, title: str, summary: str, metrics: dict[str, float]) -> Finding:
    return Finding(
        id=f"{MASKING_PREFIX}{key}",
        check="masking",
        title=title,
        summary=summary,
        severity=Severity.HIGH,
        metrics=metrics,
        taxonomy=_TAXONOMY,
        recommendation=_RECOMMENDATION,
    )
