"""The evasion check: every configured attack over the ε grid, as findings."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
from scipy import stats

from mlwarden.assess.config import AssessConfig
from mlwarden.assess.masking import prediction_variability, run_masking
from mlwarden.assess.profiles import DEFAULT_PROFILE, profile_attacks
from mlwarden.attacks import Attack, AttackResult, attack_names, get_attack
from mlwarden.attacks.base import Norm
from mlwarden.attacks.evasion.bpda import BPDAClassifier, piecewise_constant_ops_used
from mlwarden.data.dataset import Dataset
from mlwarden.errors import ConfigError
from mlwarden.models.base import Classifier, DifferentiableClassifier
from mlwarden.report.findings import Finding, Severity
from mlwarden.report.taxonomy import Taxonomy

__all__ = ["EvasionOutcome", "plan_attacks", "run_evasion", "severity_for"]

_RECOMMENDATION = (
    "Harden the model with PGD adversarial training (mlwarden harden adversarial) or certify it "
    "with randomized smoothing; add input detectors at serving time and limit output precision "
    "to slow down black-box attacks."
)


@dataclass
class EvasionOutcome:
    """Findings, metrics and the data a report draws for the evasion check."""

    findings: list[Finding] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    section: dict[str, Any] = field(default_factory=dict)


def plan_attacks(config: AssessConfig, classifier: Classifier) -> tuple[list[str], list[str]]:
    """The attacks to run, in order, and the ones of the profile skipped, with the reason.

    Without ``attacks`` in the configuration the profile's suite runs (``standard`` unless
    ``profile`` says otherwise). Explicitly requested attacks that cannot run on this model
    are a :class:`ConfigError`.
    """
    explicit = config.attacks is not None
    if config.attacks is not None:
        names = list(config.attacks)
    else:
        names = [name for name, _ in _profile(config, classifier)]
    run: list[str] = []
    skipped: list[str] = []
    for name in names:
        if not explicit and name not in attack_names():
            skipped.append(f"{name} is not available in this installation")
            continue
        cls = get_attack(name)
        reason = None
        if cls.needs_gradients and not classifier.differentiable:
            reason = f"{name} needs gradients and the model is black-box"
        elif cls.needs_scores and getattr(classifier, "label_only", False):
            reason = f"{name} needs scores and the model answers with labels only"
        elif config.norm not in cls.supported_norms:
            reason = f"{name} supports only {list(cls.supported_norms)}, not norm={config.norm}"
        if reason is None:
            run.append(name)
        elif explicit:
            raise ConfigError(f"attacks: {reason}; remove it from the config")
        else:
            skipped.append(reason)
    if not run:
        raise ConfigError("no attack can run on this model with this configuration")
    return run, skipped


def _profile(
    config: AssessConfig, classifier: Classifier, *, randomized: bool = False
) -> list[tuple[str, dict[str, Any]]]:
    return profile_attacks(
        config.profile or DEFAULT_PROFILE,
        white_box=classifier.differentiable,
        randomized=randomized,
    )


def _build(
    name: str,
    eps: float,
    config: AssessConfig,
    classifier: Classifier,
    *,
    eot_samples: int = 1,
) -> Attack:
    cls = get_attack(name)
    suite = _profile(config, classifier, randomized=eot_samples > 1)
    defaults = dict(suite) if config.attacks is None else {}
    params = {**defaults.get(name, {}), **config.attack_params.get(name, {})}
    if eot_samples > 1 and "eot_samples" in inspect.signature(cls).parameters:
        params.setdefault("eot_samples", eot_samples)
    norm = cast(Norm, config.norm)
    try:
        return cls(eps=eps, norm=norm, seed=config.seed, batch_size=config.batch_size, **params)
    except TypeError as exc:
        raise ConfigError(f"attack_params.{name}: {exc}") from None


def severity_for(clean: float, robust_by_eps: dict[float, float]) -> Severity:
    """Severity from the robust/clean accuracy ratio (documented in docs/report-schema.md).

    critical: the model loses more than half its accuracy at the smallest ε; high: at the
    largest ε; medium: more than 20 %; low: more than 5 %; info otherwise.
    """
    if clean <= 0:
        return Severity.HIGH
    ratios = [robust_by_eps[e] / clean for e in sorted(robust_by_eps)]
    if ratios[0] < 0.5:
        return Severity.CRITICAL
    if ratios[-1] < 0.5:
        return Severity.HIGH
    if ratios[-1] < 0.8:
        return Severity.MEDIUM
    if ratios[-1] < 0.95:
        return Severity.LOW
    return Severity.INFO


def run_evasion(
    classifier: Classifier,
    data: Dataset,
    config: AssessConfig,
    *,
    clean_predictions: np.ndarray,
    on_step: Callable[[str], None] | None = None,
) -> EvasionOutcome:
    """Run every planned attack at every ε and turn the results into findings."""
    names, skipped = plan_attacks(config, classifier)
    clean_accuracy = float((clean_predictions == data.y).mean())
    outcome = EvasionOutcome()
    curves: dict[str, list[dict[str, Any]]] = {}
    robust_all = {eps: clean_predictions == data.y for eps in config.epsilons}
    example_source: tuple[str, AttackResult] | None = None

    cascade = config.attacks is None
    reliability = _adapt(classifier, data, config)
    target_model = reliability.view
    if cascade and reliability.randomized and classifier.differentiable:
        names = [name for name, _ in _profile(config, classifier, randomized=True)]
    randomized_rows: list[dict[str, Any]] = []
    for name in names:
        curves[name] = []
    standing = clean_predictions
    if cascade and reliability.randomized:
        # one clean draw that errs does not make a sample broken: a randomized model may still
        # be right on most draws there, so the suite attacks every sample not misclassified on
        # all of its draws (leaving them out overstated robust accuracy by up to 1.5 points)
        standing = np.where(
            _error_rates(classifier, data.x, data.y) == 1.0, clean_predictions, data.y
        )
    for eps in config.epsilons:
        # a suite attacks only what earlier attacks left standing (AutoAttack); explicit
        # attacks each run on every sample so that each one's own figure is known
        adversarial = data.x.copy()
        predictions = standing.copy()
        for name in names:
            if on_step:
                on_step(f"{name} ε={eps:g}")
            attack = _build(name, eps, config, classifier, eot_samples=reliability.eot_samples)
            target = np.nonzero(predictions == data.y)[0] if cascade else np.arange(len(data))
            started = time.perf_counter()
            if len(target):
                result = attack.generate(target_model, data.x[target], data.y[target])
                queries = float(result.queries.mean())
            else:
                result, queries = None, 0.0
            elapsed = time.perf_counter() - started
            if cascade:
                if result is not None and reliability.randomized:
                    # one draw decides nothing on a randomized model: keep, per sample, the
                    # point misclassified most often, and leave for the next attack every
                    # sample not misclassified on all of its draws
                    _keep_likelier(classifier, data, adversarial, target, result.x_adv)
                    rates = _error_rates(classifier, adversarial[target], data.y[target])
                    stable = target[rates == 1.0]
                    predictions[stable] = classifier.predict(adversarial[stable])
                elif result is not None:
                    broken = result.predictions != data.y[target]
                    adversarial[target[broken]] = result.x_adv[broken]
                    predictions[target[broken]] = result.predictions[broken]
                own_x, own_predictions = adversarial, predictions
            else:
                assert result is not None
                own_x, own_predictions = result.x_adv, result.predictions
            robust = own_predictions == data.y
            robust_all[eps] &= robust
            row = _curve_row(eps, data, clean_predictions, own_x, robust, config.norm)
            row.update(
                mean_queries=queries,
                attacked=len(target),
                seconds=round(elapsed, 3),
            )
            curves[name].append(row)
            if eps == config.epsilons[-1]:
                candidate = AttackResult(
                    attack=name,
                    norm=config.norm,
                    eps=eps,
                    targeted=False,
                    x_adv=own_x,
                    success=~robust,
                    queries=np.zeros(len(data), dtype=np.int64),
                    predictions=own_predictions,
                )
                if example_source is None or candidate.success.sum() > (
                    example_source[1].success.sum()
                ):
                    example_source = (name, candidate)
        if reliability.randomized and cascade:
            # one prediction of a randomized model is one draw: report the mean over draws
            draws = [
                float((classifier.predict(adversarial) == data.y).mean())
                for _ in range(_RANDOMIZED_DRAWS)
            ]
            low, high = _mean_interval(draws)
            robust_all[eps] = predictions == data.y
            randomized_rows.append(
                {"eps": eps, "mean": float(np.mean(draws)), "interval": [low, high], "draws": draws}
            )
    for name in names:
        rows = curves[name]
        robust_by_eps = {row["eps"]: row["robust_accuracy"] for row in rows}
        for eps, value in robust_by_eps.items():
            outcome.metrics[f"robust_accuracy[{name}]@{eps:g}"] = value
        outcome.findings.append(_attack_finding(name, clean_accuracy, rows, config, cascade))

    worst = {eps: float(robust_all[eps].mean()) for eps in config.epsilons}
    for row in randomized_rows:
        # a randomized model's accuracy under attack is the mean over draws at the points the
        # suite found (Athalye et al. 2018); the cascade's own figure counts a sample broken
        # when any one draw erred, which favours the attacker, so it is kept beside it
        outcome.metrics[f"robust_accuracy_any_draw@{row['eps']:g}"] = worst[row["eps"]]
        outcome.metrics[f"robust_accuracy_interval_low@{row['eps']:g}"] = row["interval"][0]
        outcome.metrics[f"robust_accuracy_interval_high@{row['eps']:g}"] = row["interval"][1]
        worst[row["eps"]] = row["mean"]
    for eps in config.epsilons:
        outcome.metrics[f"robust_accuracy@{eps:g}"] = worst[eps]
    for reason in skipped:
        outcome.findings.append(
            Finding(
                id="evasion.skipped",
                check="evasion",
                title="Attack skipped",
                summary=f"Skipped: {reason}.",
                severity=Severity.INFO,
                metrics={},
                taxonomy=Taxonomy(nist=("MEASURE 2.3",)),
                recommendation="Assess a white-box export of the model to run gradient attacks too.",
            )
        )
    largest = config.epsilons[-1]
    masking = run_masking(
        classifier,
        data,
        norm=config.norm,
        seed=config.seed,
        batch_size=config.batch_size,
        curves=curves,
        white_box_names={n for n in names if get_attack(n).needs_gradients},
        cascade=cascade,
        clean_predictions=clean_predictions,
        survivors=np.nonzero(robust_all[largest])[0],
        suite=lambda eps, x, y: _suite_predictions(names, eps, config, reliability, x, y),
        adaptations=reliability.describe(),
        convergence_steps=_first_gradient_steps(names, config, classifier),
        on_step=on_step,
    )
    outcome.findings.extend(masking.findings)
    outcome.metrics.update(masking.metrics)
    outcome.section = {
        "masking": masking.section,
        "adaptive": reliability.describe(),
        "randomized_robust_accuracy": randomized_rows,
        "mode": "suite" if cascade else "independent",
        "profile": (config.profile or DEFAULT_PROFILE) if cascade else None,
        "attacks": names,
        "norm": config.norm,
        "epsilons": config.epsilons,
        "clean_accuracy": clean_accuracy,
        "worst_case_robust_accuracy": [
            {"eps": e, "robust_accuracy": worst[e]} for e in config.epsilons
        ],
        "curves": curves,
        "skipped": skipped,
        "examples": _examples(data, clean_predictions, example_source, config.examples),
    }
    return outcome


def _suite_predictions(
    names: list[str],
    eps: float,
    config: AssessConfig,
    reliability: Adaptation,
    x: np.ndarray,
    y: np.ndarray,
) -> np.ndarray:
    """Predictions after every planned attack, AutoAttack-style, at ``eps`` on ``(x, y)``."""
    model = reliability.view
    predictions = model.predict(x) if len(x) else np.zeros(0, dtype=np.int64)
    for name in names:
        target = np.nonzero(predictions == y)[0]
        if len(target) == 0:
            break
        attack = _build(name, eps, config, model, eot_samples=reliability.eot_samples)
        predictions[target] = attack.generate(model, x[target], y[target]).predictions
    return predictions


_RANDOMIZED_DRAWS = 10
_VARIABILITY = 1e-6
EOT_SAMPLES = {"standard": 20, "quick": 5}
"""Forward passes averaged per attack iterate on a randomized model, per profile (AutoAttack's
version for randomized defences uses 20); explicit attack lists get the standard figure."""


@dataclass(frozen=True)
class Adaptation:
    """How the attacks adapt to the model: BPDA through piecewise-constant ops, EOT over noise.

    Attributes
    ----------
    view
        What the attacks run on: the model, or its :class:`BPDAClassifier` view.
    randomized
        Identical calls gave different outputs.
    eot_samples
        Forward passes per iterate of the gradient attacks (1 unless randomized).
    bpda_ops
        The piecewise-constant ops the model calls, attacked straight-through.
    """

    view: Classifier
    randomized: bool
    eot_samples: int
    bpda_ops: tuple[str, ...]

    def describe(self) -> dict[str, Any]:
        """What the report records of the adaptation."""
        return {
            "randomized": self.randomized,
            "eot_samples": self.eot_samples,
            "bpda_ops": list(self.bpda_ops),
        }


def _adapt(classifier: Classifier, data: Dataset, config: AssessConfig) -> Adaptation:
    """Make the evaluation adaptive: EOT for randomized models, BPDA for rounding ones."""
    randomized = prediction_variability(classifier, data.x[:64]) > _VARIABILITY
    eot = EOT_SAMPLES[config.profile or DEFAULT_PROFILE] if randomized else 1
    ops: tuple[str, ...] = ()
    view: Classifier = classifier
    if isinstance(classifier, DifferentiableClassifier) and len(data):
        ops = tuple(sorted(piecewise_constant_ops_used(classifier, data.x)))
        if ops:
            view = BPDAClassifier(classifier)
    return Adaptation(view=view, randomized=randomized, eot_samples=eot, bpda_ops=ops)


def _error_rates(classifier: Classifier, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per sample, the share of :data:`_RANDOMIZED_DRAWS` predictions that are wrong."""
    wrong = [classifier.predict(x) != y for _ in range(_RANDOMIZED_DRAWS)]
    return np.mean(wrong, axis=0)


def _keep_likelier(
    classifier: Classifier,
    data: Dataset,
    adversarial: np.ndarray,
    rows: np.ndarray,
    candidates: np.ndarray,
) -> None:
    """Replace ``adversarial[rows]`` by ``candidates`` where a randomized model errs more often.

    A randomized model's single draw decides which samples count as broken; for the rest, the
    point an attack reached may still be misclassified on many draws, which the mean over draws
    must see (the clean input would hide it).
    """
    if len(rows) == 0:
        return
    better = _error_rates(classifier, candidates, data.y[rows]) > _error_rates(
        classifier, adversarial[rows], data.y[rows]
    )
    adversarial[rows[better]] = candidates[better]


def _mean_interval(values: list[float]) -> tuple[float, float]:
    """A 95% Student-t interval for the mean of ``values`` (a point when they all agree)."""
    mean = float(np.mean(values))
    spread = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    if spread == 0.0:
        return mean, mean
    low, high = stats.t.interval(0.95, len(values) - 1, loc=mean, scale=spread / len(values) ** 0.5)
    return float(max(low, 0.0)), float(min(high, 1.0))


def _first_gradient_steps(names: list[str], config: AssessConfig, classifier: Classifier) -> int:
    """The iteration budget of the first gradient attack run (the convergence check doubles it)."""
    for name in names:
        attack = _build(name, 1.0, config, classifier)
        steps = getattr(attack, "steps", None)
        if attack.needs_gradients and isinstance(steps, int):
            return steps
    return 50


def _curve_row(
    eps: float,
    data: Dataset,
    clean_predictions: np.ndarray,
    x_adv: np.ndarray,
    robust: np.ndarray,
    norm: str,
) -> dict[str, Any]:
    """Robust accuracy, success rate and perturbation sizes of one attack at one ε."""
    delta = (x_adv - data.x).reshape(len(data.x), -1)
    norm_values = np.abs(delta).max(axis=1) if norm == "linf" else np.linalg.norm(delta, axis=1)
    correct = clean_predictions == data.y
    fooled = ~robust & correct
    return {
        "eps": eps,
        "robust_accuracy": float(robust.mean()),
        "attack_success_rate": float(fooled.sum() / max(correct.sum(), 1)),
        "max_perturbation": float(norm_values.max()) if len(norm_values) else 0.0,
        "mean_perturbation_fooled": float(norm_values[fooled].mean()) if fooled.any() else 0.0,
    }


def _attack_finding(
    name: str,
    clean: float,
    rows: list[dict[str, Any]],
    config: AssessConfig,
    cascade: bool = False,
) -> Finding:
    cls = get_attack(name)
    robust = {row["eps"]: row["robust_accuracy"] for row in rows}
    severity = severity_for(clean, robust)
    largest = rows[-1]
    white_box = cls.needs_gradients
    summary = (
        f"{name.upper()} ({config.norm}, {'white-box' if white_box else 'black-box'}) lowers "
        f"accuracy from {clean:.1%} to {largest['robust_accuracy']:.1%} at ε={largest['eps']:g}"
        f" ({largest['attack_success_rate']:.1%} of correctly classified inputs fooled, "
        f"{largest['mean_queries']:.0f} queries per input on average)."
    )
    if cascade:
        summary = (
            f"After {name.upper()} ({config.norm}, {'white-box' if white_box else 'black-box'}), "
            f"run on the {largest['attacked']} inputs earlier attacks of the suite left "
            f"correctly classified, accuracy is {largest['robust_accuracy']:.1%} at "
            f"ε={largest['eps']:g} (clean {clean:.1%}; {largest['mean_queries']:.0f} queries "
            "per attacked input on average)."
        )
    return Finding(
        id=f"evasion.{name}",
        check="evasion",
        title=f"Evasion by {name.upper()} ({config.norm})",
        summary=summary,
        severity=severity,
        metrics={
            "clean_accuracy": clean,
            **{f"robust_accuracy@{e:g}": v for e, v in robust.items()},
        },
        taxonomy=Taxonomy(
            atlas=("AML.T0043", "AML.T0043.000" if white_box else "AML.T0043.001", "AML.T0015"),
            owasp=("ML01:2023",),
            nist=("MEASURE 2.7", "MANAGE 1.3"),
        ),
        recommendation=_RECOMMENDATION,
        details={
            "attack": name,
            "norm": config.norm,
            "params": config.attack_params.get(name, {}),
            "cumulative": cascade,
            "curve": rows,
        },
    )


def _examples(
    data: Dataset,
    clean_predictions: np.ndarray,
    source: tuple[str, AttackResult] | None,
    limit: int,
) -> dict[str, Any] | None:
    """A few inputs the strongest attack fooled at the largest ε, for the report's pictures."""
    if source is None or limit == 0 or data.kind != "image":
        return None
    name, result = source
    fooled = np.nonzero(result.success & (clean_predictions == data.y))[0][:limit]
    if len(fooled) == 0:
        return None
    return {
        "attack": name,
        "eps": result.eps,
        "indices": fooled.tolist(),
        "labels": data.y[fooled].tolist(),
        "adversarial_predictions": result.predictions[fooled].tolist(),
        "clean": np.round(data.x[fooled], 4).tolist(),
        "adversarial": np.round(result.x_adv[fooled], 4).tolist(),
    }
