"""The gateway's configuration: models, roles, limits, storage URIs, read from YAML.

Everything the gateway enforces is declared here, and nothing is granted that the file does not
grant (least privilege): a role without grants can do nothing, a model not listed does not exist.
:func:`load_gateway_config` validates the whole file up front, so a typo is a
:class:`~mlwarden.errors.ConfigError` naming the bad value, never a silently open door.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlwarden.errors import ConfigError
from mlwarden.models.output_policy import OUTPUT_MODES, OutputPolicy
from mlwarden.serve.db import check_table_prefix
from mlwarden.serve.restriction import LADDER

__all__ = [
    "ACTIONS",
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
    """

    storage: str = "memory://"
    strategy: str = "moving-window"
    per_key_model: tuple[str, ...] = ("50/second",)
    daily_quota: int = 1000
    throttle: str = "1/second"
    key_prefix: str = "mlwarden"


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


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(value).__name__}")
    return value


def _known(data: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; allowed: "
            f"{', '.join(sorted(allowed))}"
        )


def _str_list(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where} must be a list of strings, got {value!r}")
    return tuple(value)


def _output(value: Any, where: str) -> OutputPolicy:
    data = _mapping(value, where)
    _known(data, {"mode", "decimals", "top_k"}, where)
    decimals = data.get("decimals", 2)
    if isinstance(decimals, bool) or not isinstance(decimals, int) or not 0 <= decimals <= 8:
        raise ConfigError(f"{where}.decimals must be an integer in [0, 8], got {decimals!r}")
    return OutputPolicy(**data)


def _positive_int(value: Any, where: str, *, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if allow_zero else 1):
        raise ConfigError(
            f"{where} must be a {'non-negative' if allow_zero else 'positive'} integer, got {value!r}"
        )
    return value


def _model(name: str, raw: Any, base: Path) -> ModelConfig:
    where = f"models.{name}"
    if not isinstance(name, str) or not MODEL_NAME_PATTERN.fullmatch(name):
        raise ConfigError(
            f"model name {name!r} is not allowed; use letters, digits, '_', '-' and single dots"
        )
    if isinstance(raw, str):
        raw = {"source": raw}
    data = _mapping(raw, where)
    _known(data, {"source", "public_key", "output", "max_batch", "detectors"}, where)
    source = data.get("source")
    if not isinstance(source, str) or not source:
        raise ConfigError(f"{where}.source must be a model path or zoo:NAME")
    if not source.startswith("zoo:") and not Path(source).is_absolute():
        source = str(base / source)
    public_key = data.get("public_key")
    key_path = None
    if public_key is not None:
        key_path = Path(public_key) if Path(public_key).is_absolute() else base / public_key
    detectors = []
    for i, det in enumerate(data.get("detectors") or []):
        det_data = _mapping(det, f"{where}.detectors[{i}]")
        _known(det_data, {"path", "action"}, f"{where}.detectors[{i}]")
        if "path" not in det_data:
            raise ConfigError(f"{where}.detectors[{i}].path is required")
        det_path = Path(det_data["path"])
        detectors.append(
            DetectorConfig(
                path=det_path if det_path.is_absolute() else base / det_path,
                action=det_data.get("action", "flag"),
            )
        )
    return ModelConfig(
        name=name,
        source=source,
        public_key=key_path,
        output=_output(data.get("output"), f"{where}.output"),
        max_batch=_positive_int(data.get("max_batch", 64), f"{where}.max_batch"),
        detectors=tuple(detectors),
    )


def _role(name: str, raw: Any) -> RoleConfig:
    where = f"roles.{name}"
    if not isinstance(name, str) or not _ROLE_PATTERN.fullmatch(name):
        raise ConfigError(f"role name {name!r} is not allowed (letters, digits, '_', '.', '-')")
    if isinstance(raw, list):
        raw = {"grants": raw}
    data = _mapping(raw, where)
    _known(data, {"grants"}, where)
    grants = []
    for i, grant in enumerate(data.get("grants") or []):
        gw = f"{where}.grants[{i}]"
        g = _mapping(grant, gw)
        _known(g, {"models", "actions", "output"}, gw)
        models = _str_list(g.get("models", []), f"{gw}.models")
        for pattern in models:
            if not _GLOB_PATTERN.fullmatch(pattern):
                raise ConfigError(f"{gw}.models: {pattern!r} is not a model name or glob")
        actions = _str_list(g.get("actions", []), f"{gw}.actions")
        for action in actions:
            if action not in ACTIONS:
                raise ConfigError(f"{gw}.actions: {action!r} is not one of {', '.join(ACTIONS)}")
        output = _output(g["output"], f"{gw}.output") if g.get("output") is not None else None
        grants.append(Grant(models=models, actions=actions, output=output))
    return RoleConfig(name=name, grants=tuple(grants))


def gateway_config_from_dict(
    data: dict[str, Any], *, base_dir: Path | None = None
) -> GatewayConfig:
    """Build and validate a :class:`GatewayConfig` from a parsed YAML/JSON mapping.

    Relative model, key and detector paths are resolved against ``base_dir`` (the config file's
    folder), and so is a relative ``sqlite:///`` path.

    Raises
    ------
    ConfigError
        Any value is missing, of the wrong type, or not one of the allowed choices.
    """
    base = base_dir or Path.cwd()
    data = _mapping(data, "gateway config")
    _known(
        data,
        {
            "models",
            "roles",
            "database",
            "table_prefix",
            "rate_limits",
            "audit",
            "monitor",
            "max_body_bytes",
            "metrics_public",
            "scan_models",
        },
        "gateway config",
    )
    models_raw = _mapping(data.get("models"), "models")
    if not models_raw:
        raise ConfigError("models: the gateway needs at least one model (name: zoo:digits-cnn)")
    models = {name: _model(name, raw, base) for name, raw in models_raw.items()}
    roles = {name: _role(name, raw) for name, raw in _mapping(data.get("roles"), "roles").items()}

    rl = _mapping(data.get("rate_limits"), "rate_limits")
    _known(
        rl,
        {"storage", "strategy", "per_key_model", "daily_quota", "throttle", "key_prefix"},
        "rate_limits",
    )
    rate_limits = RateLimitConfig(
        storage=str(rl.get("storage", "memory://")),
        strategy=str(rl.get("strategy", "moving-window")),
        per_key_model=_str_list(
            rl.get("per_key_model", ["50/second"]), "rate_limits.per_key_model"
        ),
        daily_quota=_positive_int(
            rl.get("daily_quota", 1000), "rate_limits.daily_quota", allow_zero=True
        ),
        throttle=str(rl.get("throttle", "1/second")),
        key_prefix=str(rl.get("key_prefix", "mlwarden")),
    )
    if rate_limits.strategy not in ("moving-window", "fixed-window"):
        raise ConfigError(
            f"rate_limits.strategy {rate_limits.strategy!r} must be moving-window or fixed-window"
        )
    from limits import parse

    for text in (*rate_limits.per_key_model, rate_limits.throttle):
        try:
            parse(text)
        except ValueError:
            raise ConfigError(
                f"rate limit {text!r} is not in limits notation (e.g. 20/second)"
            ) from None

    au = _mapping(data.get("audit"), "audit")
    _known(au, {"synchronous", "batch_max", "mode"}, "audit")
    audit = AuditConfig(
        synchronous=str(au.get("synchronous", "normal")),
        batch_max=_positive_int(au.get("batch_max", 256), "audit.batch_max"),
        mode=str(au.get("mode", "auto")),
    )
    if audit.mode not in ("auto", "inline", "group"):
        raise ConfigError(f"audit.mode {audit.mode!r} must be auto, inline or group")
    if audit.synchronous not in ("normal", "full"):
        raise ConfigError(f"audit.synchronous {audit.synchronous!r} must be normal or full")

    mo = _mapping(data.get("monitor"), "monitor")
    _known(
        mo, {"enabled", "action", "options", "reference", "webhook_url", "expose_alerts"}, "monitor"
    )
    webhook_url = mo.get("webhook_url")
    if webhook_url is not None and (
        not isinstance(webhook_url, str)
        or not re.fullmatch(r"https?://[^\s/?#]+(/[^\s]*)?", webhook_url)
    ):
        raise ConfigError(
            f"monitor.webhook_url must be an http:// or https:// URL, got {webhook_url!r}"
        )
    monitor = MonitorSettings(
        enabled=bool(mo.get("enabled", False)),
        action=str(mo.get("action", "per_alert")),
        options=_mapping(mo.get("options"), "monitor.options"),
        reference=None if mo.get("reference") is None else str(mo["reference"]),
        webhook_url=webhook_url,
        expose_alerts=bool(mo.get("expose_alerts", True)),
    )

    database = str(data.get("database", "sqlite:///mlwarden-gateway.db"))
    if database.startswith("sqlite:///") and not database.startswith("sqlite:////"):
        rel = database[len("sqlite:///") :]
        if rel and rel != ":memory:":
            database = "sqlite:///" + str((base / rel).resolve())
    prefix = str(data.get("table_prefix", "mlw_"))
    check_table_prefix(prefix)
    return GatewayConfig(
        models=models,
        roles=roles,
        database=database,
        table_prefix=prefix,
        rate_limits=rate_limits,
        audit=audit,
        monitor=monitor,
        max_body_bytes=_positive_int(data.get("max_body_bytes", 1_048_576), "max_body_bytes"),
        metrics_public=bool(data.get("metrics_public", False)),
        scan_models=bool(data.get("scan_models", True)),
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
