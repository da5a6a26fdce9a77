"""The detection check: how well each configured input detector catches adversarial inputs.

Each detector is fitted on part of the clean training data and calibrated at a 5% false-positive
rate on the rest. It is then scored against FGSM and PGD examples at the largest ε of the
assessment (ROC AUC, and the detection rate at the calibrated threshold), and against an
adaptive attack that knows the detector: PGD on the model's margin (capped) minus
``λ·max(s(x')/τ − 0.9, 0)`` (``s`` the detector's score, ``τ`` its threshold) for a few λ, with
straight-through gradients (BPDA) through non-differentiable squeezers (Athalye, Carlini and
Wagner, 2018; Tramèr, Carlini, Brendel and Mądry, 2020).
A detector that the adaptive attack gets past is reported as bypassed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from mlwarden.assess.config import AssessConfig
from mlwarden.assess.evasion import EvasionOutcome
from mlwarden.attacks import FGSM, PGD, SquareAttack
from mlwarden.attacks.base import Attack, AttackResult
from mlwarden.attacks.evasion.gradient_descent import (
    FixedStep,
    Objective,
    projected_gradient_descent,
    random_start,
)
from mlwarden.data.dataset import Dataset
from mlwarden.defenses.detectors import Detector, get_detector
from mlwarden.errors import ConfigError
from mlwarden.models.base import Classifier, DifferentiableClassifier
from mlwarden.report.findings import Finding, Severity
from mlwarden.report.taxonomy import Taxonomy

__all__ = [
    "ADAPTIVE_LAMBDAS",
    "DETECTION_FPR",
    "adaptive_attack",
    "resolve_train_data",
    "run_detection",
]

DETECTION_FPR = 0.05
"""The false-positive rate every detector is calibrated to."""

ADAPTIVE_LAMBDAS = (0.1, 1.0, 10.0)
"""Weights of the detector term tried by the adaptive attack (each sample keeps its best)."""

_FIT_FRACTION = 0.8
_MAX_FIT = 5000
_MAX_CALIBRATION = 2000
_BYPASS_RATE = 0.5
_MARGIN_CAP = 5.0
_MAX_ADAPTIVE = 200


def resolve_train_data(data: Dataset, train_data: Dataset | None) -> Dataset:
    """Clean data to fit and calibrate detectors: ``train_data``, or a built-in train split.

    Raises
    ------
    ConfigError
        Detectors are configured, the evaluation data is not built-in, and no training data
        was given.
    """
    if train_data is not None:
        return train_data
    if data.name.startswith("builtin:"):
        from mlwarden.data.builtin import load_builtin

        return load_builtin(data.name.split(":")[1]).train
    raise ConfigError(
        "detectors need clean training data to fit and calibrate on; pass --train-data "
        "(the same format as --data), or remove detectors from the config"
    )


def _split(train: Dataset, seed: int) -> tuple[Dataset, Dataset]:
    if len(train) < 20:
        raise ConfigError(f"detectors need at least 20 clean training samples, got {len(train)}")
    order = np.random.default_rng(seed).permutation(len(train))
    cut = round(_FIT_FRACTION * len(train))
    fit_idx = np.sort(order[:cut][:_MAX_FIT])
    cal_idx = np.sort(order[cut:][:_MAX_CALIBRATION])
    return train.subset(fit_idx), train.subset(cal_idx)


def _auc(negatives: np.ndarray, positives: np.ndarray) -> float | None:
    if len(negatives) == 0 or len(positives) == 0:
        return None
    from sklearn.metrics import roc_auc_score

    labels = np.r_[np.zeros(len(negatives)), np.ones(len(positives))]
    return float(roc_auc_score(labels, np.r_[negatives, positives]))


def _capped_margin(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    true_logit = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], float("-inf")).amax(dim=1)
    return (others - true_logit).clamp(max=_MARGIN_CAP)


def adaptive_attack(
    classifier: DifferentiableClassifier,
    detector: Detector,
    x: np.ndarray,
    y: np.ndarray,
    *,
    eps: float,
    norm: str,
    steps: int = 20,
    lambdas: tuple[float, ...] = ADAPTIVE_LAMBDAS,
    seed: int = 0,
    batch_size: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """PGD against the classifier and the detector together.

    For each λ the attack ascends, per sample, ``min(m(x'), κ) − λ·max(s(x')/τ − 0.9, 0)``
    inside the ε-ball: ``m`` is the Carlini–Wagner margin (largest wrong logit minus the true
    one), capped at ``κ = 5`` so that once the input is misclassified the detector term takes
    over, and the hinge on the score ``s`` (threshold ``τ``) vanishes once the input passes
    unflagged. Where the detector compares the input with transformed views of it (feature
    squeezing), the capped margins of the views are added, so the attack drives the views to
    the same wrong class (He, Wei, Chen, Carlini and Song, 2017). Each sample keeps the first iterate that is misclassified *and* not flagged;
    failing that, the last misclassified iterate; failing that, the input. Samples that got
    through leave the batch. Gradients through non-differentiable detector steps are
    straight-through (BPDA, Athalye, Carlini and Wagner, 2018).

    Returns
    -------
    x_adv, evaded
        The adversarial inputs and, per sample, whether they fool the model undetected.
    """
    threshold = float(detector.threshold_)
    scale = abs(threshold) if threshold != 0 else 1.0
    device = classifier.device
    x_out = np.array(x, dtype=np.float32, copy=True)
    evaded = np.zeros(len(x), dtype=bool)
    for lam_index, lam in enumerate(lambdas):
        generator = torch.Generator(device=device).manual_seed(seed + lam_index)
        for start in range(0, len(x), batch_size):
            todo = np.nonzero(~evaded[start : start + batch_size])[0] + start
            if len(todo) == 0:
                continue
            x0 = torch.from_numpy(x[todo]).to(device)
            yb = torch.from_numpy(y[todo]).to(device)
            found = projected_gradient_descent(
                _detector_objective(classifier, detector, yb, todo, x_out, lam, scale),
                x0,
                eps=eps,
                norm=norm,
                steps=steps,
                clip_range=classifier.clip_range,
                step_rule=FixedStep(2.5 * eps / steps, norm),
                start=random_start(x0, eps, norm, generator),
                early_stop=True,
            )
            evaded[todo] |= found.success.cpu().numpy()
    return x_out, evaded


def _detector_objective(
    classifier: DifferentiableClassifier,
    detector: Detector,
    labels: torch.Tensor,
    rows: np.ndarray,
    x_out: np.ndarray,
    lam: float,
    scale: float,
) -> Objective:
    """The adaptive attack's objective; it records each misclassified iterate in ``x_out``.

    Success is "misclassified and not flagged"; every misclassified iterate is written to
    ``x_out[rows[index]]`` as it is seen, so a sample that never gets through keeps its last
    misclassified iterate (and the input when it never was).
    """
    threshold = float(detector.threshold_)

    def objective(x_adv: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        yb = labels[index]
        logits = classifier.logits(x_adv)
        score = detector.score_tensor(x_adv)
        wrong = logits.argmax(1) != yb
        wrong_np = wrong.detach().cpu().numpy()
        x_out[rows[index.cpu().numpy()[wrong_np]]] = x_adv.detach().cpu().numpy()[wrong_np]
        margin = _capped_margin(logits, yb)
        for view in detector.attack_views(x_adv):
            margin = margin + _capped_margin(classifier.logits(view), yb)
        value = margin - lam * F.relu(score / scale - 0.9)
        return value, wrong & (score <= threshold)

    return objective


def _attacks(classifier: Classifier, eps: float, config: AssessConfig) -> list[Attack]:
    norm: Any = config.norm
    if classifier.differentiable:
        pgd_params = {
            k: v
            for k, v in config.attack_params.get("pgd", {}).items()
            if k in ("steps", "restarts")
        }
        return [
            FGSM(eps=eps, norm=norm, seed=config.seed, batch_size=config.batch_size),
            PGD(eps=eps, norm=norm, seed=config.seed, batch_size=config.batch_size, **pgd_params),
        ]
    square_params = {
        k: v for k, v in config.attack_params.get("square", {}).items() if k == "queries"
    }
    return [SquareAttack(eps=eps, seed=config.seed, batch_size=config.batch_size, **square_params)]


def run_detection(
    classifier: Classifier,
    data: Dataset,
    config: AssessConfig,
    *,
    train_data: Dataset | None,
    clean_predictions: np.ndarray,
    on_step: Callable[[str], None] | None = None,
) -> EvasionOutcome:
    """Fit, calibrate and attack every detector in ``config.detectors``; findings per detector."""
    specs = config.detectors or []
    outcome = EvasionOutcome()
    train = resolve_train_data(data, train_data)
    if train.input_shape != classifier.input_shape:
        raise ConfigError(
            f"the training data's samples have shape {train.input_shape} but the model expects "
            f"{classifier.input_shape}"
        )
    fit_set, calibration_set = _split(train, config.seed)
    eps = float(config.epsilons[-1])
    correct = clean_predictions == data.y
    results: dict[str, AttackResult] = {}
    for attack in _attacks(classifier, eps, config):
        if on_step:
            on_step(f"detection: {attack.name} ε={eps:g}")
        results[attack.name] = attack.generate(classifier, data.x, data.y)

    rows = []
    for spec in specs:
        name, params = spec["name"], dict(spec.get("params") or {})
        if on_step:
            on_step(f"detector {name}")
        cls = get_detector(name)
        try:
            detector = cls(classifier, **params)
        except TypeError as exc:
            raise ConfigError(f"detectors.{name}: {exc}") from None
        detector.fit(fit_set.x, fit_set.y).calibrate(calibration_set.x, DETECTION_FPR)
        clean_scores = detector.score(data.x)
        threshold = float(detector.threshold_)
        row: dict[str, Any] = {
            "name": name,
            "params": detector.get_params(),
            "threshold": threshold,
            "clean_fpr": float(np.mean(clean_scores > threshold)),
            "attacks": {},
        }
        for attack_name, result in results.items():
            fooled = result.success & correct
            adv_scores = detector.score(result.x_adv[fooled]) if fooled.any() else np.zeros(0)
            row["attacks"][attack_name] = {
                "n_adversarial": int(fooled.sum()),
                "roc_auc": _auc(clean_scores, adv_scores),
                "detection_rate": float(np.mean(adv_scores > threshold))
                if len(adv_scores)
                else None,
            }
        if isinstance(classifier, DifferentiableClassifier):
            steps = int(config.attack_params.get("pgd", {}).get("steps", 20))
            chosen = np.nonzero(correct)[0]
            if len(chosen) > _MAX_ADAPTIVE:
                rng = np.random.default_rng(config.seed)
                chosen = np.sort(rng.choice(chosen, _MAX_ADAPTIVE, replace=False))
            x_attack, y_attack = data.x[chosen], data.y[chosen]
            x_adv, _ = adaptive_attack(
                classifier,
                detector,
                x_attack,
                y_attack,
                eps=eps,
                norm=config.norm,
                steps=steps,
                seed=config.seed,
                batch_size=config.batch_size,
            )
            wrong = classifier.predict(x_adv) != y_attack
            flagged = detector.predict(x_adv[wrong]) if wrong.any() else np.zeros(0, dtype=bool)
            evasion_rate = (
                float(np.mean(wrong & ~detector.predict(x_adv))) if len(x_attack) else 0.0
            )
            row["adaptive"] = {
                "lambdas": list(ADAPTIVE_LAMBDAS),
                "steps": steps,
                "n_attacked": len(x_attack),
                "misclassified_rate": float(np.mean(wrong)) if len(wrong) else 0.0,
                "detection_rate": float(np.mean(flagged)) if len(flagged) else None,
                "evasion_rate": evasion_rate,
            }
            row["bypassed"] = evasion_rate >= _BYPASS_RATE
        else:
            row["adaptive"] = None
            row["bypassed"] = None
        rows.append(row)
        outcome.findings.append(_finding(row, eps, config.norm))
        prefix = f"detector[{name}]"
        for attack_name, stats in row["attacks"].items():
            if stats["roc_auc"] is not None:
                outcome.metrics[f"{prefix}.roc_auc[{attack_name}]"] = stats["roc_auc"]
            if stats["detection_rate"] is not None:
                outcome.metrics[f"{prefix}.detection_rate[{attack_name}]"] = stats["detection_rate"]
        if row["adaptive"] is not None:
            outcome.metrics[f"{prefix}.adaptive_evasion_rate"] = row["adaptive"]["evasion_rate"]
            if row["adaptive"]["detection_rate"] is not None:
                outcome.metrics[f"{prefix}.detection_rate[adaptive]"] = row["adaptive"][
                    "detection_rate"
                ]
    outcome.section = {
        "eps": eps,
        "norm": config.norm,
        "fpr": DETECTION_FPR,
        "train_data": train.name,
        "fit_samples": len(fit_set),
        "calibration_samples": len(calibration_set),
        "attacks": list(results),
        "detectors": rows,
    }
    return outcome


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _finding(row: dict[str, Any], eps: float, norm: str) -> Finding:
    name = row["name"]
    parts = []
    for attack_name, stats in row["attacks"].items():
        auc = "n/a" if stats["roc_auc"] is None else f"{stats['roc_auc']:.3f}"
        parts.append(
            f"{attack_name.upper()}: ROC AUC {auc}, detects {_pct(stats['detection_rate'])}"
        )
    summary = (
        f"At ε={eps:g} ({norm}) with the threshold set for {DETECTION_FPR:.0%} false positives "
        f"({_pct(row['clean_fpr'])} on the evaluation data): " + "; ".join(parts) + "."
    )
    adaptive = row["adaptive"]
    pgd_rate = row["attacks"].get("pgd", {}).get("detection_rate")
    if adaptive is None:
        severity = Severity.MEDIUM
        summary += " The adaptive attack needs gradients and was not run on this black-box model."
    elif row["bypassed"]:
        severity = Severity.HIGH
        summary += (
            f" The detector can be bypassed: an adaptive attack that also minimises its score "
            f"turns {adaptive['evasion_rate']:.1%} of correctly classified inputs into adversarial "
            f"examples it does not flag (it flags {_pct(adaptive['detection_rate'])} of the "
            "adversarial examples). Do not rely on it against an attacker who knows it is there."
        )
    else:
        severity = Severity.MEDIUM if adaptive["evasion_rate"] >= 0.1 else Severity.LOW
        summary += (
            f" An adaptive attack that also minimises the detector's score gets "
            f"{adaptive['evasion_rate']:.1%} of inputs past it undetected (it flags "
            f"{_pct(adaptive['detection_rate'])} of the adaptive adversarial examples)."
        )
        if pgd_rate is not None and pgd_rate < 0.5:
            severity = Severity.MEDIUM
    return Finding(
        id=f"detection.{name}",
        check="detection",
        title=f"Input detector {name}"
        + (": bypassed by an adaptive attack" if row["bypassed"] else ""),
        summary=summary,
        severity=severity,
        metrics={
            **{
                f"roc_auc[{a}]": s["roc_auc"]
                for a, s in row["attacks"].items()
                if s["roc_auc"] is not None
            },
            **{
                f"detection_rate[{a}]": s["detection_rate"]
                for a, s in row["attacks"].items()
                if s["detection_rate"] is not None
            },
            **({"adaptive_evasion_rate": adaptive["evasion_rate"]} if adaptive is not None else {}),
        },
        taxonomy=Taxonomy(
            atlas=("AML.T0015", "AML.T0043"),
            owasp=("ML01:2023",),
            nist=("MEASURE 2.7", "MANAGE 1.3"),
        ),
        recommendation=(
            "Treat detectors as one layer: combine them with adversarial training or certified "
            "smoothing, keep the detector private, and re-run this check with an adaptive "
            "attacker after every change."
        ),
        details=row,
    )
