"""The assessment configuration (YAML) and policy gates.

Example ``assess.yaml``::

    seed: 0
    epsilons: [0.02, 0.05, 0.1]   # perturbation budgets, in input units
    norm: linf                    # linf or l2
    profile: standard             # the attack suite: standard (AutoAttack-grade) or quick (CI)
    # attacks: [fgsm, pgd, square]  # instead of a profile: these, each on every sample
    acknowledge_masking: false    # gate on robust accuracy even when gradient masking is suspected
    max_samples: 500              # evaluate on at most this many samples (seeded draw)
    batch_size: 256
    examples: 8                   # adversarial examples drawn in the HTML report
    attack_params:
      pgd: {steps: 20, restarts: 1}
      square: {queries: 500, p_init: 0.05}
    policy:
      fail_under:
        clean_accuracy: 0.9
        robust_accuracy@0.05: 0.6
    smoothing: {sigma: 0.25, n: 10000}  # certify a smoothed model (sigma defaults to the sidecar's)
    detectors: [feature-squeezing, mahalanobis]  # input detectors to evaluate (optional)
    privacy: {membership: true, lira_shadows: 8, inversion: true}  # training-data leakage (optional)
    poisoning: true               # inspect --train-data for poison (default: when it is given)
    extraction: {budget: 1000}    # model theft through the API, per output policy (optional)

A gate ``metric: threshold`` fails when the measured metric is below the threshold. Metrics are
``clean_accuracy`` and ``robust_accuracy@EPS`` (the worst accuracy over all attacks at ε=EPS);
``robust_accuracy[ATTACK]@EPS`` gates one attack; ``extraction_resistance@BUDGET`` (one minus the
fidelity a Knockoff surrogate reaches with BUDGET queries, see :mod:`mlwarden.assess.extraction`)
gates model theft; ``membership_resistance`` (one minus the largest membership advantage
TPR − FPR of the privacy section's attacks, see :mod:`mlwarden.assess.privacy`) gates
membership leakage.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlwarden.errors import ConfigError
from mlwarden.registry import Registry

__all__ = [
    "DEFAULT_ATTACKS",
    "SECTION_CHECKS",
    "SMOOTHING_DEFAULTS",
    "AssessConfig",
    "Gate",
    "load_config",
    "parse_gate",
]

DEFAULT_ATTACKS = ("fgsm", "pgd", "square")

SECTION_CHECKS: Registry[Callable[[Any], Any]] = Registry("assessment section")
"""Validators of the optional sections (``privacy``, ``extraction``) by field name.

Each check module registers its own validator when it is imported (the package imports them
all), so this module never imports the checks that import it.
"""
_METRIC = re.compile(
    r"^(?P<name>clean_accuracy|robust_accuracy)(\[(?P<attack>[a-z0-9_-]+)\])?(@(?P<eps>[0-9.eE+-]+))?$"
)
_EXTRACTION_METRIC = re.compile(r"^extraction_resistance@[1-9][0-9]*$")
_PRIVACY_METRIC = re.compile(r"^membership_resistance$")


@dataclass(frozen=True)
class Gate:
    """A policy gate: ``metric`` must be at least ``threshold``."""

    metric: str
    threshold: float
    source: str = "config"

    @property
    def eps(self) -> float | None:
        """The ε the metric refers to, if any."""
        match = _METRIC.match(self.metric)
        if match is None:  # extraction_resistance@BUDGET: a budget, not an ε
            return None
        return float(match["eps"]) if match["eps"] else None

    @property
    def attack(self) -> str | None:
        """The attack the metric refers to, if any."""
        match = _METRIC.match(self.metric)
        return match["attack"] if match is not None else None


def _check_metric(metric: str, threshold: Any, source: str) -> Gate:
    if _EXTRACTION_METRIC.match(metric) or _PRIVACY_METRIC.match(metric):
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise ConfigError(f"{source}: threshold for {metric!r} must be a number")
        if not 0.0 <= float(threshold) <= 1.0:
            raise ConfigError(f"{source}: threshold for {metric!r} must be in [0, 1]")
        return Gate(metric=metric, threshold=float(threshold), source=source)
    match = _METRIC.match(metric)
    if match is None:
        raise ConfigError(
            f"{source}: unknown gate metric {metric!r}; use clean_accuracy, robust_accuracy@EPS, "
            "robust_accuracy[ATTACK]@EPS, extraction_resistance@BUDGET or membership_resistance "
            "(e.g. robust_accuracy@0.1=0.6)"
        )
    if match["name"] == "robust_accuracy" and not match["eps"]:
        raise ConfigError(f"{source}: {metric!r} needs an epsilon, e.g. robust_accuracy@0.1")
    if match["name"] == "clean_accuracy" and (match["eps"] or match["attack"]):
        raise ConfigError(f"{source}: clean_accuracy takes no @EPS or [ATTACK], got {metric!r}")
    if match["eps"]:
        try:
            eps = float(match["eps"])
        except ValueError:
            raise ConfigError(f"{source}: bad epsilon in {metric!r}") from None
        if not math.isfinite(eps) or eps <= 0:
            raise ConfigError(f"{source}: epsilon in {metric!r} must be > 0")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise ConfigError(f"{source}: threshold for {metric!r} must be a number, got {threshold!r}")
    if not 0.0 <= float(threshold) <= 1.0:
        raise ConfigError(f"{source}: threshold for {metric!r} must be in [0, 1], got {threshold}")
    return Gate(metric=metric, threshold=float(threshold), source=source)


def parse_gate(text: str) -> Gate:
    """Parse a ``--fail-under`` value such as ``robust_accuracy@0.1=0.6``."""
    metric, sep, value = text.partition("=")
    if not sep:
        raise ConfigError(
            f"--fail-under {text!r}: expected METRIC=THRESHOLD, e.g. robust_accuracy@0.1=0.6"
        )
    try:
        threshold = float(value)
    except ValueError:
        raise ConfigError(f"--fail-under {text!r}: threshold {value!r} is not a number") from None
    return _check_metric(metric.strip(), threshold, "--fail-under")


@dataclass
class AssessConfig:
    """Validated assessment settings; see the module docstring for the YAML form."""

    seed: int = 0
    epsilons: list[float] = field(default_factory=lambda: [0.02, 0.05, 0.1])
    norm: str = "linf"
    attacks: list[str] | None = None
    attack_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    max_samples: int | None = 500
    batch_size: int = 256
    examples: int = 8
    clip_range: list[float] | None = None
    gates: list[Gate] = field(default_factory=list)
    smoothing: dict[str, Any] | None = None
    detectors: list[dict[str, Any]] | None = None
    poisoning: bool | None = None
    privacy: dict[str, Any] | bool | None = None
    extraction: dict[str, Any] | bool | None = None
    profile: str | None = None
    acknowledge_masking: bool = False

    def __post_init__(self) -> None:
        self._validate()

    def _validate(self) -> None:
        from mlwarden.attacks import attack_names, get_attack

        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not isinstance(self.epsilons, list) or not self.epsilons:
            raise ConfigError(
                f"epsilons must be a non-empty list of numbers, got {self.epsilons!r}"
            )
        for eps in self.epsilons:
            if (
                isinstance(eps, bool)
                or not isinstance(eps, (int, float))
                or not math.isfinite(eps)
                or eps <= 0
            ):
                raise ConfigError(f"epsilons must be finite numbers > 0, got {eps!r}")
        self.epsilons = sorted({float(e) for e in self.epsilons})
        if self.norm not in ("linf", "l2"):
            raise ConfigError(f"norm must be linf or l2, got {self.norm!r}")
        if self.profile is not None:
            from mlwarden.assess.profiles import PROFILES

            if self.profile not in PROFILES:
                raise ConfigError(
                    f"profile must be one of {sorted(PROFILES)}, got {self.profile!r}"
                )
            if self.attacks is not None:
                raise ConfigError(
                    "give either profile (a suite run AutoAttack-style) or attacks (each run "
                    "on every sample), not both"
                )
        if not isinstance(self.acknowledge_masking, bool):
            raise ConfigError(
                f"acknowledge_masking must be true or false, got {self.acknowledge_masking!r}"
            )
        if self.attacks is not None:
            if not isinstance(self.attacks, list) or not self.attacks:
                raise ConfigError(f"attacks must be a non-empty list, got {self.attacks!r}")
            for name in self.attacks:
                get_attack(name)
        if not isinstance(self.attack_params, dict):
            raise ConfigError("attack_params must map attack names to parameter mappings")
        for name, params in self.attack_params.items():
            if name not in attack_names():
                raise ConfigError(
                    f"attack_params: unknown attack {name!r}; choose from {attack_names()}"
                )
            if not isinstance(params, dict):
                raise ConfigError(f"attack_params.{name} must be a mapping, got {params!r}")
            reserved = {"eps", "norm", "seed", "targeted"} & set(params)
            if reserved:
                raise ConfigError(
                    f"attack_params.{name}: {sorted(reserved)} are set by the assessment "
                    "(use epsilons, norm, seed at the top level)"
                )
            try:  # constructors only store their keywords: a misspelt one fails here, not mid-run
                get_attack(name)(eps=1.0, **params)
            except TypeError as exc:
                raise ConfigError(f"attack_params.{name}: {exc}") from None
        if self.max_samples is not None and (
            isinstance(self.max_samples, bool)
            or not isinstance(self.max_samples, int)
            or self.max_samples < 1
        ):
            raise ConfigError(
                f"max_samples must be a positive integer or null, got {self.max_samples!r}"
            )
        if (
            isinstance(self.batch_size, bool)
            or not isinstance(self.batch_size, int)
            or self.batch_size < 1
        ):
            raise ConfigError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if (
            isinstance(self.examples, bool)
            or not isinstance(self.examples, int)
            or self.examples < 0
        ):
            raise ConfigError(f"examples must be an integer >= 0, got {self.examples!r}")
        if self.clip_range is not None and (
            not isinstance(self.clip_range, list)
            or len(self.clip_range) != 2
            or not all(isinstance(v, (int, float)) for v in self.clip_range)
            or not self.clip_range[0] < self.clip_range[1]
        ):
            raise ConfigError(
                f"clip_range must be [low, high] with low < high, got {self.clip_range!r}"
            )

        if self.poisoning is not None and not isinstance(self.poisoning, bool):
            raise ConfigError(f"poisoning must be true or false, got {self.poisoning!r}")
        self.smoothing = _check_smoothing(self.smoothing)
        self.detectors = _check_detectors(self.detectors)
        for section in SECTION_CHECKS.names():
            setattr(self, section, SECTION_CHECKS.get(section)(getattr(self, section)))

    def with_gates(self, gates: list[Gate]) -> AssessConfig:
        """A copy with ``gates`` added; the ε of every gate joins the ε grid."""
        merged = {g.metric: g for g in [*self.gates, *gates]}
        for gate in merged.values():
            if gate.attack is not None:
                from mlwarden.attacks import get_attack

                get_attack(gate.attack)
        epsilons = sorted({*self.epsilons, *(g.eps for g in merged.values() if g.eps is not None)})
        values = {**asdict(self), "epsilons": epsilons, "gates": list(merged.values())}
        return AssessConfig(**values)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as recorded in the report."""
        values = asdict(self)
        values["gates"] = [
            {"metric": g.metric, "threshold": g.threshold, "source": g.source} for g in self.gates
        ]
        return values


SMOOTHING_DEFAULTS: dict[str, Any] = {
    "n0": 100,
    "n": 10_000,
    "alpha": 0.001,
    "max_samples": 100,
    "batch_size": 2048,
}
"""Certification settings used when ``smoothing`` gives only ``sigma`` (or none at all)."""


def _check_smoothing(value: Any) -> dict[str, Any] | None:
    """``smoothing: {sigma, n0, n, alpha, max_samples, batch_size}`` with defaults filled in.

    ``sigma`` may be left out (or null) to take it from the model's sidecar.
    """
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ConfigError(f"smoothing must be a mapping such as {{sigma: 0.25}}, got {value!r}")
    unknown = sorted(set(value) - {"sigma", *SMOOTHING_DEFAULTS})
    if unknown:
        raise ConfigError(
            f"smoothing: unknown setting(s) {unknown}; allowed: sigma, {', '.join(SMOOTHING_DEFAULTS)}"
        )
    merged = {"sigma": None, **SMOOTHING_DEFAULTS, **value}
    sigma, alpha = merged["sigma"], merged["alpha"]
    if sigma is not None and (
        isinstance(sigma, bool)
        or not isinstance(sigma, (int, float))
        or not (math.isfinite(sigma) and sigma > 0)
    ):
        raise ConfigError(f"smoothing.sigma must be a number > 0, got {sigma!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ConfigError(f"smoothing.alpha must be in (0, 1), got {alpha!r}")
    for key in ("n0", "n", "max_samples", "batch_size"):
        count = merged[key]
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ConfigError(f"smoothing.{key} must be a positive integer, got {count!r}")
    return {**merged, "sigma": None if sigma is None else float(sigma), "alpha": float(alpha)}


def _check_detectors(value: Any) -> list[dict[str, Any]] | None:
    """``detectors`` as a list of ``{name, params}``.

    Accepted forms: a list of names (``[feature-squeezing, mahalanobis]``), a mapping of name to
    parameters (``{feature-squeezing: {bit_depth: 3}}``), or a list of ``{name, params}``.
    """
    if value is None:
        return None
    from mlwarden.defenses.detectors import get_detector

    if isinstance(value, dict):
        items = [{"name": k, "params": v} for k, v in value.items()]
    elif isinstance(value, list) and value:
        items = [{"name": v, "params": {}} if isinstance(v, str) else v for v in value]
    else:
        raise ConfigError(f"detectors must be a non-empty list or mapping, got {value!r}")
    specs = []
    for item in items:
        if not isinstance(item, dict) or set(item) - {"name", "params"} or "name" not in item:
            raise ConfigError(f"detectors: each entry is a name or {{name, params}}, got {item!r}")
        name, params = str(item["name"]), item.get("params") or {}
        cls = get_detector(name)
        if not isinstance(params, dict):
            raise ConfigError(f"detectors.{name}: params must be a mapping, got {params!r}")
        try:  # constructors only store their keywords: a misspelt one fails here
            cls(None, **params)
        except TypeError as exc:
            raise ConfigError(f"detectors.{name}: {exc}") from None
        specs.append({"name": name, "params": dict(params)})
    names = [spec["name"] for spec in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"detectors: each detector may appear once, got {names}")
    return specs


_KEYS = {
    "seed",
    "epsilons",
    "norm",
    "attacks",
    "attack_params",
    "max_samples",
    "batch_size",
    "examples",
    "clip_range",
    "policy",
    "smoothing",
    "detectors",
    "poisoning",
    "privacy",
    "extraction",
    "profile",
    "acknowledge_masking",
}


def load_config(path: str | Path | None) -> AssessConfig:
    """Read and validate an assessment YAML file; ``None`` gives the defaults."""
    if path is None:
        return AssessConfig()
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {exc.problem or exc}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if raw is None:
        return AssessConfig()
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of settings")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {unknown}; allowed: {sorted(_KEYS)}")
    policy = raw.pop("policy", None) or {}
    if not isinstance(policy, dict) or set(policy) - {"fail_under"}:
        raise ConfigError(
            f"{path}: policy must be a mapping with fail_under: {{METRIC: THRESHOLD}}"
        )
    fail_under = policy.get("fail_under") or {}
    if not isinstance(fail_under, dict):
        raise ConfigError(f"{path}: policy.fail_under must map metrics to thresholds")
    gates = [
        _check_metric(str(m), t, f"{path.name}: policy.fail_under") for m, t in fail_under.items()
    ]
    try:
        config = AssessConfig(**raw)
    except TypeError as exc:  # wrong types that dataclass construction trips over
        raise ConfigError(f"{path}: {exc}") from None
    return config.with_gates(gates) if gates else config
