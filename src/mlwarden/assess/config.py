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
    memorization: {model: lm.pt, canaries: canaries.json}  # a text generator's canaries (optional)

A gate ``metric: threshold`` fails when the measured metric is below the threshold. Metrics are
``clean_accuracy`` and ``robust_accuracy@EPS`` (the worst accuracy over all attacks at ε=EPS);
``robust_accuracy[ATTACK]@EPS`` gates one attack; ``extraction_resistance@BUDGET`` (one minus the
fidelity a Knockoff surrogate reaches with BUDGET queries, see :mod:`mlwarden.assess.extraction`)
gates model theft; ``membership_resistance`` (one minus the largest membership advantage
TPR − FPR of the privacy section's attacks, see :mod:`mlwarden.assess.privacy`) gates
membership leakage; ``memorization_resistance`` (one minus the largest canary exposure over
``log2 |R|``, see :mod:`mlwarden.assess.memorization`) gates memorised secrets.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from mlwarden.errors import ConfigError
from mlwarden.registry import Registry

__all__ = [
    "SECTION_CHECKS",
    "SMOOTHING_DEFAULTS",
    "AssessConfig",
    "Gate",
    "load_config",
    "parse_gate",
]


SECTION_CHECKS: Registry[Callable[[Any], Any]] = Registry("assessment section")
"""Validators of the optional sections (``privacy``, ``extraction``) by field name.

Each check module registers its own validator when it is imported (the package imports them
all), so this module never imports the checks that import it.
"""
_METRIC = re.compile(
    r"^(?P<name>clean_accuracy|robust_accuracy)(\[(?P<attack>[a-z0-9_-]+)\])?(@(?P<eps>[0-9.eE+-]+))?$"
)
_EXTRACTION_METRIC = re.compile(r"^extraction_resistance@[1-9][0-9]*$")
_PRIVACY_METRIC = re.compile(r"^(membership|memorization)_resistance$")


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


class AssessConfig(BaseModel):
    """Validated assessment settings; see the module docstring for the YAML form.

    A pydantic model with strict types and no unknown keys: ``"false"`` is not a boolean and
    ``true`` is not a number, and one :class:`~mlwarden.errors.ConfigError` names the path of
    every bad value.
    """

    model_config = ConfigDict(extra="forbid", strict=True, arbitrary_types_allowed=True)

    seed: int = Field(default=0, ge=0)
    epsilons: list[float] = Field(default_factory=lambda: [0.02, 0.05, 0.1], min_length=1)
    norm: str = "linf"
    attacks: list[str] | None = Field(default=None, min_length=1)
    attack_params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    max_samples: int | None = Field(default=500, ge=1)
    batch_size: int = Field(default=256, ge=1)
    examples: int = Field(default=8, ge=0)
    clip_range: list[float] | None = Field(default=None, min_length=2, max_length=2)
    gates: list[Gate] = Field(default_factory=list)
    smoothing: dict[str, Any] | None = None
    detectors: Any = None
    poisoning: bool | None = None
    privacy: Any = None
    memorization: Any = None
    extraction: Any = None
    profile: str | None = None
    acknowledge_masking: bool = False

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigError(_describe(exc)) from None

    @field_validator("epsilons")
    @classmethod
    def _epsilons(cls, value: list[float]) -> list[float]:
        for eps in value:
            if not math.isfinite(eps) or eps <= 0:
                raise ValueError(f"epsilons must be finite numbers > 0, got {eps!r}")
        return sorted(set(value))

    @field_validator("norm")
    @classmethod
    def _norm(cls, value: str) -> str:
        if value not in ("linf", "l2"):
            raise ValueError(f"norm must be linf or l2, got {value!r}")
        return value

    @field_validator("profile")
    @classmethod
    def _profile(cls, value: str | None) -> str | None:
        from mlwarden.assess.profiles import PROFILES

        if value is not None and value not in PROFILES:
            raise ValueError(f"profile must be one of {sorted(PROFILES)}, got {value!r}")
        return value

    @field_validator("attacks")
    @classmethod
    def _attacks(cls, value: list[str] | None) -> list[str] | None:
        from mlwarden.attacks import get_attack

        for name in value or []:
            get_attack(name)  # a ConfigError naming the choices
        return value

    @field_validator("attack_params")
    @classmethod
    def _attack_params(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        from mlwarden.attacks import attack_names, get_attack

        for name, params in value.items():
            if name not in attack_names():
                raise ValueError(
                    f"attack_params: unknown attack {name!r}; choose from {attack_names()}"
                )
            reserved = {"eps", "norm", "seed", "targeted"} & set(params)
            if reserved:
                raise ValueError(
                    f"attack_params.{name}: {sorted(reserved)} are set by the assessment "
                    "(use epsilons, norm, seed at the top level)"
                )
            try:  # constructors only store their keywords: a misspelt one fails here, not mid-run
                get_attack(name)(eps=1.0, **params)
            except TypeError as exc:
                raise ValueError(f"attack_params.{name}: {exc}") from None
        return value

    @field_validator("clip_range")
    @classmethod
    def _clip_range(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and not value[0] < value[1]:
            raise ValueError(f"clip_range must be [low, high] with low < high, got {value!r}")
        return value

    @field_validator("smoothing", mode="before")
    @classmethod
    def _smoothing(cls, value: Any) -> Any:
        return _check_smoothing(value)

    @field_validator("detectors", mode="before")
    @classmethod
    def _detectors(cls, value: Any) -> Any:
        return _check_detectors(value)

    @model_validator(mode="after")
    def _sections(self) -> AssessConfig:
        if self.profile is not None and self.attacks is not None:
            raise ValueError(
                "give either profile (a suite run AutoAttack-style) or attacks (each run "
                "on every sample), not both"
            )
        for section in SECTION_CHECKS.names():
            setattr(self, section, SECTION_CHECKS.get(section)(getattr(self, section)))
        return self

    def updated(self, **values: Any) -> AssessConfig:
        """A validated copy with ``values`` replaced (command-line overrides)."""
        return AssessConfig(**{**dict(self), **values})

    def with_gates(self, gates: list[Gate]) -> AssessConfig:
        """A copy with ``gates`` added; the ε of every gate joins the ε grid."""
        from mlwarden.attacks import get_attack

        merged = {g.metric: g for g in [*self.gates, *gates]}
        for gate in merged.values():
            if gate.attack is not None:
                get_attack(gate.attack)
        epsilons = sorted({*self.epsilons, *(g.eps for g in merged.values() if g.eps is not None)})
        return self.updated(epsilons=epsilons, gates=list(merged.values()))

    def to_dict(self) -> dict[str, Any]:
        """The configuration as recorded in the report."""
        values = {key: copy.deepcopy(value) for key, value in dict(self).items()}
        values["gates"] = [
            {"metric": g.metric, "threshold": g.threshold, "source": g.source} for g in self.gates
        ]
        return values


def _describe(exc: ValidationError) -> str:
    """One line naming the path, the problem and the value of every invalid setting."""
    parts = []
    for error in exc.errors():
        path = ".".join(str(part) for part in error["loc"]) or "config"
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] in ("value_error", "assertion_error"):
            parts.append(
                message
                if message.startswith(f"{path}") and ":" in message.split(" ")[0]
                else f"{path}: {message}"
            )
        elif error["type"] == "extra_forbidden":
            parts.append(f"{path}: unknown setting")
        else:
            parts.append(f"{path}: {message} (got {error.get('input')!r})")
    return "; ".join(parts)


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


_KEYS = {*(name for name in AssessConfig.model_fields if name != "gates"), "policy"}
"""The settings a YAML file may give (``policy`` becomes ``gates``)."""


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
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return config.with_gates(gates) if gates else config
