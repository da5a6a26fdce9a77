"""``mlwarden serve``, ``mlwarden keys ...`` and ``mlwarden audit ...``: run and operate the gateway."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from mlwarden.cli._console import console
from mlwarden.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable

    from mlwarden.serve.db import Database
    from mlwarden.serve.keys import KeyRecord, KeyStore

__all__ = ["audit_app", "keys_app", "serve"]

EXIT_TAMPERED = 3

keys_app = typer.Typer(
    help="Create, list, revoke, restrict and unrestrict gateway API keys.", no_args_is_help=True
)
audit_app = typer.Typer(
    help="Verify and read the gateway's hash-chained audit log.", no_args_is_help=True
)

_CONFIG_HELP = "gateway.yaml (its database and table_prefix are used)."
_DB_HELP = "Database URI (sqlite:///gateway.db or postgresql://...); overrides --config."


def _database(config: Path | None, db: str | None, prefix: str | None) -> tuple[str, str]:
    if config is None and db is None:
        raise ConfigError("give --config gateway.yaml or --db URI")
    uri, table_prefix = db, prefix
    if config is not None:
        from mlwarden.serve.config import load_gateway_config

        cfg = load_gateway_config(config)
        uri = uri or cfg.database
        table_prefix = table_prefix or cfg.table_prefix
    assert uri is not None
    return uri, table_prefix or "mlw_"


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return datetime.fromtimestamp(stamp, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def serve(
    config: Path = typer.Option(..., "--config", "-c", help="gateway.yaml"),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind."),
    port: int = typer.Option(8000, "--port", help="Port to bind."),
    workers: int = typer.Option(1, "--workers", help="uvicorn worker processes."),
    log_level: str = typer.Option("warning", "--log-level", help="uvicorn log level."),
) -> None:
    """Serve the configured models behind the defended gateway (uvicorn)."""
    import os

    import uvicorn

    from mlwarden.serve.config import load_gateway_config

    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    cfg = load_gateway_config(config)
    if workers > 1 and (
        cfg.rate_limits.storage.startswith("memory") or cfg.database.startswith("sqlite")
    ):
        console.print(
            "[yellow]warning:[/] several workers with memory:// limits keep separate counters; "
            "use redis:// (and postgresql:// for many hosts)"
        )
    # Load (scan + verify) once here so a refused model stops the command with a clear error
    # before uvicorn starts; the workers then build their own app from the same file.
    from mlwarden.serve.app import create_app

    app = create_app(cfg)
    if workers == 1:
        docs = " (docs at /docs)" if cfg.docs else ""
        console.print(f"serving {len(cfg.models)} model(s) on http://{host}:{port}{docs}")
        # ws="none": the gateway has no WebSocket route; leaving uvicorn's WebSocket protocol
        # (and its deprecated `websockets.legacy` import) out is less attack surface.
        # proxy_headers=False: uvicorn would otherwise replace the TCP peer with the
        # X-Forwarded-For of any client on 127.0.0.1; the gateway's trusted_proxies decide.
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level=log_level,
            access_log=False,
            ws="none",
            proxy_headers=False,
        )
        return
    app.state.gateway.close()
    os.environ["MLWARDEN_GATEWAY_CONFIG"] = str(Path(config).resolve())
    console.print(
        f"serving {len(cfg.models)} model(s) on http://{host}:{port} with {workers} workers"
    )
    uvicorn.run(
        "mlwarden.serve.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=False,
        ws="none",
        proxy_headers=False,
    )


@keys_app.command("create")
def keys_create(
    role: str = typer.Option(..., "--role", help="Role from the gateway config."),
    expires: str | None = typer.Option(None, "--expires", help="30d, 12h, or an ISO date."),
    name: str = typer.Option("", "--name", help="A label for humans."),
    as_json: bool = typer.Option(
        False, "--json", help='Print only {"key_id": ..., "key": ..., ...} on one line (scripts).'
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the key (scripts)."),
    config: Path | None = typer.Option(None, "--config", "-c", help=_CONFIG_HELP),
    db: str | None = typer.Option(None, "--db", help=_DB_HELP),
    table_prefix: str | None = typer.Option(None, "--table-prefix", help="Table name prefix."),
) -> None:
    """Create a key; the secret is printed once and only its hash is stored."""
    if as_json and quiet:
        raise ConfigError("give --json or --quiet, not both")
    from mlwarden.serve.db import Database
    from mlwarden.serve.keys import KeyStore, parse_expiry

    uri, prefix = _database(config, db, table_prefix)
    if config is not None:
        from mlwarden.serve.config import load_gateway_config

        roles = load_gateway_config(config).roles
        if role not in roles:
            raise ConfigError(
                f"--role {role!r} is not defined in {config}; defined: {', '.join(sorted(roles)) or 'none'}"
            )
    store = KeyStore(Database(uri, prefix=prefix))
    record, secret = store.create(role, name=name, expires_at=parse_expiry(expires))
    if quiet:
        typer.echo(secret)
        return
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "key_id": record.key_id,
                    "key": secret,
                    "role": record.role,
                    "name": record.name,
                    "expires_at": record.expires_at,
                }
            )
        )
        return
    console.print(
        f"created key [bold]{record.key_id}[/] (role {escape(role)}, expires "
        f"{_when(record.expires_at)}); store it now, it is not shown again:"
    )
    typer.echo(secret)


@keys_app.command("list")
def keys_list(
    config: Path | None = typer.Option(None, "--config", "-c", help=_CONFIG_HELP),
    db: str | None = typer.Option(None, "--db", help=_DB_HELP),
    table_prefix: str | None = typer.Option(None, "--table-prefix", help="Table name prefix."),
) -> None:
    """List keys (ids, roles, status; never secrets)."""
    from mlwarden.serve.db import Database
    from mlwarden.serve.keys import KeyStore

    uri, prefix = _database(config, db, table_prefix)
    table = Table(title="API keys")
    table.add_column("id", no_wrap=True, min_width=12)
    for column in ("name", "role", "status", "restriction", "created", "expires"):
        table.add_column(column)
    now = time.time()
    for rec in KeyStore(Database(uri, prefix=prefix)).list():
        table.add_row(
            rec.key_id,
            escape(rec.name),
            escape(rec.role),
            rec.status(now),
            rec.restriction or "-",
            _when(rec.created_at),
            _when(rec.expires_at),
        )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: str = typer.Argument(..., help="The key id (the part after mlw_)."),
    config: Path | None = typer.Option(None, "--config", "-c", help=_CONFIG_HELP),
    db: str | None = typer.Option(None, "--db", help=_DB_HELP),
    table_prefix: str | None = typer.Option(None, "--table-prefix", help="Table name prefix."),
) -> None:
    """Revoke a key; every replica refuses it from its next request."""
    record = _change_key(
        config, db, table_prefix, lambda store: store.revoke(key_id), "revoke", "operator"
    )
    console.print(f"revoked key [bold]{record.key_id}[/] at {_when(record.revoked_at)}")


def _change_key(
    config: Path | None,
    db: str | None,
    table_prefix: str | None,
    change: Callable[[KeyStore], KeyRecord],
    action: str,
    reason: str,
) -> KeyRecord:
    """Apply an operator's ``change`` to a key in the gateway database, then audit it."""
    from mlwarden.serve.db import Database
    from mlwarden.serve.keys import KeyStore

    uri, prefix = _database(config, db, table_prefix)
    database = Database(uri, prefix=prefix)
    record = change(KeyStore(database))
    _audit_operator(database, record.key_id, action, reason)
    return record


def _audit_operator(database: Database, key_id: str, action: str, reason: str) -> None:
    """One audit entry for an operator's change to a key (chained like every request)."""
    import uuid

    from mlwarden.serve.audit import AuditEntry, AuditLog

    AuditLog(database).append(
        AuditEntry(
            request_id=uuid.uuid4().hex,
            key_id=key_id,
            action=action,
            decision="allow",
            reason=reason,
            status=0,
            client_ip="cli",
            peer_ip="cli",
        )
    )


@keys_app.command("restrict")
def keys_restrict(
    key_id: str = typer.Argument(..., help="The key id (the part after mlw_)."),
    level: str = typer.Option(
        "throttle", "--level", help="throttle, label_only or block (replaces the current one)."
    ),
    config: Path | None = typer.Option(None, "--config", "-c", help=_CONFIG_HELP),
    db: str | None = typer.Option(None, "--db", help=_DB_HELP),
    table_prefix: str | None = typer.Option(None, "--table-prefix", help="Table name prefix."),
) -> None:
    """Set a key's restriction (audited); every replica applies it from its next request."""
    record = _change_key(
        config,
        db,
        table_prefix,
        lambda store: store.set_restriction(key_id, level),
        "restrict",
        f"operator:{level}",
    )
    console.print(f"key [bold]{record.key_id}[/] is now restricted to {level}")


@keys_app.command("unrestrict")
def keys_unrestrict(
    key_id: str = typer.Argument(..., help="The key id (the part after mlw_)."),
    config: Path | None = typer.Option(None, "--config", "-c", help=_CONFIG_HELP),
    db: str | None = typer.Option(None, "--db", help=_DB_HELP),
    table_prefix: str | None = typer.Option(None, "--table-prefix", help="Table name prefix."),
) -> None:
    """Lift a key's restriction (the monitor's or an operator's); audited."""
    record = _change_key(
        config,
        db,
        table_prefix,
        lambda store: store.set_restriction(key_id, None),
        "unrestrict",
        "operator",
    )
    console.print(f"key [bold]{record.key_id}[/] is no longer restricted")


@audit_app.command("verify")
def audit_verify(
    config: Path | None = typer.Option(None, "--config", "-c", help=_CONFIG_HELP),
    db: str | None = typer.Option(None, "--db", help=_DB_HELP),
    table_prefix: str | None = typer.Option(None, "--table-prefix", help="Table name prefix."),
) -> None:
    """Recompute the hash chain; exit 3 naming every edited, deleted, reordered or cut entry."""
    from mlwarden.serve.audit import AuditLog
    from mlwarden.serve.db import Database

    uri, prefix = _database(config, db, table_prefix)
    result = AuditLog(Database(uri, prefix=prefix)).verify()
    if result.ok:
        console.print(
            f"[green]intact[/]: {result.entries} entries, head seq {result.head_seq} hash "
            f"{result.head_hash}"
        )
        return
    for problem in result.problems:
        console.print(f"[bold red]tampered:[/] {escape(problem)}")
    console.print(
        f"[bold red]FAIL[/]: {len(result.problems)} problem(s) in {result.entries} entries"
    )
    raise typer.Exit(code=EXIT_TAMPERED)


@audit_app.command("tail")
def audit_tail(
    n: int = typer.Option(20, "-n", help="How many entries."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
    config: Path | None = typer.Option(None, "--config", "-c", help=_CONFIG_HELP),
    db: str | None = typer.Option(None, "--db", help=_DB_HELP),
    table_prefix: str | None = typer.Option(None, "--table-prefix", help="Table name prefix."),
) -> None:
    """Show the last entries of the audit log, and the chain head to anchor elsewhere."""
    from mlwarden.serve.audit import AuditLog
    from mlwarden.serve.db import Database

    if n < 1:
        raise ConfigError(f"-n must be at least 1, got {n}")
    uri, prefix = _database(config, db, table_prefix)
    log = AuditLog(Database(uri, prefix=prefix))
    rows = log.tail(n)
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row, sort_keys=True))
        return
    table = Table(title="audit log")
    for column in ("seq", "time", "key", "model", "action", "status", "reason", "ms", "alerts"):
        table.add_column(column)
    for row in rows:
        alerts = json.loads(row["alerts"])
        table.add_row(
            str(row["seq"]),
            _when(row["ts"]),
            row["key_id"],
            escape(row["model"]),
            row["action"],
            str(row["status"]),
            escape(row["reason"]),
            f"{row['latency_ms']:.1f}",
            ", ".join(str(a.get("kind")) for a in alerts),
        )
    console.print(table)
    seq, head = log.head_state()
    console.print(f"head seq {seq} hash {head}")
