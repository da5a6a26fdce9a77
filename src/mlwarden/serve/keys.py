"""API keys: created once, shown once, stored as a hash, checked in constant time, revocable at once.

A key reads ``mlw_<id>_<secret>``: ``id`` is 12 hex characters (the public handle used in the
audit log and by ``keys revoke``), ``secret`` is 32 random bytes (256 bits) in URL-safe base64.
Only ``sha256(secret)`` is stored. A fast hash is the right choice here: password hashes
(scrypt, argon2) slow down guessing of *low-entropy* secrets, but nobody can enumerate 2^256
secrets, and a deliberately slow hash on every request would cost tens of milliseconds and hand
an attacker a cheap CPU-exhaustion lever. The stored digest is compared with
:func:`hmac.compare_digest`.

Key lookups. On SQLite every request reads its key by ``id`` (a primary-key read in the
process, about 30 µs). On PostgreSQL that read is a network round trip, so the gateway caches
key records (:meth:`KeyStore.start_invalidation`): every revocation, restriction or lifted
restriction, written by any replica or by ``mlwarden keys``, sends ``NOTIFY <prefix>keys`` with
the key id in the same transaction, and a listener thread drops that id from every gateway's
cache as the notification arrives. While the listener is not connected (start-up, a lost
connection) the cache is bypassed and emptied, so a missed notification can never leave a
revoked key cached; a record read while an invalidation arrived is not cached. Expiry is checked
against the clock at every use, cached or not.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from mlwarden.errors import ConfigError
from mlwarden.serve.db import Database
from mlwarden.serve.restriction import Restriction

logger = logging.getLogger(__name__)

__all__ = [
    "KEY_PATTERN",
    "RESTRICTIONS",
    "AuthFailure",
    "KeyRecord",
    "KeyStore",
    "parse_expiry",
]

#: A well-formed presented key; anything else is refused before touching the database.
KEY_PATTERN = re.compile(r"^mlw_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
#: What the monitor (or an operator) can impose on a key: the ladder without ``none``.
RESTRICTIONS: tuple[str, ...] = tuple(r.value for r in Restriction if r is not Restriction.NONE)


class AuthFailure(Exception):
    """Authentication failed; ``reason`` is a short code for the audit log (never the key)."""

    def __init__(self, reason: str, key_id: str = "anonymous") -> None:
        super().__init__(reason)
        self.reason = reason
        self.key_id = key_id


@dataclass(frozen=True)
class KeyRecord:
    """A stored key (without any secret)."""

    key_id: str
    name: str
    role: str
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    restriction: str | None

    def status(self, now: float | None = None) -> str:
        """``active``, ``expired`` or ``revoked``."""
        now = time.time() if now is None else now
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"


_DURATION = re.compile(r"^(\d+)([smhdw])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_expiry(text: str | None, *, now: float | None = None) -> float | None:
    """Turn ``30d`` / ``12h`` / an ISO-8601 date into a UNIX time; ``None`` means never.

    Raises
    ------
    ConfigError
        The text is neither a duration nor an ISO date, or lies in the past.
    """
    if text is None or text == "" or text == "never":
        return None
    now = time.time() if now is None else now
    match = _DURATION.match(text.strip())
    if match:
        seconds = int(match.group(1)) * _SECONDS[match.group(2)]
        if seconds <= 0:
            raise ConfigError(f"--expires {text!r} must be a positive duration such as 30d")
        return now + seconds
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"--expires {text!r} is neither a duration (30d, 12h, 90m) nor an ISO date "
            "(2027-01-31 or 2027-01-31T12:00:00+00:00)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    stamp = when.timestamp()
    if stamp <= now:
        raise ConfigError(f"--expires {text!r} is in the past")
    return stamp


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


class KeyStore:
    """Create, list, revoke, restrict and authenticate API keys in a :class:`Database`."""

    #: most records a cache holds (it is emptied when full)
    CACHE_MAX = 100_000

    def __init__(self, db: Database) -> None:
        self.db = db
        self.table = db.tables.keys
        self.channel = f"{self.table.name}_changed"
        self._local = threading.local()  # SQLite: each thread's own read connection
        self._own_connections: list[Any] = []
        self._cache: dict[str, tuple[Any, ...]] = {}
        self._generation = 0  # bumped by every invalidation (a read across one is not cached)
        self._listening = threading.Event()
        self._stop = threading.Event()
        self._listener: threading.Thread | None = None
        #: set by the listener after each invalidation it applied (tests wait on it)
        self.invalidated = threading.Event()
        c = self.table.c
        self._lookup = sa.select(
            c.key_id,
            c.name,
            c.role,
            c.secret_sha256,
            c.created_at,
            c.expires_at,
            c.revoked_at,
            c.restriction,
        ).where(c.key_id == sa.bindparam("kid"))
        self._sql = (
            "SELECT key_id, name, role, secret_sha256, created_at, expires_at, revoked_at, "
            f"restriction FROM {self.table.name} WHERE key_id = ?"
        )

    def _fetch(self, key_id: str) -> tuple[Any, ...] | None:
        """One primary-key read on the driver connection (the per-request hot path).

        On SQLite each thread keeps one driver connection of its own for these reads (a pool
        checkout cost more than the read); on PostgreSQL the pool lends one per read.
        """
        if self.db.is_sqlite:
            driver = getattr(self._local, "driver", None)
            if driver is None:
                raw = self.db.reader.raw_connection()
                # sqlite3's own connection: SQLAlchemy's proxy cursor cost more than the read
                driver = raw.driver_connection
                assert driver is not None, "SQLAlchemy lent a closed SQLite connection"
                self._local.driver = driver
                raw.detach()  # kept by this thread; the pool no longer counts it
                self._own_connections.append(raw)
            row = driver.execute(self._sql, (key_id,)).fetchone()
            return None if row is None else tuple(row)
        raw = self.db.reader.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute(self._sql.replace("?", "%s"), (key_id,))
            row = cursor.fetchone()
            cursor.close()
            raw.rollback()  # end the read transaction psycopg opened
        finally:
            raw.close()
        return None if row is None else tuple(row)

    # -- the cache (PostgreSQL) ------------------------------------------------------------------
    def _invalidate(self, key_id: str | None) -> None:
        """Drop ``key_id`` (``None``: everything) from this process's cache."""
        self._generation += 1
        if key_id is None:
            self._cache.clear()
        else:
            self._cache.pop(key_id, None)

    def _notify(self, conn: sa.Connection, key_id: str) -> None:
        """Tell every gateway's listener, in the writing transaction, that ``key_id`` changed.

        The writer calls :meth:`_invalidate` itself once the transaction is committed.
        """
        if not self.db.is_sqlite:
            conn.execute(
                sa.text("SELECT pg_notify(:ch, :kid)"), {"ch": self.channel, "kid": key_id}
            )

    def _listen(self) -> None:
        import psycopg

        url = sa.engine.make_url(self.db.url).set(drivername="postgresql")
        dsn = url.render_as_string(hide_password=False)
        backoff = 0.1
        while not self._stop.is_set():
            try:
                with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {self.channel}")
                    self._invalidate(None)  # whatever was missed while not listening
                    self._listening.set()
                    backoff = 0.1
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            self._invalidate(note.payload or None)
                            self.invalidated.set()
            except Exception as exc:  # reconnect; meanwhile every lookup reads the database
                logger.warning("key cache listener: %s; retrying", exc.__class__.__name__)
            finally:
                self._listening.clear()
                self._invalidate(None)
            self._stop.wait(backoff)
            backoff = min(5.0, backoff * 2)

    def start_invalidation(self) -> None:
        """Cache key records, invalidated by ``NOTIFY`` (PostgreSQL; a no-op on SQLite)."""
        if self.db.is_sqlite or self._listener is not None:
            return
        self._stop.clear()
        self._listener = threading.Thread(target=self._listen, name="mlwarden-keys", daemon=True)
        self._listener.start()

    def close(self) -> None:
        """Stop the listener and close the per-thread read connections."""
        self.stop_invalidation()
        for raw in self._own_connections:
            raw.close()
        self._own_connections.clear()
        self._local = threading.local()

    def stop_invalidation(self) -> None:
        """Stop the listener and the cache."""
        self._stop.set()
        if self._listener is not None:
            self._listener.join(timeout=10)
        self._listener = None

    @property
    def caching(self) -> bool:
        """Whether lookups are served from the cache now (the listener is connected)."""
        return self._listening.is_set()

    def wait_until_caching(self, timeout_s: float) -> bool:
        """Wait (at most ``timeout_s``) for the listener to connect; whether it has."""
        return self._listening.wait(timeout_s)

    def _lookup_row(self, key_id: str) -> tuple[Any, ...] | None:
        if not self._listening.is_set():
            return self._fetch(key_id)
        row = self._cache.get(key_id)
        if row is not None:
            return row
        generation = self._generation
        row = self._fetch(key_id)
        if row is not None and generation == self._generation and self._listening.is_set():
            if len(self._cache) >= self.CACHE_MAX:
                self._cache.clear()
            self._cache[key_id] = row
        return row

    def create(
        self, role: str, *, name: str = "", expires_at: float | None = None
    ) -> tuple[KeyRecord, str]:
        """Store a new key for ``role``; return its record and the full key (shown only once)."""
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", role):
            raise ConfigError(f"--role {role!r} is not a valid role name")
        if len(name) > 128 or any(ord(ch) < 32 for ch in name):
            raise ConfigError("--name must be at most 128 printable characters")
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        assert len(secret) == 43
        now = time.time()
        with self.db.writer.begin() as conn:
            conn.execute(
                self.table.insert().values(
                    key_id=key_id,
                    name=name,
                    role=role,
                    secret_sha256=_digest(secret),
                    created_at=now,
                    expires_at=expires_at,
                    revoked_at=None,
                    restriction=None,
                )
            )
        record = KeyRecord(key_id, name, role, now, expires_at, None, None)
        return record, f"mlw_{key_id}_{secret}"

    def get(self, key_id: str) -> KeyRecord | None:
        """The record of ``key_id``, or ``None``."""
        with self.db.reader.connect() as conn:
            row = conn.execute(self._lookup, {"kid": key_id}).first()
        if row is None:
            return None
        return KeyRecord(row[0], row[1], row[2], row[4], row[5], row[6], row[7])

    def list(self) -> list[KeyRecord]:
        """Every key, oldest first."""
        c = self.table.c
        with self.db.reader.connect() as conn:
            rows = conn.execute(
                sa.select(
                    c.key_id,
                    c.name,
                    c.role,
                    c.created_at,
                    c.expires_at,
                    c.revoked_at,
                    c.restriction,
                ).order_by(c.created_at)
            ).all()
        return [KeyRecord(*row) for row in rows]

    def revoke(self, key_id: str) -> KeyRecord:
        """Revoke ``key_id`` now (every replica refuses it from its next request on).

        Raises
        ------
        ConfigError
            No key has that id.
        """
        with self.db.writer.begin() as conn:
            result = conn.execute(
                self.table.update()
                .where(self.table.c.key_id == key_id, self.table.c.revoked_at.is_(None))
                .values(revoked_at=time.time())
            )
            self._notify(conn, key_id)
        self._invalidate(key_id)
        record = self.get(key_id)
        if record is None:
            raise ConfigError(f"no key with id {key_id!r} (see mlwarden keys list)")
        if result.rowcount == 0 and record.revoked_at is None:  # pragma: no cover - race
            raise ConfigError(f"key {key_id!r} could not be revoked")
        return record

    def restrict(self, key_id: str, restriction: str | None) -> None:
        """Impose (or lift, with ``None``) ``throttle``, ``label_only`` or ``block`` on a key.

        A stricter restriction is never replaced by a weaker one (block > label_only > throttle).
        """
        if restriction is not None and restriction not in RESTRICTIONS:
            raise ConfigError(
                f"restriction {restriction!r} is not one of {', '.join(RESTRICTIONS)} "
                "(None lifts a restriction)"
            )
        c = self.table.c
        with self.db.writer.begin() as conn:
            self._notify(conn, key_id)
            if restriction is None:
                conn.execute(self.table.update().where(c.key_id == key_id).values(restriction=None))
            # one conditional UPDATE: on PostgreSQL (READ COMMITTED) a read-then-write could let
            # a replica that read the old value replace another replica's stricter restriction
            else:
                weaker = [r.value for r in Restriction.parse(restriction).weaker()]
                conn.execute(
                    self.table.update()
                    .where(c.key_id == key_id)
                    .where(sa.or_(c.restriction.is_(None), c.restriction.in_(weaker)))
                    .values(restriction=restriction)
                )
        self._invalidate(key_id)

    def set_restriction(self, key_id: str, restriction: str | None) -> KeyRecord:
        """An operator sets a key's restriction exactly (``None`` lifts it); the updated record.

        Unlike :meth:`restrict` (the monitor, which only tightens), this can loosen: it is how a
        benign key throttled by the monitor is given its access back.

        Raises
        ------
        ConfigError
            No key has that id, or ``restriction`` is not a rung of the ladder.
        """
        if restriction is not None and restriction not in RESTRICTIONS:
            raise ConfigError(
                f"restriction {restriction!r} is not one of {', '.join(RESTRICTIONS)}"
            )
        with self.db.writer.begin() as conn:
            conn.execute(
                self.table.update()
                .where(self.table.c.key_id == key_id)
                .values(restriction=restriction)
            )
            self._notify(conn, key_id)
        self._invalidate(key_id)
        record = self.get(key_id)
        if record is None:
            raise ConfigError(f"no key with id {key_id!r} (see mlwarden keys list)")
        return record

    def authenticate(self, presented: str | None, *, now: float | None = None) -> KeyRecord:
        """The active key ``presented`` belongs to.

        Raises
        ------
        AuthFailure
            ``missing_key``, ``malformed_key``, ``unknown_key``, ``wrong_secret``, ``revoked_key``
            or ``expired_key`` (the key id is kept for the audit log once it is known).
        """
        if not presented:
            raise AuthFailure("missing_key")
        match = KEY_PATTERN.fullmatch(presented)
        if match is None:
            raise AuthFailure("malformed_key")
        key_id, secret = match.group(1), match.group(2)
        row = self._lookup_row(key_id)
        if row is None:
            # spend the same comparison as a hit so timing does not tell ids apart
            hmac.compare_digest(_digest(secret), "0" * 64)
            raise AuthFailure("unknown_key")
        if not hmac.compare_digest(_digest(secret), row[3]):
            raise AuthFailure("wrong_secret", key_id)
        record = KeyRecord(row[0], row[1], row[2], row[4], row[5], row[6], row[7])
        status = record.status(now)
        if status != "active":
            raise AuthFailure(f"{status}_key", key_id)
        return record
