"""The gateway's database: one SQLAlchemy URI holds the key store and the audit log.

``sqlite:///path`` (one host; WAL journal) or ``postgresql://...`` (shared by replicas; driven by
psycopg 3). Keeping keys and audit in one database means a revocation written by one replica is
seen by the next request on every other replica: keys are looked up per request, never cached.
Drivers are imported only when used, and driver errors become
:class:`~mlwarden.errors.ConfigError` with the cause kept.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

from mlwarden.errors import ConfigError

__all__ = ["Database", "Tables", "normalise_url"]


def normalise_url(url: str) -> str:
    """Map ``postgresql://`` and ``postgres://`` to the psycopg 3 driver; check the scheme."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith(("postgresql+psycopg://", "sqlite://")):
        return url
    raise ConfigError(
        f"database {url!r} is not supported; use sqlite:///PATH or postgresql://USER@HOST/DB"
    )


@dataclass(frozen=True)
class Tables:
    """The gateway's tables (names carry the configured prefix)."""

    metadata: sa.MetaData
    keys: sa.Table
    audit: sa.Table
    audit_head: sa.Table


TABLE_PREFIX_PATTERN = re.compile(r"[a-z_][a-z0-9_]{0,30}")


def check_table_prefix(prefix: str) -> str:
    """Refuse a table prefix that is not lower-case letters, digits and ``_``.

    Lower case only: PostgreSQL folds unquoted names to lower case, so a mixed-case prefix
    would name one table in quoted SQL and another in unquoted SQL.
    """
    if not isinstance(prefix, str) or not TABLE_PREFIX_PATTERN.fullmatch(prefix):
        raise ConfigError(
            f"table_prefix {prefix!r} must be 1-31 lower-case letters, digits and '_', "
            "starting with a letter or '_'"
        )
    return prefix


def make_tables(prefix: str) -> Tables:
    """Declare the tables under ``prefix`` (checked by :func:`check_table_prefix`)."""
    check_table_prefix(prefix)
    md = sa.MetaData()
    keys = sa.Table(
        f"{prefix}api_keys",
        md,
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, default=""),
        sa.Column("role", sa.String(64), nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=True),
        sa.Column("revoked_at", sa.Float, nullable=True),
        sa.Column("restriction", sa.String(16), nullable=True),
    )
    audit = sa.Table(
        f"{prefix}audit_log",
        md,
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("alerts", sa.Text, nullable=False),
        sa.Column("client_ip", sa.String(64), nullable=False),
        # added later: NULL in entries written before (their hashes do not cover them)
        sa.Column("peer_ip", sa.String(64), nullable=True),
        sa.Column("client_request_id", sa.String(64), nullable=True),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    head = sa.Table(
        f"{prefix}audit_head",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    return Tables(md, keys, audit, head)


class Database:
    """Engines and tables for one URI.

    Two engines: ``reader`` for lookups and ``writer`` whose transactions take the database's
    write lock up front (``BEGIN IMMEDIATE`` on SQLite; PostgreSQL serialises audit appends with
    ``SELECT ... FOR UPDATE`` on the chain head row instead).
    """

    def __init__(self, url: str, *, prefix: str = "mlw_", synchronous: str = "normal") -> None:
        self.url = normalise_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        self.tables = make_tables(prefix)
        try:
            self.reader = self._engine(immediate=False, synchronous=synchronous)
            self.writer = (
                self._engine(immediate=True, synchronous=synchronous)
                if self.is_sqlite
                else self.reader
            )
            self._create()
        except sa.exc.SQLAlchemyError as exc:
            raise ConfigError(f"database {self.safe_url}: {exc.__class__.__name__}: {exc}") from exc

    @property
    def safe_url(self) -> str:
        """The URI without its password."""
        return sa.engine.make_url(self.url).render_as_string(hide_password=True)

    @property
    def libpq_url(self) -> str:
        """The PostgreSQL URI for psycopg itself (the event loop's audit writer), password kept."""
        return (
            sa.engine.make_url(self.url)
            .set(drivername="postgresql")
            .render_as_string(hide_password=False)
        )

    def _engine(self, *, immediate: bool, synchronous: str) -> Engine:
        if not self.is_sqlite:
            return sa.create_engine(self.url, pool_size=8, max_overflow=8, pool_pre_ping=True)
        engine = sa.create_engine(
            self.url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=4,
            max_overflow=8,
        )
        sync = "FULL" if synchronous == "full" else "NORMAL"

        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={sync}")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine

    def _create(self) -> None:
        """Create missing tables and the chain head row; safe when replicas start together."""
        for attempt in range(20):
            try:
                with self.writer.begin() as conn:
                    if not self.is_sqlite:
                        conn.execute(
                            sa.text("SELECT pg_advisory_xact_lock(hashtext(:n))"),
                            {"n": self.tables.audit.name},
                        )
                    self.tables.metadata.create_all(conn, checkfirst=True)
                    self._add_missing_columns(conn)
                    head = self.tables.audit_head
                    if conn.execute(sa.select(head.c.id).where(head.c.id == 1)).first() is None:
                        conn.execute(head.insert().values(id=1, seq=0, hash="0" * 64))
                return
            except (sa.exc.OperationalError, sa.exc.IntegrityError, sa.exc.ProgrammingError):
                if attempt == 19:
                    raise
                time.sleep(0.05 * (attempt + 1))

    def _add_missing_columns(self, conn: sa.Connection) -> None:
        """Add the nullable audit columns a database created by an older version lacks."""
        audit = self.tables.audit
        present = {c["name"] for c in sa.inspect(conn).get_columns(audit.name)}
        for column in audit.columns:
            if column.name not in present and column.nullable:
                kind = column.type.compile(dialect=conn.dialect)
                conn.exec_driver_sql(f"ALTER TABLE {audit.name} ADD COLUMN {column.name} {kind}")

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.reader.dispose()
        if self.writer is not self.reader:
            self.writer.dispose()
