"""Run an assessment: every check over one model and dataset, ending in a :class:`Report`."""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mlwarden import __version__
from mlwarden.assess.accuracy import clean_accuracy_finding
from mlwarden.assess.certification import run_certification, smoothing_settings
from mlwarden.assess.config import AssessConfig, Gate
from mlwarden.assess.detection import resolve_train_data, run_detection
from mlwarden.assess.evasion import plan_attacks, run_evasion
from mlwarden.assess.federated import is_federated_record
from mlwarden.assess.masking import MASKING_PREFIX, no_gradient_path_finding
from mlwarden.assess.profiles import FULL_PROFILE, FullProfilePlan, RunFacts, plan_full_profile
from mlwarden.assess.text import assess_text, is_text_model, text_steps
from mlwarden.data.dataset import Dataset
from mlwarden.errors import ConfigError, DataError
from mlwarden.models import to_white_box
from mlwarden.models.base import (
    Classifier,
    DifferentiableClassifier,
    GradientFreeView,
    gradient_path_problem,
)
from mlwarden.report.findings import Finding, GateResult, Report, Severity
from mlwarden.report.taxonomy import Taxonomy

__all__ = ["assess", "count_steps", "evaluate_gates", "resolve_profile", "white_box_view"]


def resolve_profile(
    classifier: Classifier,
    data: Dataset | None,
    config: AssessConfig,
    *,
    train_data_given: bool = False,
    artifact: str | Path | None = None,
    artifacts_scanned: bool = False,
) -> tuple[AssessConfig, FullProfilePlan | None]:
    """The configuration to run and, for ``profile: full``, the plan of its sections.

    Any other profile returns ``config`` unchanged and no plan. For the full profile, each
    section of :data:`~mlwarden.assess.profiles.FULL_PROFILE_SECTIONS` that applies to this
    model and data fills in the settings the configuration leaves unset.
    """
    if config.profile != FULL_PROFILE:
        return config, None
    recorded = classifier.info.get("metadata", {}).get("smoothing")
    facts = RunFacts(
        white_box=classifier.differentiable,
        noise_trained=isinstance(recorded, dict) and recorded.get("sigma") is not None,
        train_data_given=train_data_given,
        builtin_data=data is not None and data.name.startswith("builtin:"),
        artifact=Path(artifact) if artifact is not None else None,
        artifacts_scanned=artifacts_scanned,
        config=dict(config),
    )
    plan = plan_full_profile(facts)
    return (config.updated(**plan.settings) if plan.settings else config), plan


def count_steps(
    classifier: Classifier,
    config: AssessConfig,
    *,
    train_data_given: bool = False,
    data: Dataset | None = None,
    artifact: str | Path | None = None,
    artifacts_scanned: bool = False,
) -> int:
    """How many progress steps :func:`assess` reports (one per attack and ε, plus one).

    Certification adds one step; detection adds one per detection attack and per detector;
    the poisoning inspection of given training data adds three, or six for a white-box model
    (representations, spectral signatures, activation clustering); privacy and extraction add
    one per attack and per output policy; the full profile's artefact scan adds one. ``data``,
    ``artifact`` and ``artifacts_scanned`` are what :func:`assess` is given (the full profile
    plans its sections from them).
    """
    if is_text_model(classifier):
        return text_steps(config)
    config, plan = resolve_profile(
        classifier,
        data,
        config,
        train_data_given=train_data_given,
        artifact=artifact,
        artifacts_scanned=artifacts_scanned,
    )
    names, _ = plan_attacks(config, classifier)
    # the attacks at every ε, clean accuracy, and the masking diagnostics (checks, the probe
    # and, for white-box models, the convergence re-attack)
    steps = len(names) * len(config.epsilons) + 1 + 2 + int(classifier.differentiable)
    if smoothing_settings(classifier, config) is not None:
        steps += 1
    if config.detectors:
        steps += (2 if classifier.differentiable else 1) + len(config.detectors)
    if isinstance(config.privacy, dict):
        privacy = config.privacy
        steps += int(privacy["membership"]) + int(bool(privacy["lira_shadows"]))
        steps += int(privacy["inversion"] and classifier.differentiable)
    if isinstance(config.extraction, dict):
        steps += len(config.extraction["policies"])
    steps += int(isinstance(config.memorization, dict))
    if train_data_given and config.poisoning is not False:
        steps += 6 if classifier.differentiable else 3
    if plan is not None and "supply-chain-scan" in plan.ran:
        steps += 1
    return steps


_CONVERSION_CHECK_SAMPLES = 128
_CONVERSION_TAXONOMY = Taxonomy(owasp=("ML01:2023",), nist=("MEASURE 2.7",))


def white_box_view(
    classifier: Classifier, data: Dataset, config: AssessConfig
) -> tuple[Classifier, dict[str, Any] | None, Finding | None]:
    """The classifier to assess, the conversion record and its finding.

    A white-box model is returned as it is (no record, no finding), unless its gradients cannot
    be computed: then it is assessed as a black box (:class:`GradientFreeView`) with the
    masking finding ``masking.no_gradient_path``, so gates on robust accuracy fail closed.
    A black-box one is
    converted with :func:`~mlwarden.models.convert.to_white_box`, checked on evaluation samples
    and on the same samples moved by the largest ε (seeded by ``config.seed``): the converted
    view when it is exact (finding ``model.white_box_conversion``), otherwise the model itself
    and the finding ``model.black_box_only``, since then only gradient-free attacks run.
    """
    check = data.sample(_CONVERSION_CHECK_SAMPLES, config.seed).x.astype(np.float32)
    if isinstance(classifier, DifferentiableClassifier):
        problem = gradient_path_problem(classifier, check[:8])
        if problem is None:
            return classifier, None, None
        return (
            GradientFreeView(classifier),
            {"converted": False, "reason": problem, "max_abs_diff": None, "n_checked": 0},
            no_gradient_path_finding(problem),
        )
    rng = np.random.default_rng(config.seed)
    eps = max(config.epsilons)
    direction = rng.choice([-1.0, 1.0], size=check.shape)
    if config.norm == "l2":
        norms = np.linalg.norm(direction.reshape(len(check), -1), axis=1)
        direction /= norms.reshape(-1, *[1] * (check.ndim - 1))
    moved = np.clip(check + eps * direction, *data.clip_range).astype(np.float32)
    view, record = to_white_box(classifier, np.concatenate([check, moved]))
    diff = float(record["max_abs_diff"])
    record = {**record, "max_abs_diff": None if math.isnan(diff) else diff}  # JSON has no NaN
    if view is not None:
        return (
            view,
            record,
            Finding(
                id="model.white_box_conversion",
                check="model",
                title="Assessed white-box through an exact conversion",
                summary=(
                    f"The model was converted to an equivalent PyTorch module, used for gradients "
                    f"only: its probabilities match the model's within {diff:.2g} on "
                    f"{record['n_checked']} check inputs, and every prediction is still made by "
                    "the original model."
                ),
                severity=Severity.INFO,
                metrics={"white_box_conversion_max_abs_diff": diff},
                taxonomy=_CONVERSION_TAXONOMY,
                recommendation="Nothing to do: gradient attacks ran against the model.",
                details=dict(record),
            ),
        )
    return (
        classifier,
        record,
        Finding(
            id="model.black_box_only",
            check="model",
            title="The assessment is black-box only",
            summary=(
                f"The assessment is black-box only: the model could not be converted to an exact "
                f"differentiable form ({record['reason']}). Gradient attacks could not run, so "
                "robust accuracy comes from black-box attacks alone and may be higher than the "
                "truth."
            ),
            severity=Severity.MEDIUM,
            metrics={},
            taxonomy=_CONVERSION_TAXONOMY,
            recommendation=(
                "Read the robust-accuracy figures as upper bounds. Assess a white-box export of "
                "the model (torch.export .pt2, an ONNX graph of supported operators, or a "
                "supported scikit-learn estimator) so gradient attacks can run."
            ),
            details=dict(record),
        ),
    )


def _plan_finding(plan: FullProfilePlan) -> Finding:
    """What the full profile checked and what it could not, with the reason."""
    not_run = "; ".join(f"{name}: {reason}" for name, reason in plan.skipped.items())
    return Finding(
        id="assess.full_profile",
        check="profile",
        title=f"Full profile: {len(plan.ran)} of {len(plan.ran) + len(plan.skipped)} checks ran",
        summary=f"Ran: {', '.join(plan.ran)}."
        + (f" Not run: {not_run}." if not_run else " Every check of the profile applied."),
        severity=Severity.INFO,
        metrics={},
        taxonomy=Taxonomy(nist=("MEASURE 2.7",)),
        recommendation=(
            "Give what a skipped check needs (training data, a model file) to cover it."
            if plan.skipped
            else "Nothing to do."
        ),
        details=plan.section(),
    )


def _builtin_train(data: Dataset) -> Dataset | None:
    """The train split of built-in evaluation data (the extraction attacker's pool), else None."""
    if not data.name.startswith("builtin:"):
        return None
    from mlwarden.data.builtin import load_builtin

    return load_builtin(data.name.split(":")[1]).train


def _check_compatible(classifier: Classifier, data: Dataset) -> None:
    if data.input_shape != classifier.input_shape:
        raise DataError(
            f"the data's samples have shape {data.input_shape} but the model expects "
            f"{classifier.input_shape}"
        )
    if int(data.y.max()) >= classifier.n_classes:
        raise DataError(
            f"the data has label {int(data.y.max())} but the model has only "
            f"{classifier.n_classes} classes"
        )


def evaluate_gates(
    gates: list[Gate], metrics: dict[str, float], *, masking: list[str] | None = None
) -> list[GateResult]:
    """Compare each gate's threshold with the measured metric (missing metrics fail).

    ``masking`` names the gradient-masking diagnostics that fired (unless acknowledged): while
    there are any, every gate on robust accuracy fails closed with that reason, since the
    measured figure may be far too high.
    """
    results = []
    for gate in gates:
        key = gate.metric
        if gate.eps is not None:
            # normalise the ε spelling (0.10 -> 0.1) to the metric keys' format
            prefix = key.split("@")[0]
            key = f"{prefix}@{gate.eps:g}"
        value = metrics.get(key)
        reason = None
        if masking and gate.metric.startswith("robust_accuracy"):
            reason = (
                "gradient masking suspected (" + "; ".join(masking) + "): the robust accuracy "
                "may be overstated; make the evaluation adaptive, or set acknowledge_masking: "
                "true to gate on it anyway"
            )
        results.append(
            GateResult(
                metric=gate.metric,
                threshold=gate.threshold,
                value=value,
                passed=value is not None and value >= gate.threshold and reason is None,
                source=gate.source,
                reason=reason,
            )
        )
    return results


def assess(
    classifier: Classifier,
    data: Dataset,
    config: AssessConfig,
    *,
    train_data: Dataset | None = None,
    on_step: Callable[[str], None] | None = None,
    extra_findings: list[Finding] | None = None,
    artifact: str | Path | None = None,
) -> Report:
    """Assess ``classifier`` on ``data`` and return the report.

    Parameters
    ----------
    train_data
        Clean data to fit and calibrate ``config.detectors`` on; for built-in evaluation data
        the dataset's train split is used when omitted. When given, it is also inspected for
        poisoning (the ``poisoning`` section) unless ``config.poisoning`` is ``False``.
    on_step
        Called with a short description before each unit of work (for progress bars).
    extra_findings
        Findings of checks run outside this function (the supply-chain section), appended to
        the report's findings.
    artifact
        The model's file, scanned by ``profile: full`` (unless ``extra_findings`` already hold
        a supply-chain section).
    """
    if is_text_model(classifier):  # text models: the synonym-substitution check (assess/text.py)
        return assess_text(
            classifier,
            data,
            config,
            on_step=on_step,
            extra_findings=extra_findings,
            evaluate_gates=evaluate_gates,
        )
    _check_compatible(classifier, data)
    classifier, conversion, conversion_finding = white_box_view(classifier, data, config)
    config, plan = resolve_profile(
        classifier,
        data,
        config,
        train_data_given=train_data is not None,
        artifact=artifact,
        artifacts_scanned=any(f.check == "supplychain" for f in extra_findings or []),
    )
    poisoning_data = train_data if config.poisoning is not False else None  # given: inspect it
    if config.privacy and train_data is None and not data.name.startswith("builtin:"):
        raise ConfigError(
            "privacy attacks need the model's training data (members); pass --train-data, "
            "or remove privacy from the config"
        )
    if config.detectors or config.privacy:  # fail before the long evasion run without data
        train_data = resolve_train_data(data, train_data)
    started = time.perf_counter()
    created = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
    planned, _ = plan_attacks(config, classifier)
    for gate in config.gates:
        if gate.attack is not None and gate.attack not in planned:
            raise ConfigError(
                f"gate {gate.metric}: attack {gate.attack!r} is not run in this assessment"
            )
    sample = data.sample(config.max_samples, config.seed)

    if on_step:
        on_step("clean accuracy")
    clean_predictions = classifier.predict(sample.x)
    clean_accuracy = float((clean_predictions == sample.y).mean())
    metrics: dict[str, float] = {"clean_accuracy": clean_accuracy}
    findings: list[Finding] = [clean_accuracy_finding(clean_accuracy, len(sample))]
    if conversion_finding is not None:
        findings.append(conversion_finding)

    evasion = run_evasion(
        classifier, sample, config, clean_predictions=clean_predictions, on_step=on_step
    )
    findings.extend(evasion.findings)
    metrics.update(evasion.metrics)
    sections = {"evasion": evasion.section}

    smoothing = smoothing_settings(classifier, config)
    if smoothing is not None:
        certification = run_certification(classifier, sample, config, smoothing, on_step=on_step)
        findings.extend(certification.findings)
        metrics.update(certification.metrics)
        sections["certification"] = certification.section
    if config.detectors:
        detection = run_detection(
            classifier,
            sample,
            config,
            train_data=train_data,
            clean_predictions=clean_predictions,
            on_step=on_step,
        )
        findings.extend(detection.findings)
        metrics.update(detection.metrics)
        sections["detection"] = detection.section
    if poisoning_data is not None:
        from mlwarden.assess.poisoning import run_poisoning

        poisoning = run_poisoning(classifier, poisoning_data, config, on_step=on_step)
        findings.extend(poisoning.findings)
        metrics.update(poisoning.metrics)
        sections["poisoning"] = poisoning.section
    if isinstance(config.privacy, dict) and train_data is not None:
        from mlwarden.assess.privacy import run_privacy

        privacy = run_privacy(
            classifier,
            sample,
            config.privacy,
            train_data=train_data,
            seed=config.seed,
            on_step=on_step,
        )
        findings.extend(privacy.findings)
        metrics.update(privacy.metrics)
        sections["privacy"] = privacy.section
    if isinstance(config.memorization, dict):  # the text generator named in the config
        from mlwarden.assess.memorization import run_memorization

        memorization = run_memorization(config.memorization, seed=config.seed, on_step=on_step)
        findings.extend(memorization.findings)
        metrics.update(memorization.metrics)
        sections["memorization"] = memorization.section
    if isinstance(config.extraction, dict):
        from mlwarden.assess.extraction import run_extraction

        extraction = run_extraction(
            classifier,
            sample,
            config.extraction,
            train_data=train_data if train_data is not None else _builtin_train(data),
            seed=config.seed,
            on_step=on_step,
        )
        findings.extend(extraction.findings)
        metrics.update(extraction.metrics)
        sections["extraction"] = extraction.section
    training_record = (classifier.info.get("metadata") or {}).get("training")
    if is_federated_record(training_record):  # a model from `mlwarden fl train`
        from mlwarden.assess.federated import run_federated_privacy

        federated = run_federated_privacy(training_record, sample, seed=config.seed)
        findings.extend(federated.findings)
        metrics.update(federated.metrics)
        sections["federated_privacy"] = federated.section
    if plan is not None:
        sections["profile"] = plan.section()
        findings.append(_plan_finding(plan))
        if "supply-chain-scan" in plan.ran and artifact is not None:
            from mlwarden.supplychain.findings import supply_chain_findings

            if on_step:
                on_step("supply-chain scan of the model artefact")
            findings.extend(supply_chain_findings(artifact))
    findings.extend(extra_findings or [])
    masking = [f for f in findings if f.id.startswith(MASKING_PREFIX)]
    gates = evaluate_gates(
        config.gates,
        metrics,
        masking=None if config.acknowledge_masking else [f.title for f in masking],
    )

    return Report(
        model={
            **{k: v for k, v in classifier.info.items() if k != "metadata"},
            "training": classifier.info.get("metadata", {}).get("training"),
            "n_classes": classifier.n_classes,
            "input_shape": list(classifier.input_shape),
            "clip_range": list(classifier.clip_range),
            "white_box": classifier.differentiable,
            "white_box_conversion": conversion,
        },
        data={
            "name": data.name,
            "kind": data.kind,
            "n_samples_total": len(data),
            "n_samples_evaluated": len(sample),
            "sha256": sample.digest(),
            "input_shape": list(data.input_shape),
            "n_classes": data.n_classes,
        },
        config=config.to_dict(),
        findings=findings,
        gates=gates,
        metrics=metrics,
        sections=sections,
        created_at=created,
        duration_s=time.perf_counter() - started,
        tool_version=__version__,
    )
