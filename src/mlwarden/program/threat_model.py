"""A system's threat model: the YAML file a team fills in, validated by pydantic.

``mlwarden threat-model init SYSTEM`` writes :func:`template`; the team describes the system's
assets, its data and how sensitive it is, who and what has access, how it is exposed, where its
training data comes from and how bad a compromise would be. :mod:`mlwarden.program.risk` derives
the applicable ATLAS techniques, scores them and ranks the controls from it.

The file is strict: unknown keys are errors (a misspelt ``exposure`` must not silently fall back
to a default), and types are not coerced (``"yes"`` is not a boolean).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mlwarden._io import atomic_write_text
from mlwarden.assess.config import parse_gate
from mlwarden.assess.profiles import PROFILES
from mlwarden.errors import ConfigError

__all__ = [
    "IMPACT_LEVELS",
    "SCHEMA",
    "SENSITIVITY_LEVELS",
    "AccessEntry",
    "AssessmentPlan",
    "DataAsset",
    "Deployment",
    "Impact",
    "ModelAsset",
    "ThreatModel",
    "TrainingSource",
    "load_threat_model",
    "template",
    "threat_model_from_dict",
    "write_template",
]

SCHEMA = "mlwarden.threat-model/1"
#: Impact levels, mildest first; their score is the position plus one (1-5).
IMPACT_LEVELS: tuple[str, ...] = ("negligible", "low", "moderate", "high", "severe")
#: Data sensitivity, least sensitive first.
SENSITIVITY_LEVELS: tuple[str, ...] = ("public", "internal", "confidential", "restricted")

_STRICT = ConfigDict(extra="forbid", strict=True, frozen=True)
_Name = Annotated[str, Field(min_length=1, max_length=128)]
#: System names become file names in reports: letters, digits, ``.``, ``_`` and ``-``.
SystemName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
ImpactLevel = Literal["negligible", "low", "moderate", "high", "severe"]
Sensitivity = Literal["public", "internal", "confidential", "restricted"]
Exposure = Literal["public-api", "partner", "internal", "offline"]


class ModelAsset(BaseModel):
    """A model of the system; ``path`` (relative to the threat model) lets evidence be found.

    With ``public_key`` (a PEM file, relative to the threat model) the model's signature counts
    as evidence only when it verifies with that key.
    """

    model_config = _STRICT
    name: _Name
    path: str | None = None
    provenance: Literal["in-house", "fine-tuned", "third-party"] = "in-house"
    public_key: str | None = None


class DataAsset(BaseModel):
    """A dataset the system is trained on or serves from, and how sensitive it is."""

    model_config = _STRICT
    name: _Name
    sensitivity: Sensitivity
    personal_data: bool = False
    used_for: Literal["training", "evaluation", "inference"] = "training"


class AccessEntry(BaseModel):
    """Who or what reaches the system, and how far."""

    model_config = _STRICT
    who: _Name
    kind: Literal["public", "customer", "partner", "employee", "service"]
    access: Literal["query", "weights", "training-data", "admin"] = "query"


class TrainingSource(BaseModel):
    """Where training data comes from; user-contributed and scraped data can be poisoned."""

    model_config = _STRICT
    name: _Name
    origin: Literal["user-contributed", "scraped", "third-party", "internal", "synthetic"]


class Deployment(BaseModel):
    """How the model is served: what callers see, and the gateway config that serves it."""

    model_config = _STRICT
    outputs: Literal["probabilities", "top_k", "label"] = "probabilities"
    gateway_config: str | None = None


class Impact(BaseModel):
    """How bad a compromise would be, per consequence."""

    model_config = _STRICT
    integrity: ImpactLevel = Field(description="wrong decisions (evasion, poisoning, backdoors)")
    privacy: ImpactLevel = Field(description="training data disclosed (membership, inversion)")
    intellectual_property: ImpactLevel = Field(description="the model stolen (extraction)")
    availability: ImpactLevel = Field(description="the service degraded or its cost run up")


class AssessmentPlan(BaseModel):
    """How ``mlwarden program run`` assesses the system (paths relative to the threat model).

    It is the ``mlwarden assess`` command line of the system, kept with its threat model so a
    sweep over the inventory can run it on any machine of a cluster.
    """

    model_config = _STRICT
    model: _Name = Field(description="model file, or zoo:NAME")
    data: _Name = Field(description="evaluation data: builtin:NAME, .npz or .csv")
    train_data: _Name | None = Field(None, description="training data: detectors, poisoning")
    config: str | None = Field(None, description="assessment YAML")
    profile: str | None = None
    max_samples: Annotated[int, Field(ge=1)] | None = None
    seed: Annotated[int, Field(ge=0)] | None = None
    fail_under: dict[str, float] = Field(default_factory=dict, description="METRIC: THRESHOLD")
    public_key: str | None = Field(None, description="refuse the model unless this key signed it")

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, value: str | None) -> str | None:
        if value is not None and value not in PROFILES:
            raise ValueError(f"profile must be one of {sorted(PROFILES)}")
        return value

    @field_validator("fail_under")
    @classmethod
    def _gates(cls, value: dict[str, float]) -> dict[str, float]:
        for metric, threshold in value.items():
            parse_gate(f"{metric}={threshold}")  # the same rules as --fail-under
        return value


class ThreatModel(BaseModel):
    """One system's threat model (``mlwarden.threat-model/1``)."""

    model_config = _STRICT
    schema_: Literal["mlwarden.threat-model/1"] = Field("mlwarden.threat-model/1", alias="schema")
    system: SystemName
    description: str = ""
    owner: _Name
    cadence_months: Annotated[int, Field(ge=1, le=60)] = 12
    exposure: Exposure
    models: list[ModelAsset] = Field(min_length=1)
    data: list[DataAsset] = []
    access: list[AccessEntry] = []
    training_data: list[TrainingSource] = []
    deployment: Deployment = Deployment()
    impact: Impact
    policies: list[str] = []
    assessment: AssessmentPlan | None = None

    def to_yaml(self) -> str:
        """The model as YAML, keys in schema order."""
        return yaml.safe_dump(
            self.model_dump(mode="json", by_alias=True), sort_keys=False, allow_unicode=True
        )


def _describe(error: Any) -> str:
    path = ".".join(str(p) for p in error["loc"]) or "threat model"
    if error["type"] == "extra_forbidden":
        return f"{path}: unknown key; remove it or fix its spelling"
    if error["type"] == "missing":
        return f"{path}: required"
    given = error.get("input")
    return f"{path}: {error['msg']} (got {given!r})"


def threat_model_from_dict(data: Any, *, source: str = "threat model") -> ThreatModel:
    """Validate a parsed threat model.

    Raises
    ------
    ConfigError
        One error listing every missing, unknown or invalid value by its path.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: must be a YAML mapping (got {type(data).__name__})")
    try:
        return ThreatModel.model_validate(data)
    except ValidationError as exc:
        lines = [_describe(e) for e in exc.errors()]
        raise ConfigError(
            f"{source}: {len(lines)} invalid value(s):\n  " + "\n  ".join(lines)
        ) from None


def load_threat_model(path: str | Path) -> ThreatModel:
    """Read and validate a threat-model YAML file.

    Raises
    ------
    ConfigError
        The file cannot be read, is not YAML, or holds an invalid value.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"threat model {str(file)!r} cannot be read ({exc.strerror})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"threat model {str(file)!r} is not valid YAML: {exc}") from exc
    return threat_model_from_dict(data, source=f"threat model {str(file)!r}")


_TEMPLATE = """\
# Threat model of {system}: fill it in, then `mlwarden threat-model check` and
# `mlwarden threat-model show` (derived ATLAS threats, risk scores and the control plan).
schema: {schema}
system: {system}
description: ""
owner: {owner}                  # team or person accountable for the system's risk
cadence_months: 12              # how often the system must be assessed
# public-api | partner | internal | offline
exposure: internal
models:                         # path: relative to this file; finds signatures, DP records
  - name: {system}-model
    path: null
    provenance: in-house        # in-house | fine-tuned | third-party
    public_key: null            # PEM key its signature must verify with (`mlwarden keygen`)
data:
  - name: training-data
    sensitivity: internal       # public | internal | confidential | restricted
    personal_data: false
    used_for: training          # training | evaluation | inference
access:                         # kind: public | customer | partner | employee | service
  - who: application backend    # access: query | weights | training-data | admin
    kind: service
    access: query
training_data:                  # origin: user-contributed | scraped | third-party | internal | synthetic
  - name: training-data
    origin: internal
deployment:
  outputs: probabilities        # probabilities | top_k | label: what callers see
  gateway_config: null          # the `mlwarden serve` config that serves the model
impact:                         # negligible | low | moderate | high | severe
  integrity: moderate           # wrong decisions (evasion, poisoning, backdoors)
  privacy: low                  # training data disclosed (membership, inversion)
  intellectual_property: low    # the model stolen (extraction)
  availability: low             # the service degraded or its cost run up
policies: []                    # policies the system is held to (names or links)
# How `mlwarden program run` assesses the system (paths relative to this file), e.g.
# assessment:
#   model: model.pt2              # or zoo:NAME
#   data: holdout.npz             # or builtin:NAME
#   train_data: train.npz         # optional: detectors and the poisoning inspection
#   profile: full                 # standard | quick | full
#   seed: 0
#   fail_under: {{robust_accuracy@0.05: 0.6}}
assessment: null
"""


def template(system: str, *, owner: str = "unassigned") -> str:
    """The commented threat-model YAML ``threat-model init`` writes (it validates as is)."""
    text = _TEMPLATE.format(system=system, owner=owner, schema=SCHEMA)
    threat_model_from_dict(yaml.safe_load(text), source=f"template for {system!r}")
    return text


def write_template(path: str | Path, system: str, *, owner: str = "unassigned") -> Path:
    """Write :func:`template` to ``path`` atomically.

    Raises
    ------
    ConfigError
        ``path`` already exists (a filled-in threat model is never overwritten).
    """
    target = Path(path)
    if target.exists():
        raise ConfigError(f"{target} already exists; edit it, or pass another --out")
    return atomic_write_text(target, template(system, owner=owner))
