"""The gateway's configuration: models, roles, limits, storage URIs, read from YAML.

Everything the gateway enforces is declared here, and nothing is granted that the file does not
grant (least privilege): a role without grants can do nothing, a model not listed does not exist.
:func:`load_gateway_config` validates the whole file up front, so a typo is a
:class:`~mlwarden.errors.ConfigError` naming the bad value, never a silently open door.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from limits import parse
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from mlwarden.errors import ConfigError
from mlwarden.models.output_policy import OUTPUT_MODES, OutputPolicy
from mlwarden.serve.db import check_table_prefix
from mlwarden.serve.restriction import LADDER

__all__ = [
    "ACTIONS",
    "ALL_CLASSES",
    "MODEL_NAME_PATTERN",
    "OUTPUT_MODES",
    "AuditConfig",
    "DetectorConfig",
    "GatewayConfig",
    "Grant",
    "ModelConfig",
    "MonitorSettings",
    "OutputPolicy",
    "RateLimitConfig",
    "RoleConfig",
    "gateway_config_from_dict",
    "load_gateway_config",
]

#: What a role may be granted on a model.
ACTIONS = ("predict", "explain", "admin", "metrics")
#: Model names: a letter or digit first, then letters, digits, ``.``, ``_``, ``-`` (no ``..``,
#: no ``/``, no NUL): a name is only ever a dictionary key, never part of a file path.
MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}(?:\.[A-Za-z0-9_-]{1,62}){0,3}$")
_ROLE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_GLOB_PATTERN = re.compile(r"^[A-Za-z0-9_.*?-]{1,64}$")
#: ``per_alert`` (each alert's own action) or one rung of the restriction ladder for every alert.
_MONITOR_ACTIONS = ("per_alert", *LADDER)
#: ``top_k`` of a policy that does not limit the classes shown (``probabilities`` mode, or a
#: role that sets no ``top_k``): larger than any model's class count.
ALL_CLASSES = 2**31 - 1


@dataclass(frozen=True)
class DetectorConfig:
    """A fitted detector (saved with ``Detector.save``) run on every input of a model."""

    path: Path
    action: str = "flag"  # "flag": alert only; "reject": 422

    def __post_init__(self) -> None:
        if self.action not in ("flag", "reject"):
            raise ConfigError(f"detector action {self.action!r} must be 'flag' or 'reject'")


@dataclass(frozen=True)
class ModelConfig:
    """One served model."""

    name: str
    source: str
    public_key: Path | None = None
    output: OutputPolicy = field(default_factory=OutputPolicy)
    max_batch: int = 64
    detectors: tuple[DetectorConfig, ...] = ()


@dataclass(frozen=True)
class Grant:
    """Actions a role may take on the models whose names match one of ``models`` (globs)."""

    models: tuple[str, ...]
    actions: tuple[str, ...]
    output: OutputPolicy | None = None


@dataclass(frozen=True)
class RoleConfig:
    """A named role and its grants."""

    name: str
    grants: tuple[Grant, ...] = ()


@dataclass(frozen=True)
class RateLimitConfig:
    """Per key, per model rate limits and a daily quota, kept in a ``limits`` storage.

    Parameters
    ----------
    storage
        A ``limits`` storage URI: ``memory://`` (one process) or ``redis://host:port`` (shared
        by every replica; counters are incremented atomically in Redis).
    strategy
        ``moving-window`` or ``fixed-window`` for the per second/minute limits.
    per_key_model
        Rate limits in ``limits`` notation, each applied per (key, model): ``"20/second"``.
    daily_quota
        Queries a key may make on a model per day (a fixed window of one day from the first
        query). 0 disables the quota.
    throttle
        The limit applied on top when the extraction monitor throttles a key.
    key_prefix
        Namespace of the counters in the storage (lets tests and deployments share a Redis).
    quota_lease_s
        How long a quota reservation of a request whose audit entry was never committed (the
        process was killed) holds its queries before they return to the key (10-3600 s).
    """

    storage: str = "memory://"
    strategy: str = "moving-window"
    per_key_model: tuple[str, ...] = ("50/second",)
    daily_quota: int = 1000
    throttle: str = "1/second"
    key_prefix: str = "mlwarden"
    quota_lease_s: int = 120


@dataclass(frozen=True)
class AuditConfig:
    """Where and how the hash-chained audit log is written.

    ``synchronous`` applies to SQLite: ``normal`` (WAL; a committed entry survives the process
    being killed, not a power cut) or ``full`` (also survives a power cut, slower). ``mode`` is
    ``auto`` (inline commits on SQLite, group commit on PostgreSQL), ``inline`` or ``group``;
    ``batch_max`` bounds a group commit.
    """

    synchronous: str = "normal"
    batch_max: int = 256
    mode: str = "auto"


@dataclass(frozen=True)
class MonitorSettings:
    """Extraction monitoring: the monitor's own options and what the gateway does on an alert.

    Parameters
    ----------
    enabled
        Run the monitor (when :mod:`mlwarden.serve.monitor` is available).
    action
        ``per_alert`` (default: each alert's own action, set per kind in ``options.actions``),
        or ``none``, ``throttle``, ``label_only``, ``block`` for every alert. Applied to the key
        in the key store, so it holds on every replica from their next request.
    options
        The monitor's settings (:class:`mlwarden.serve.monitor.MonitorConfig`).
    reference
        A dataset spec (``builtin:digits:train``, a ``.npz``) of the data the model serves; enables
        the monitor's out-of-distribution statistic.
    webhook_url
        Alerts are POSTed here as JSON (best effort, in the background).
    expose_alerts
        Return alerts in the response body (useful in tests; hides nothing from an attacker who
        is already being throttled, but a cautious deployment turns it off).
    """

    enabled: bool = False
    action: str = "per_alert"
    options: dict[str, Any] = field(default_factory=dict)
    reference: str | None = None
    webhook_url: str | None = None
    expose_alerts: bool = True

    def __post_init__(self) -> None:
        if self.action not in _MONITOR_ACTIONS:
            raise ConfigError(
                f"monitor.action {self.action!r} is not one of {', '.join(_MONITOR_ACTIONS)}"
            )


@dataclass(frozen=True)
class GatewayConfig:
    """Everything :func:`mlwarden.serve.app.create_app` needs.

    Parameters
    ----------
    database
        SQLAlchemy URI of the key store and the audit log: ``sqlite:///gateway.db`` or
        ``postgresql://user@host/db`` (shared by replicas).
    table_prefix
        Prefix of the gateway's table names (several gateways or tests can share a database).
    max_body_bytes
        Largest request body accepted (413 beyond), checked while reading, before parsing.
    metrics_public
        Serve ``/metrics`` without a key (only behind a private bind); by default it needs a
        key whose role grants ``metrics``.
    scan_models
        Scan every model file before loading it (refuse medium findings and worse).
    trusted_proxies
        Addresses or networks (``10.0.0.0/8``) of reverse proxies whose ``X-Forwarded-For`` is
        believed; empty by default, so the audit log's client address is the TCP peer.
    docs
        Serve ``/docs`` and ``/openapi.json``. Off by default: Swagger UI loads its script from a
        CDN (not offline) and the OpenAPI document lists every model name.
    """

    models: dict[str, ModelConfig]
    roles: dict[str, RoleConfig]
    database: str = "sqlite:///mlwarden-gateway.db"
    table_prefix: str = "mlw_"
    rate_limits: RateLimitConfig = field(default_factory=RateLimitConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    monitor: MonitorSettings = field(default_factory=MonitorSettings)
    max_body_bytes: int = 1_048_576
    metrics_public: bool = False
    scan_models: bool = True
    trusted_proxies: tuple[str, ...] = ()
    docs: bool = False


# -- the file's schema ------------------------------------------------------------------------
# pydantic models of gateway.yaml as written: unknown keys are errors (extra="forbid"), types are
# strict (``"false"`` is not a boolean, ``"5"`` is not a number, ``true`` is not 1), and every bad
# value is reported at once, by its path. :func:`gateway_config_from_dict` turns a validated file
# into the frozen dataclasses above (paths resolved against the file's folder).

_STRICT = ConfigDict(extra="forbid", strict=True, frozen=True)
_PositiveInt = Annotated[int, Field(ge=1)]
_NonNegativeInt = Annotated[int, Field(ge=0)]


def _check_limit_text(text: str) -> str:
    try:
        parse(text)
    except ValueError:
        raise ValueError(
            f"rate limit {text!r} is not in limits notation (e.g. 20/second)"
        ) from None
    return text


_LimitText = Annotated[str, AfterValidator(_check_limit_text)]


class _OutputFile(BaseModel):
    """An ``output:`` block; fields left out do not tighten anything (see :func:`_loosest`)."""

    model_config = _STRICT
    mode: Literal["probabilities", "top_k", "label"] | None = None
    decimals: Annotated[int, Field(ge=0, le=8)] | None = None
    top_k: _PositiveInt | None = None


class _DetectorFile(BaseModel):
    model_config = _STRICT
    path: str
    action: Literal["flag", "reject"] = "flag"


class _ModelFile(BaseModel):
    model_config = _STRICT
    source: Annotated[str, Field(min_length=1)]
    public_key: str | None = None
    output: _OutputFile = _OutputFile()
    max_batch: _PositiveInt = 64
    detectors: list[_DetectorFile] = []


def _check_glob(pattern: str) -> str:
    if not _GLOB_PATTERN.fullmatch(pattern):
        raise ValueError(f"{pattern!r} is not a model name or glob")
    return pattern


class _GrantFile(BaseModel):
    model_config = _STRICT
    models: list[Annotated[str, AfterValidator(_check_glob)]]
    actions: list[Literal["predict", "explain", "admin", "metrics"]]
    output: _OutputFile | None = None


class _RoleFile(BaseModel):
    model_config = _STRICT
    grants: list[_GrantFile] = []


class _RateLimitsFile(BaseModel):
    model_config = _STRICT
    storage: str = "memory://"
    strategy: Literal["moving-window", "fixed-window"] = "moving-window"
    per_key_model: list[_LimitText] = ["50/second"]
    daily_quota: _NonNegativeInt = 1000
    throttle: _LimitText = "1/second"
    key_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")] = "mlwarden"
    quota_lease_s: Annotated[int, Field(ge=10, le=3600)] = 120


class _AuditFile(BaseModel):
    model_config = _STRICT
    synchronous: Literal["normal", "full"] = "normal"
    batch_max: _PositiveInt = 256
    mode: Literal["auto", "inline", "group"] = "auto"


class _MonitorFile(BaseModel):
    model_config = _STRICT
    enabled: bool = False
    action: Literal["per_alert", "none", "throttle", "label_only", "block"] = "per_alert"
    options: dict[str, Any] = {}
    reference: str | None = None
    webhook_url: Annotated[str, Field(pattern=r"^https?://[^\s/?#]+(/[^\s]*)?$")] | None = None
    expose_alerts: bool = True

    @field_validator("options")
    @classmethod
    def _options_valid(cls, value: dict[str, Any]) -> dict[str, Any]:
        from mlwarden.serve.monitor import MonitorConfig  # scipy is only paid for when used

        try:
            MonitorConfig.from_dict(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return value


def _check_model_name(name: str) -> str:
    if not MODEL_NAME_PATTERN.fullmatch(name):
        raise ValueError(
            f"model name {name!r} is not allowed; use letters, digits, '_', '-' and single dots"
        )
    return name


def _check_role_name(name: str) -> str:
    if not _ROLE_PATTERN.fullmatch(name):
        raise ValueError(f"role name {name!r} is not allowed (letters, digits, '_', '.', '-')")
    return name


def _source_shorthand(value: Any) -> Any:
    """``name: zoo:digits-cnn`` is short for ``name: {source: zoo:digits-cnn}``."""
    return {"source": value} if isinstance(value, str) else value


def _grants_shorthand(value: Any) -> Any:
    """``role: [grant, ...]`` is short for ``role: {grants: [grant, ...]}``."""
    return {"grants": value} if isinstance(value, list) else value


def _check_prefix(prefix: str) -> str:
    try:
        check_table_prefix(prefix)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    return prefix


def _check_network(text: str) -> str:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(
            f"{text!r} is not an IP address or network (e.g. 10.0.0.5 or 10.0.0.0/8)"
        ) from None
    return text


class _GatewayFile(BaseModel):
    model_config = _STRICT
    models: dict[
        Annotated[str, AfterValidator(_check_model_name)],
        Annotated[_ModelFile, BeforeValidator(_source_shorthand)],
    ]
    roles: dict[
        Annotated[str, AfterValidator(_check_role_name)],
        Annotated[_RoleFile, BeforeValidator(_grants_shorthand)],
    ] = {}
    database: str = "sqlite:///mlwarden-gateway.db"
    table_prefix: Annotated[str, AfterValidator(_check_prefix)] = "mlw_"
    rate_limits: _RateLimitsFile = _RateLimitsFile()
    audit: _AuditFile = _AuditFile()
    monitor: _MonitorFile = _MonitorFile()
    max_body_bytes: _PositiveInt = 1_048_576
    metrics_public: bool = False
    scan_models: bool = True
    trusted_proxies: list[Annotated[str, AfterValidator(_check_network)]] = []
    docs: bool = False

    @field_validator("models")
    @classmethod
    def _some_model(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not value:
            raise ValueError("the gateway needs at least one model (name: zoo:digits-cnn)")
        return value


_SCHEMA_ERRORS = {
    "extra_forbidden": "unknown key; remove it or fix its spelling",
    "missing": "required",
    "bool_type": "must be true or false (a YAML boolean, not a string or a number)",
    "int_type": "must be an integer (not a string, a float or a boolean)",
    "float_type": "must be a number (not a string or a boolean)",
    "string_type": "must be a string",
    "dict_type": "must be a mapping",
    "list_type": "must be a list",
    "model_type": "must be a mapping",
    "string_pattern_mismatch": "has the wrong form",
}


def _describe(error: Any) -> str:
    """One line per bad value: ``models.digits.max_batch: must be an integer (got '5')``."""
    path = ""
    for part in error["loc"]:
        if part == "[key]":  # pydantic's marker for an error in a mapping's key
            continue
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    kind, given = error["type"], error.get("input")
    if kind == "literal_error":
        expected = str(error.get("ctx", {}).get("expected", "")).replace("'", "")
        message = f"{given!r} is not one of {expected}"
    elif kind == "value_error":
        message = str(error["msg"]).removeprefix("Value error, ")
    elif path == "monitor.webhook_url" and kind == "string_pattern_mismatch":
        message = "must be an http:// or https:// URL"
    else:
        message = _SCHEMA_ERRORS.get(kind, str(error["msg"]))
    if kind in ("missing", "extra_forbidden") or repr(given) in message:
        return f"{path or 'gateway config'}: {message}"
    return f"{path or 'gateway config'}: {message} (got {given!r})"


def _loosest(output: _OutputFile | None) -> OutputPolicy | None:
    """A role's ``output`` block as a policy where every field left out is the loosest value.

    ``decimals`` left out keeps full precision and ``top_k`` left out shows every class, so a
    role that only sets ``mode: top_k, top_k: 3`` does not also impose the default 2 decimals,
    and combining it with a model's policy (:meth:`OutputPolicy.stricter`) keeps the model's.
    """
    if output is None:
        return None
    mode = output.mode or "probabilities"
    top_k = output.top_k if output.top_k is not None else (1 if mode == "top_k" else ALL_CLASSES)
    return OutputPolicy(mode=mode, decimals=output.decimals, top_k=top_k)


def _model_policy(output: _OutputFile) -> OutputPolicy:
    """A model's ``output`` block: defaults ``probabilities`` with 2 decimals (top_k: 1)."""
    mode = output.mode or "probabilities"
    top_k = output.top_k if output.top_k is not None else (1 if mode == "top_k" else ALL_CLASSES)
    decimals = 2 if "decimals" not in output.model_fields_set else output.decimals
    return OutputPolicy(mode=mode, decimals=decimals, top_k=top_k)


def _resolve(path: str, base: Path) -> Path:
    return Path(path) if Path(path).is_absolute() else base / path


def gateway_config_from_dict(
    data: dict[str, Any], *, base_dir: Path | None = None
) -> GatewayConfig:
    """Build and validate a :class:`GatewayConfig` from a parsed YAML/JSON mapping.

    Relative model, key and detector paths are resolved against ``base_dir`` (the config file's
    folder), and so is a relative ``sqlite:///`` path. Types are strict: ``"false"`` is not a
    boolean and ``"5"`` is not a number.

    Raises
    ------
    ConfigError
        One error listing, by path, every value that is missing, unknown, of the wrong type, or
        not one of the allowed choices.
    """
    base = base_dir or Path.cwd()
    try:
        parsed = _GatewayFile.model_validate(data)
    except ValidationError as exc:
        lines = [_describe(error) for error in exc.errors()]
        raise ConfigError(
            f"gateway config: {len(lines)} invalid value(s):\n  " + "\n  ".join(lines)
        ) from None

    models: dict[str, ModelConfig] = {}
    for name, raw in parsed.models.items():
        spec = raw
        source = spec.source
        if not source.startswith("zoo:") and not Path(source).is_absolute():
            source = str(base / source)
        models[name] = ModelConfig(
            name=name,
            source=source,
            public_key=None if spec.public_key is None else _resolve(spec.public_key, base),
            output=_model_policy(spec.output),
            max_batch=spec.max_batch,
            detectors=tuple(
                DetectorConfig(path=_resolve(d.path, base), action=d.action) for d in spec.detectors
            ),
        )
    roles: dict[str, RoleConfig] = {}
    for name, raw_role in parsed.roles.items():
        grants = raw_role.grants
        roles[name] = RoleConfig(
            name=name,
            grants=tuple(
                Grant(models=tuple(g.models), actions=tuple(g.actions), output=_loosest(g.output))
                for g in grants
            ),
        )
    rl = parsed.rate_limits
    rate_limits = RateLimitConfig(
        storage=rl.storage,
        strategy=rl.strategy,
        per_key_model=tuple(rl.per_key_model),
        daily_quota=rl.daily_quota,
        throttle=rl.throttle,
        key_prefix=rl.key_prefix,
        quota_lease_s=rl.quota_lease_s,
    )
    audit = AuditConfig(
        synchronous=parsed.audit.synchronous,
        batch_max=parsed.audit.batch_max,
        mode=parsed.audit.mode,
    )
    mo = parsed.monitor
    monitor = MonitorSettings(
        enabled=mo.enabled,
        action=mo.action,
        options=dict(mo.options),
        reference=mo.reference,
        webhook_url=mo.webhook_url,
        expose_alerts=mo.expose_alerts,
    )
    database = parsed.database
    if database.startswith("sqlite:///") and not database.startswith("sqlite:////"):
        rel = database[len("sqlite:///") :]
        if rel and rel != ":memory:":
            database = "sqlite:///" + str((base / rel).resolve())
    return GatewayConfig(
        models=models,
        roles=roles,
        database=database,
        table_prefix=parsed.table_prefix,
        rate_limits=rate_limits,
        audit=audit,
        monitor=monitor,
        max_body_bytes=parsed.max_body_bytes,
        metrics_public=parsed.metrics_public,
        scan_models=parsed.scan_models,
        trusted_proxies=tuple(parsed.trusted_proxies),
        docs=parsed.docs,
    )


def load_gateway_config(path: str | Path) -> GatewayConfig:
    """Read and validate a ``gateway.yaml``.

    Raises
    ------
    ConfigError
        The file is missing, is not YAML, or holds an invalid value.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"gateway config {str(file)!r} cannot be read ({exc.strerror})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"gateway config {str(file)!r} is not valid YAML: {exc}") from exc
    return gateway_config_from_dict(data or {}, base_dir=file.resolve().parent)
