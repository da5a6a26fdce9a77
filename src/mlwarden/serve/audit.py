"""A hash-chained, append-only audit log of every gateway request, with group commit.

Each entry ``n`` stores ``prev_hash`` (entry ``n-1``'s hash, 64 zeros for the first) and
``hash = sha256(canonical_json(entry fields, seq included) + prev_hash)`` (Schneier & Kelsey,
1999, "Secure audit logs to support computer forensics", without the per-entry keys). A head row
records the last ``seq`` and ``hash``. :func:`verify_chain` recomputes the chain and so detects:

* an edited entry (its hash no longer matches its fields);
* a deleted entry (a gap in ``seq`` and a ``prev_hash`` that matches nothing);
* reordered entries (swapping fields breaks their hashes; swapping ``seq`` breaks ``prev_hash``);
* a truncated tail (the head row names a later entry than the last one present).

What it cannot detect on its own: someone with write access to the database who rewrites the
whole chain from some point on *and* the head row. Anchor the head hash elsewhere (``mlwarden
audit tail`` prints it; ship it to a separate system) to close that gap.

Appends are serialised so replicas sharing a database keep one chain without forks: the
transaction first locks the head row (``SELECT ... FOR UPDATE`` on PostgreSQL, ``BEGIN
IMMEDIATE`` on SQLite), appends, moves the head and commits. On PostgreSQL a writer thread takes
every entry waiting in its queue into one such transaction (group commit) and only then wakes the
requests whose entries it wrote; on SQLite the commit (about 0.1 ms in WAL mode) runs inline in
the request. Either way a response is never sent before its audit entry is committed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from mlwarden.errors import ConfigError
from mlwarden.serve.db import Database

__all__ = ["GENESIS_HASH", "AuditEntry", "AuditLog", "ChainVerification", "entry_hash"]

logger = logging.getLogger(__name__)

GENESIS_HASH = "0" * 64
_HASHED_FIELDS = (
    "seq",
    "ts",
    "request_id",
    "key_id",
    "model",
    "action",
    "decision",
    "reason",
    "status",
    "latency_ms",
    "alerts",
    "client_ip",
)


@dataclass
class AuditEntry:
    """One request as the audit log records it: never the key's secret, never the raw inputs."""

    request_id: str
    key_id: str = "anonymous"
    model: str = "-"
    action: str = "-"
    decision: str = "deny"
    reason: str = "-"
    status: int = 0
    latency_ms: float = 0.0
    alerts: list[dict[str, Any]] = field(default_factory=list)
    client_ip: str = "-"
    ts: float = field(default_factory=time.time)

    def fields(self) -> dict[str, Any]:
        """The stored columns (without ``seq`` and the hashes)."""
        return {
            "ts": round(float(self.ts), 6),
            "request_id": self.request_id[:64],
            "key_id": self.key_id[:32],
            "model": self.model[:128],
            "action": self.action[:16],
            "decision": self.decision[:16],
            "reason": self.reason[:64],
            "status": int(self.status),
            "latency_ms": round(float(self.latency_ms), 3),
            "alerts": json.dumps(self.alerts, sort_keys=True, separators=(",", ":"), default=str),
            "client_ip": self.client_ip[:64],
        }


def entry_hash(row: dict[str, Any], prev_hash: str) -> str:
    """``sha256(canonical JSON of the hashed fields + prev_hash)``, hex."""
    payload = {name: row[name] for name in _HASHED_FIELDS}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256((text + prev_hash).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ChainVerification:
    """The result of :meth:`AuditLog.verify`."""

    entries: int
    head_seq: int
    head_hash: str
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """Whether the chain is intact."""
        return not self.problems


_Callback = Callable[[BaseException | None], None]


class AuditLog:
    """Append to, read and verify the audit chain in a :class:`Database`."""

    def __init__(self, db: Database, *, batch_max: int = 256, mode: str = "auto") -> None:
        if mode not in ("auto", "inline", "group"):
            raise ConfigError(f"audit mode {mode!r} must be auto, inline or group")
        self.db = db
        #: ``inline``: commit in the caller's thread (SQLite: ~0.1 ms, cheaper than a thread
        #: hand-off); ``group``: a writer thread batches waiting entries into one commit
        #: (PostgreSQL, where a commit is a network round trip and a WAL flush).
        self.inline = mode == "inline" or (mode == "auto" and db.is_sqlite)
        self.commits = 0  # transactions written by this object (group commit batches several)
        self.table = db.tables.audit
        self.head = db.tables.audit_head
        self.batch_max = batch_max
        self._queue: queue.Queue[tuple[AuditEntry, _Callback] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- writing -----------------------------------------------------------------------------
    def append_many(self, entries: list[AuditEntry]) -> list[int]:
        """Append ``entries`` in one transaction (serialised with every other writer); their seqs.

        Runs on the driver connection with hand-written SQL (this is the gateway's hot path):
        lock the head row, chain the entries, insert them, move the head, commit.
        """
        rows = [e.fields() for e in entries]
        sqlite = self.db.is_sqlite
        ph = "?" if sqlite else "%s"
        head, table = self.head.name, self.table.name
        columns = ("seq", *_HASHED_FIELDS[1:], "prev_hash", "hash")
        insert = (
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([ph] * len(columns))})"
        )
        raw = self.db.writer.raw_connection()
        try:
            cursor = raw.cursor()
            if sqlite:
                cursor.execute("BEGIN IMMEDIATE")
            cursor.execute(
                f"SELECT seq, hash FROM {head} WHERE id = 1" + ("" if sqlite else " FOR UPDATE")
            )
            locked = cursor.fetchone()
            if locked is None:
                raise RuntimeError(f"audit chain head row missing from {head}")
            seq, prev = int(locked[0]), str(locked[1])
            for row in rows:
                seq += 1
                row["seq"] = seq
                row["prev_hash"] = prev
                row["hash"] = prev = entry_hash(row, prev)
            cursor.executemany(insert, [tuple(row[c] for c in columns) for row in rows])
            cursor.execute(f"UPDATE {head} SET seq = {ph}, hash = {ph} WHERE id = 1", (seq, prev))
            if sqlite:
                cursor.execute("COMMIT")
            else:
                raw.commit()
            cursor.close()
            self.commits += 1
        except BaseException:
            try:
                if sqlite:
                    raw.cursor().execute("ROLLBACK")
                else:
                    raw.rollback()
            except Exception:  # the connection is gone; the pool discards it
                pass
            raise
        finally:
            raw.close()
        return [int(r["seq"]) for r in rows]

    def append(self, entry: AuditEntry) -> int:
        """Append one entry now, in its own transaction; its seq."""
        return self.append_many([entry])[0]

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            stop = False
            while len(batch) < self.batch_max:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            error: BaseException | None = None
            try:
                self.append_many([entry for entry, _ in batch])
            except Exception as exc:  # reported to every waiting request, which fails closed
                logger.error("audit append failed: %s", exc.__class__.__name__)
                error = exc
            for _, callback in batch:
                callback(error)
            if stop:
                return

    def start(self) -> None:
        """Start the group-commit writer thread (idempotent)."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="mlwarden-audit", daemon=True
                )
                self._thread.start()

    def close(self) -> None:
        """Write what is queued and stop the writer thread."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                self._queue.put(None)
                self._thread.join(timeout=30)
            self._thread = None

    async def append_async(self, entry: AuditEntry) -> None:
        """Queue ``entry`` for the writer thread; return once it is committed.

        Raises
        ------
        Exception
            Whatever the commit raised (the caller must not acknowledge the request).
        """
        if self.inline:
            self.append(entry)
            return
        self.start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def done(error: BaseException | None) -> None:
            def settle() -> None:
                if future.done():
                    return
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)

            loop.call_soon_threadsafe(settle)

        self._queue.put((entry, done))
        await future

    # -- reading -----------------------------------------------------------------------------
    def rows(self, *, after_seq: int = 0, batch: int = 2000) -> Iterator[dict[str, Any]]:
        """Every stored entry with ``seq > after_seq`` in ``seq`` order, as dictionaries."""
        c = self.table.c
        last = after_seq
        while True:
            with self.db.reader.connect() as conn:
                chunk = (
                    conn.execute(
                        sa.select(self.table).where(c.seq > last).order_by(c.seq).limit(batch)
                    )
                    .mappings()
                    .all()
                )
            if not chunk:
                return
            for row in chunk:
                yield dict(row)
            last = int(chunk[-1]["seq"])

    def tail(self, n: int = 20) -> list[dict[str, Any]]:
        """The last ``n`` entries, oldest first."""
        c = self.table.c
        with self.db.reader.connect() as conn:
            rows = (
                conn.execute(sa.select(self.table).order_by(c.seq.desc()).limit(n)).mappings().all()
            )
        return [dict(r) for r in reversed(rows)]

    def count(self) -> int:
        """How many entries are stored."""
        with self.db.reader.connect() as conn:
            return int(
                conn.execute(sa.select(sa.func.count()).select_from(self.table)).scalar() or 0
            )

    def head_state(self) -> tuple[int, str]:
        """``(seq, hash)`` of the chain head row."""
        h = self.head.c
        with self.db.reader.connect() as conn:
            row = conn.execute(sa.select(h.seq, h.hash).where(h.id == 1)).first()
        return (0, GENESIS_HASH) if row is None else (int(row[0]), str(row[1]))

    def verify(self, *, max_problems: int = 50) -> ChainVerification:
        """Recompute the whole chain; report every edited, missing, reordered or cut entry."""
        problems: list[str] = []
        expected_seq, prev, count = 1, GENESIS_HASH, 0
        for row in self.rows():
            count += 1
            seq = int(row["seq"])
            if seq != expected_seq:
                problems.append(
                    f"entry {seq}: expected seq {expected_seq} (entries deleted or reordered)"
                )
            if row["prev_hash"] != prev:
                problems.append(f"entry {seq}: prev_hash does not match the previous entry's hash")
            if entry_hash(row, str(row["prev_hash"])) != row["hash"]:
                problems.append(f"entry {seq}: hash does not match its contents (entry edited)")
            prev, expected_seq = str(row["hash"]), seq + 1
            if len(problems) >= max_problems:
                break
        head_seq, head_hash = self.head_state()
        last_seq = expected_seq - 1
        if len(problems) < max_problems and (head_seq, head_hash) != (last_seq, prev):
            problems.append(
                f"chain head says seq {head_seq} but the log ends at seq {last_seq} "
                "(tail truncated, or head/last entry edited)"
            )
        return ChainVerification(count, head_seq, head_hash, tuple(problems))
