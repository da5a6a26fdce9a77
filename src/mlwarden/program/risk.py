"""From a threat model to ranked threats and a ranked control plan.

Threats
    Each threat in :data:`THREATS` applies to a system when its rule says so (extraction needs
    a queryable model; membership inference needs sensitive training data; poisoning needs
    training data) and names the ATLAS techniques it is made of (ids checked against the
    vendored data).

Score
    ``likelihood × impact``, each on 1-5, so the score is 1-25. Likelihood starts from how far
    the model can be queried (*reach*: ``public-api`` 4, ``partner`` 3, ``internal`` 2,
    ``offline`` 1) or, for training-time threats, from where the data comes from
    (``user-contributed`` and ``scraped`` 4, ``third-party`` 3, ``internal`` 2, ``synthetic`` 1),
    then moves one step per documented reason (full probabilities +1, labels only −1, outsiders
    holding the weights +1, ...), clamped to 1-5. Impact is the threat model's level for the
    consequence (``negligible`` 1 ... ``severe`` 5); a privacy threat's impact is at least 4
    for confidential or personal data and 5 for restricted data. Ratings: **critical** ≥ 20,
    **high** ≥ 12, **medium** ≥ 6, **low** below. Every step is kept as a reason.

Controls
    A control is an ATLAS mitigation that ATLAS links to one of a threat's techniques and that
    :data:`IMPLEMENTATIONS` maps to an mlwarden command or gateway setting, plus mlwarden's own
    controls ATLAS does not list (DP training). A control's priority is the highest score among
    the threats it addresses; the plan is ordered by priority, then by how many threats a
    control addresses. A control is **done** when its evidence
    (:mod:`mlwarden.program.evidence`) is found, **missing** when it is not, and **manual** when
    no evidence can be checked automatically (organisational controls).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mlwarden.program.atlas import load_atlas
from mlwarden.program.evidence import Evidence
from mlwarden.program.threat_model import IMPACT_LEVELS, ThreatModel

__all__ = [
    "IMPLEMENTATIONS",
    "THREATS",
    "Control",
    "ControlSpec",
    "RiskAssessment",
    "Threat",
    "ThreatSpec",
    "assess_risk",
    "rating",
]

REACH: dict[str, int] = {"public-api": 4, "partner": 3, "internal": 2, "offline": 1}
ORIGIN_LIKELIHOOD: dict[str, int] = {
    "user-contributed": 4,
    "scraped": 4,
    "third-party": 3,
    "internal": 2,
    "synthetic": 1,
}
_OUTSIDERS = frozenset({"public", "customer", "partner"})

Reasons = list[tuple[int, str]]


def rating(score: int) -> str:
    """``critical`` (≥ 20), ``high`` (≥ 12), ``medium`` (≥ 6) or ``low``."""
    if score >= 20:
        return "critical"
    if score >= 12:
        return "high"
    if score >= 6:
        return "medium"
    return "low"


def _level(name: str) -> int:
    return IMPACT_LEVELS.index(name) + 1


# -- likelihood and impact rules ---------------------------------------------------------------
def _reach(tm: ThreatModel) -> Reasons:
    return [(REACH[tm.exposure], f"exposure {tm.exposure}: base {REACH[tm.exposure]}")]


def _outputs(tm: ThreatModel) -> Reasons:
    if tm.deployment.outputs == "probabilities":
        return [(1, "callers see full probability vectors (+1)")]
    if tm.deployment.outputs == "label":
        return [(-1, "callers see labels only (-1)")]
    return []


def _outsider_weights(tm: ThreatModel) -> Reasons:
    holders = [a.who for a in tm.access if a.access == "weights" and a.kind in _OUTSIDERS]
    if holders:
        return [(1, "outsiders hold the weights (white-box): " + ", ".join(holders) + " (+1)")]
    return []


def _sensitive(tm: ThreatModel) -> bool:
    return any(
        d.used_for == "training"
        and (d.personal_data or d.sensitivity in ("confidential", "restricted"))
        for d in tm.data
    )


def _untrusted_training(tm: ThreatModel) -> list[str]:
    return [s.name for s in tm.training_data if s.origin in ("user-contributed", "scraped")]


def _evasion_likelihood(tm: ThreatModel) -> Reasons:
    return _reach(tm) + _outsider_weights(tm)


def _query_privacy_likelihood(tm: ThreatModel) -> Reasons:
    return _reach(tm) + _outputs(tm)


def _inversion_likelihood(tm: ThreatModel) -> Reasons:
    harder = (-1, "inversion needs many queries and a white-box-like signal (-1)")
    return [*_reach(tm), harder, *_outputs(tm)]


def _poisoning_likelihood(tm: ThreatModel) -> Reasons:
    worst = max(tm.training_data, key=lambda s: ORIGIN_LIKELIHOOD[s.origin])
    reasons = [
        (
            ORIGIN_LIKELIHOOD[worst.origin],
            f"training data {worst.name!r} is {worst.origin}: base {ORIGIN_LIKELIHOOD[worst.origin]}",
        )
    ]
    writers = [a.who for a in tm.access if a.access == "training-data" and a.kind in _OUTSIDERS]
    if writers:
        reasons.append((1, "outsiders reach the training data: " + ", ".join(writers) + " (+1)"))
    return reasons


def _backdoor_likelihood(tm: ThreatModel) -> Reasons:
    reasons: Reasons = [(3, "a backdoor needs control of training data or of the model: base 3")]
    third = [m.name for m in tm.models if m.provenance != "in-house"]
    if third and _untrusted_training(tm):
        reasons.append((1, "both untrusted training data and a model made elsewhere (+1)"))
    return reasons


def _supply_chain_likelihood(tm: ThreatModel) -> Reasons:
    base = {"in-house": 2, "fine-tuned": 3, "third-party": 4}
    worst = max(tm.models, key=lambda m: base[m.provenance])
    return [
        (
            base[worst.provenance],
            f"model {worst.name!r} is {worst.provenance}: base {base[worst.provenance]}",
        )
    ]


def _impact(axis: str) -> Callable[[ThreatModel], Reasons]:
    def rule(tm: ThreatModel) -> Reasons:
        level = getattr(tm.impact, axis)
        return [(_level(level), f"impact.{axis} is {level}: {_level(level)}")]

    return rule


def _privacy_impact(tm: ThreatModel) -> Reasons:
    reasons = _impact("privacy")(tm)
    for d in tm.data:
        if d.used_for != "training":
            continue
        if d.sensitivity == "restricted":
            reasons.append((5, f"training data {d.name!r} is restricted: at least 5"))
        elif d.sensitivity == "confidential" or d.personal_data:
            what = "personal" if d.personal_data else "confidential"
            reasons.append((4, f"training data {d.name!r} is {what}: at least 4"))
    return reasons


def _worst_impact(tm: ThreatModel) -> Reasons:
    axes = ("integrity", "privacy", "intellectual_property", "availability")
    worst = max(axes, key=lambda a: _level(getattr(tm.impact, a)))
    level = getattr(tm.impact, worst)
    return [
        (
            _level(level),
            f"code run at load time compromises everything; worst impact is {worst}: {_level(level)}",
        )
    ]


@dataclass(frozen=True)
class ThreatSpec:
    """One kind of threat: when it applies, its ATLAS techniques and its scoring rules."""

    id: str
    title: str
    techniques: tuple[str, ...]
    applies: Callable[[ThreatModel], str | None]  # the reason it applies, or None
    likelihood: Callable[[ThreatModel], Reasons]  # additive steps
    impact: Callable[[ThreatModel], Reasons]  # the maximum is taken


def _queryable(tm: ThreatModel) -> str | None:
    return None if tm.exposure == "offline" else f"the model answers queries ({tm.exposure})"


THREATS: tuple[ThreatSpec, ...] = (
    ThreatSpec(
        "evasion",
        "Adversarial inputs make the model decide wrongly",
        ("AML.T0015", "AML.T0043", "AML.T0043.000", "AML.T0043.001"),
        lambda tm: "every deployed classifier can be fed crafted inputs",
        _evasion_likelihood,
        _impact("integrity"),
    ),
    ThreatSpec(
        "membership",
        "Queries reveal whether a record was in the training data",
        ("AML.T0024", "AML.T0024.000"),
        lambda tm: (
            "sensitive training data behind a queryable model"
            if _sensitive(tm) and _queryable(tm)
            else None
        ),
        _query_privacy_likelihood,
        _privacy_impact,
    ),
    ThreatSpec(
        "inversion",
        "Queries reconstruct training data (model inversion)",
        ("AML.T0024", "AML.T0024.001"),
        lambda tm: (
            "sensitive training data behind a queryable model"
            if _sensitive(tm) and _queryable(tm)
            else None
        ),
        _inversion_likelihood,
        _privacy_impact,
    ),
    ThreatSpec(
        "extraction",
        "Queries copy the model (model extraction)",
        ("AML.T0024", "AML.T0024.002"),
        _queryable,
        _query_privacy_likelihood,
        _impact("intellectual_property"),
    ),
    ThreatSpec(
        "poisoning",
        "Poisoned training data degrades or steers the model",
        ("AML.T0020",),
        lambda tm: (
            "the system is trained on data: " + ", ".join(s.origin for s in tm.training_data)
            if tm.training_data
            else None
        ),
        _poisoning_likelihood,
        _impact("integrity"),
    ),
    ThreatSpec(
        "backdoor",
        "A backdoor planted in training makes a trigger control the output",
        ("AML.T0018", "AML.T0018.000", "AML.T0043.004"),
        lambda tm: (
            "untrusted training data or a model made elsewhere"
            if _untrusted_training(tm) or any(m.provenance != "in-house" for m in tm.models)
            else None
        ),
        _backdoor_likelihood,
        _impact("integrity"),
    ),
    ThreatSpec(
        "supply-chain",
        "A tampered model file or dependency runs code or swaps the model",
        ("AML.T0010", "AML.T0010.003", "AML.T0011.000"),
        lambda tm: "model files are loaded from storage",
        _supply_chain_likelihood,
        _worst_impact,
    ),
    ThreatSpec(
        "abuse",
        "Query floods run up cost or deny service",
        ("AML.T0029", "AML.T0034"),
        lambda tm: (
            f"outsiders can query the model ({tm.exposure})"
            if tm.exposure in ("public-api", "partner")
            else None
        ),
        _reach,
        _impact("availability"),
    ),
)


@dataclass(frozen=True)
class ControlSpec:
    """How mlwarden implements a mitigation, and which evidence shows it is in place."""

    id: str
    title: str
    implemented_by: str
    evidence: str | None  # an EVIDENCE_KINDS entry, or None for a manual control
    techniques: tuple[str, ...] = ()  # for controls ATLAS does not list: what they address


#: ATLAS mitigations mlwarden implements (or tracks as manual), by mitigation id.
IMPLEMENTATIONS: dict[str, ControlSpec] = {
    spec.id: spec
    for spec in (
        ControlSpec(
            "AML.M0002",
            "Passive AI Output Obfuscation",
            "gateway `output: {decimals: 2}` or `mode: label`",
            "gateway-rounding",
        ),
        ControlSpec(
            "AML.M0004",
            "Restrict Number of AI Model Queries",
            "gateway `rate_limits.daily_quota` and `per_key_model`",
            "gateway-quota",
        ),
        ControlSpec(
            "AML.M0019",
            "Control Access to AI Models and Data in Production",
            "gateway roles and API keys (`mlwarden keys create`)",
            "gateway-roles",
        ),
        ControlSpec(
            "AML.M0024",
            "AI Telemetry Logging",
            "gateway audit log and `monitor.enabled` (`mlwarden audit verify`)",
            "gateway-monitor",
        ),
        ControlSpec(
            "AML.M0003",
            "Model Hardening",
            "`mlwarden harden adversarial`, held by `mlwarden assess` gates",
            "passing-assessment",
        ),
        ControlSpec(
            "AML.M0015",
            "Adversarial Input Detection",
            "gateway `models.NAME.detectors` (fitted detectors)",
            "gateway-detectors",
        ),
        ControlSpec(
            "AML.M0008",
            "Validate AI Model",
            "`mlwarden assess` with policy gates",
            "passing-assessment",
        ),
        ControlSpec(
            "AML.M0007",
            "Sanitize Training Data",
            "`mlwarden data inspect`, `mlwarden assess --train-data`",
            "assessment-poisoning",
        ),
        ControlSpec(
            "AML.M0025",
            "Maintain AI Dataset Provenance",
            "`mlwarden governance register` and lineage",
            None,
        ),
        ControlSpec(
            "AML.M0005",
            "Control Access to AI Models and Data at Rest",
            "`mlwarden governance grant`",
            None,
        ),
        ControlSpec("AML.M0013", "Code Signing", "`mlwarden sign`", "signature"),
        ControlSpec(
            "AML.M0014",
            "Verify AI Artifacts",
            "`mlwarden verify`; gateway `public_key` per model",
            "signature",
        ),
        ControlSpec(
            "AML.M0016",
            "Vulnerability Scanning",
            "`mlwarden scan`, `mlwarden check-deps`; gateway `scan_models: true`",
            "gateway-scan",
        ),
        ControlSpec("AML.M0023", "AI Bill of Materials", "`mlwarden governance lineage`", None),
    )
}

#: mlwarden controls ATLAS has no mitigation for.
EXTRA_CONTROLS: tuple[ControlSpec, ...] = (
    ControlSpec(
        "MLW.DP",
        "Train with differential privacy",
        "`mlwarden harden dp` (privacy record in the model sidecar)",
        "dp-record",
        techniques=("AML.T0024.000", "AML.T0024.001"),
    ),
)


@dataclass(frozen=True)
class Threat:
    """A threat that applies to the system, with its score and the reasons for it."""

    id: str
    title: str
    applies_because: str
    techniques: tuple[tuple[str, str], ...]  # (ATLAS id, name)
    likelihood: int
    likelihood_reasons: tuple[str, ...]
    impact: int
    impact_reasons: tuple[str, ...]

    @property
    def score(self) -> int:
        """``likelihood × impact`` (1-25)."""
        return self.likelihood * self.impact

    @property
    def rating(self) -> str:
        """:func:`rating` of the score."""
        return rating(self.score)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view."""
        return {
            "id": self.id,
            "title": self.title,
            "applies_because": self.applies_because,
            "atlas": [{"id": i, "name": n} for i, n in self.techniques],
            "likelihood": self.likelihood,
            "likelihood_reasons": list(self.likelihood_reasons),
            "impact": self.impact,
            "impact_reasons": list(self.impact_reasons),
            "score": self.score,
            "rating": self.rating,
        }


@dataclass(frozen=True)
class Control:
    """One entry of the control plan."""

    id: str
    title: str
    implemented_by: str
    threats: tuple[str, ...]
    priority: int
    status: str  # "done", "missing" or "manual"
    evidence: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view."""
        return {
            "id": self.id,
            "title": self.title,
            "implemented_by": self.implemented_by,
            "threats": list(self.threats),
            "priority": self.priority,
            "priority_rating": rating(self.priority),
            "status": self.status,
            "evidence": self.evidence,
        }


@dataclass(frozen=True)
class RiskAssessment:
    """Threats ranked by score and the control plan ranked by priority."""

    system: str
    atlas_version: str
    threats: tuple[Threat, ...]
    controls: tuple[Control, ...]
    evidence: dict[str, Evidence] = field(default_factory=dict)

    def missing_for_top_risks(self, at_least: str = "high") -> list[Control]:
        """Missing controls whose priority is rated ``at_least`` (``high``: high or critical)."""
        order = ("low", "medium", "high", "critical")
        return [
            c
            for c in self.controls
            if c.status == "missing" and order.index(rating(c.priority)) >= order.index(at_least)
        ]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view."""
        return {
            "system": self.system,
            "atlas_version": self.atlas_version,
            "threats": [t.to_dict() for t in self.threats],
            "controls": [c.to_dict() for c in self.controls],
            "evidence": {k: e.to_dict() for k, e in self.evidence.items()},
        }


def _clamp(value: int) -> int:
    return max(1, min(5, value))


def _threat(spec: ThreatSpec, tm: ThreatModel, because: str) -> Threat:
    atlas = load_atlas()
    likelihood = spec.likelihood(tm)
    impact = spec.impact(tm)
    return Threat(
        id=spec.id,
        title=spec.title,
        applies_because=because,
        techniques=tuple((t, atlas.display_name(t)) for t in spec.techniques),
        likelihood=_clamp(sum(step for step, _ in likelihood)),
        likelihood_reasons=tuple(r for _, r in likelihood),
        impact=_clamp(max(level for level, _ in impact)),
        impact_reasons=tuple(r for _, r in impact),
    )


def assess_risk(tm: ThreatModel, evidence: dict[str, Evidence] | None = None) -> RiskAssessment:
    """Derive the system's threats, score them and rank the controls.

    Parameters
    ----------
    tm
        The validated threat model.
    evidence
        :func:`mlwarden.program.evidence.collect_evidence`'s result; ``None`` marks every
        checkable control missing.

    Returns
    -------
    RiskAssessment
        Threats by descending score (then id), controls by descending priority.
    """
    atlas = load_atlas()
    evidence = evidence or {}
    threats = []
    for threat_spec in THREATS:
        because = threat_spec.applies(tm)
        if because is not None:
            threats.append(_threat(threat_spec, tm, because))
    threats.sort(key=lambda t: (-t.score, t.id))

    addressed: dict[str, list[Threat]] = {}
    for threat in threats:
        for technique, _ in threat.techniques:
            for mitigation in atlas.mitigations_for(technique):
                if mitigation.id in IMPLEMENTATIONS:
                    addressed.setdefault(mitigation.id, []).append(threat)
            for extra in EXTRA_CONTROLS:
                if technique in extra.techniques:
                    addressed.setdefault(extra.id, []).append(threat)
    specs: dict[str, ControlSpec] = {**IMPLEMENTATIONS, **{e.id: e for e in EXTRA_CONTROLS}}
    controls = []
    for control_id, by in addressed.items():
        spec = specs[control_id]
        unique = sorted({t.id: t for t in by}.values(), key=lambda t: (-t.score, t.id))
        if spec.evidence is None:
            status, detail = "manual", "not checked automatically; record it in the policies"
        else:
            found = evidence.get(spec.evidence)
            status = "done" if found is not None and found.found else "missing"
            detail = found.detail if found is not None else "no evidence collected"
        title = (
            atlas.mitigations[control_id].name if control_id in atlas.mitigations else spec.title
        )
        controls.append(
            Control(
                id=control_id,
                title=title,
                implemented_by=spec.implemented_by,
                threats=tuple(t.id for t in unique),
                priority=unique[0].score,
                status=status,
                evidence=detail,
            )
        )
    controls.sort(key=lambda c: (-c.priority, -len(c.threats), c.id))
    return RiskAssessment(tm.system, atlas.version, tuple(threats), tuple(controls), dict(evidence))
