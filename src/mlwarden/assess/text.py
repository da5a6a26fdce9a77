"""The assessment of a text classifier: synonym substitution within word budgets, as findings.

Text models are assessed by the text attacks of the registry (``attack_names("text")``, today
:class:`~mlwarden.attacks.evasion.text_synonym.TextSynonymAttack`) in both threat models, with
probabilities (``score``) and with labels only (``label``). The configuration's ``epsilons``
are read as budgets on the share of words changed (the default 0.02, 0.05, 0.1 allow 2%, 5%
and 10% of the words), so gates such as ``robust_accuracy@0.05`` keep their meaning: accuracy
when at most 5% of each text's words may be swapped for synonyms.

The report has the usual ``evasion`` section (curves per attack variant and the worst case,
which the HTML report plots) and a ``text_evasion`` section with adversarial examples split
into segments, so the HTML writer can highlight substitutions while escaping every text.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from mlwarden import __version__
from mlwarden.assess.accuracy import clean_accuracy_finding
from mlwarden.assess.config import AssessConfig
from mlwarden.assess.evasion import severity_for
from mlwarden.attacks import attack_names
from mlwarden.attacks.evasion.text_synonym import TextAttackResult, TextSynonymAttack
from mlwarden.data.dataset import Dataset
from mlwarden.data.text.tokens import tokenize
from mlwarden.errors import ConfigError, DataError
from mlwarden.models.base import Classifier
from mlwarden.report.findings import Finding, Report
from mlwarden.report.taxonomy import Taxonomy

__all__ = ["TEXT_MODES", "assess_text", "highlight_segments", "is_text_model", "text_steps"]

#: The attack variants run on every text model: with probabilities, and with labels only.
TEXT_MODES: tuple[str, ...] = ("score", "label")

_TAXONOMY = Taxonomy(
    atlas=("AML.T0043", "AML.T0043.001", "AML.T0015"),
    owasp=("ML01:2023",),
    nist=("MEASURE 2.7", "MANAGE 1.3"),
)
_RECOMMENDATION = (
    "Train on synonym-substituted texts (mlwarden harden adversarial on the text model), "
    "certify predictions against substitutions with SAFER randomized smoothing over synonym "
    "sets, and return labels rather than probabilities to slow score-based attacks."
)


def is_text_model(classifier: Classifier) -> bool:
    """Whether ``classifier`` takes text (its ``modality`` is ``"text"``)."""
    return getattr(classifier, "modality", "tensor") == "text"


def text_steps(config: AssessConfig) -> int:
    """Progress steps of :func:`assess_text`: clean accuracy, then each variant at each budget."""
    return 1 + len(TEXT_MODES) * len(config.epsilons)


def highlight_segments(original: str, result: TextAttackResult, index: int) -> list[dict[str, str]]:
    """The adversarial text ``index`` as segments: unchanged text, or ``original``/``replacement``.

    Writers render the segments (escaping each); nothing here is HTML.
    """
    tokens = tokenize(original)
    changed = {s.position: s for s in result.substitutions[index]}
    segments: list[dict[str, str]] = []
    buffer = tokens.gaps[0]
    for position, word in enumerate(tokens.words):
        if position in changed:
            if buffer:
                segments.append({"text": buffer})
            segments.append({"original": word, "replacement": changed[position].replacement})
            buffer = ""
        else:
            buffer += word
        buffer += tokens.gaps[position + 1]
    if buffer:
        segments.append({"text": buffer})
    return segments


def _check(classifier: Classifier, data: Dataset, config: AssessConfig) -> None:
    if data.kind != "text":
        raise DataError(
            f"{data.name} holds {data.kind} data but the model takes text; give a text dataset "
            "such as builtin:convention-speeches"
        )
    if int(data.y.max()) >= classifier.n_classes:
        raise DataError(
            f"the data has label {int(data.y.max())} but the model has only "
            f"{classifier.n_classes} classes"
        )
    text_attacks = attack_names("text")
    if config.attacks is not None:
        other = [a for a in config.attacks if a not in text_attacks]
        if other:
            raise ConfigError(
                f"attacks: {other} do not apply to text models; text models are assessed with "
                f"{text_attacks} (remove attacks from the config)"
            )
    unsupported = [
        key
        for key in ("detectors", "privacy", "extraction", "smoothing")
        if getattr(config, key) not in (None, False)
    ]
    if unsupported:
        raise ConfigError(
            f"{', '.join(unsupported)}: not available for text models yet; remove them from "
            "the config"
        )
    too_large = [e for e in config.epsilons if e > 1]
    if too_large:
        raise ConfigError(
            f"epsilons: for a text model they are shares of words in (0, 1], got {too_large}"
        )
    for gate in config.gates:
        if gate.attack is not None and gate.attack not in text_attacks:
            raise ConfigError(f"gate {gate.metric}: {gate.attack!r} is not run on text models")


def _json_number(value: float) -> float | None:
    return None if math.isinf(value) or math.isnan(value) else value


def assess_text(
    classifier: Classifier,
    data: Dataset,
    config: AssessConfig,
    *,
    on_step: Callable[[str], None] | None = None,
    extra_findings: list[Finding] | None = None,
    evaluate_gates: Callable[..., Any] | None = None,
) -> Report:
    """Assess the text model ``classifier`` on the text dataset ``data``.

    ``evaluate_gates`` is the runner's gate evaluation (injected so this module does not import
    the runner that dispatches to it).
    """
    _check(classifier, data, config)
    started = time.perf_counter()
    created = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
    sample = data.sample(config.max_samples, config.seed)
    texts, labels = sample.x, sample.y
    if on_step:
        on_step("clean accuracy")
    clean_predictions = classifier.predict(texts)
    correct = clean_predictions == labels
    clean = float(correct.mean())
    metrics: dict[str, float] = {"clean_accuracy": clean}
    findings: list[Finding] = [clean_accuracy_finding(clean, len(sample), inputs="texts")]
    attacked = np.flatnonzero(correct)
    robust_all = {eps: correct.copy() for eps in config.epsilons}
    curves: dict[str, list[dict[str, Any]]] = {}
    examples: list[dict[str, Any]] = []
    for mode in TEXT_MODES:
        label = f"text-synonym ({mode})"
        rows: list[dict[str, Any]] = []
        for eps in config.epsilons:
            if on_step:
                on_step(f"{label} at {eps:g}")
            attack = TextSynonymAttack(eps=eps, mode=mode, seed=config.seed)  # type: ignore[arg-type]
            robust = correct.copy()
            if len(attacked):
                result = attack.generate(classifier, texts[attacked], labels[attacked])
                robust[attacked] = ~result.success
                success_rate = result.success_rate
                changed = result.mean_changed_share
                per_success = result.queries_per_success
                mean_queries = float(result.queries.mean())
                if mode == "score" and eps == config.epsilons[-1]:
                    for k in np.flatnonzero(result.success)[: config.examples]:
                        i = int(attacked[k])
                        examples.append(
                            {
                                "label": int(labels[i]),
                                "prediction": int(result.predictions[k]),
                                "changed_share": float(result.changed_share[k]),
                                "segments": highlight_segments(str(texts[i]), result, int(k)),
                            }
                        )
            else:
                success_rate, changed, per_success, mean_queries = 0.0, 0.0, math.inf, 0.0
            robust_all[eps] &= robust
            rows.append(
                {
                    "eps": eps,
                    "robust_accuracy": float(robust.mean()),
                    "success_rate": success_rate,
                    "mean_changed_share": changed,
                    "queries_per_success": _json_number(per_success),
                    "mean_queries": mean_queries,
                    "attacked": len(attacked),
                }
            )
        curves[label] = rows
        by_eps = {row["eps"]: row["robust_accuracy"] for row in rows}
        largest = rows[-1]
        findings.append(
            Finding(
                id=f"evasion.text-synonym-{mode}",
                check="evasion",
                title=f"Synonym substitution ({'scores' if mode == 'score' else 'labels only'})",
                summary=(
                    f"Swapping at most {largest['eps']:.0%} of the words for WordNet synonyms "
                    f"({'with' if mode == 'score' else 'without'} access to probabilities) "
                    f"changes the decision on {largest['success_rate']:.1%} of "
                    f"{largest['attacked']} correctly classified texts, changing "
                    f"{largest['mean_changed_share']:.1%} of the words on average; accuracy "
                    f"falls from {clean:.1%} to {largest['robust_accuracy']:.1%}."
                ),
                severity=severity_for(clean, by_eps),
                metrics={
                    **{f"robust_accuracy@{e:g}[{mode}]": v for e, v in by_eps.items()},
                    **{
                        f"attack_success_rate@{r['eps']:g}[{mode}]": r["success_rate"] for r in rows
                    },
                },
                taxonomy=_TAXONOMY,
                recommendation=_RECOMMENDATION,
                details={"attack": "text-synonym", "mode": mode, "curve": rows},
            )
        )
        for row in rows:
            metrics[f"attack_success_rate@{row['eps']:g}[{mode}]"] = row["success_rate"]
    worst = [{"eps": e, "robust_accuracy": float(robust_all[e].mean())} for e in config.epsilons]
    metrics.update({f"robust_accuracy@{w['eps']:g}": w["robust_accuracy"] for w in worst})
    findings.extend(extra_findings or [])
    gates = evaluate_gates(config.gates, metrics) if evaluate_gates is not None else []
    sections = {
        "evasion": {
            "mode": "independent",
            "attacks": list(curves),
            "norm": "word-share",
            "epsilons": config.epsilons,
            "clean_accuracy": clean,
            "worst_case_robust_accuracy": worst,
            "curves": curves,
            "skipped": [],
            "examples": None,
        },
        "text_evasion": {"lexicon": "WordNet 3.0 (shipped table)", "examples": examples},
    }
    return Report(
        model={
            "name": type(classifier).__name__,  # an in-memory model has no file record
            "format": "in-memory",
            "sha256": "—",
            **{k: v for k, v in classifier.info.items() if k != "metadata"},
            "training": classifier.info.get("metadata", {}).get("training"),
            "n_classes": classifier.n_classes,
            "modality": "text",
            "input_shape": [],
            "clip_range": list(classifier.clip_range),
            "white_box": False,
            "white_box_conversion": None,
        },
        data={
            "name": data.name,
            "kind": data.kind,
            "n_samples_total": len(data),
            "n_samples_evaluated": len(sample),
            "sha256": sample.digest(),
            "input_shape": [],
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
