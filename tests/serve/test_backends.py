"""Contract suites run over every backend: key store + audit log on SQLite and PostgreSQL,
rate limits on memory:// and Redis."""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from mlwarden.errors import ConfigError
from mlwarden.serve.audit import GENESIS_HASH, AuditEntry, AuditLog, entry_hash
from mlwarden.serve.config import RateLimitConfig
from mlwarden.serve.db import Database
from mlwarden.serve.keys import AuthFailure, KeyStore, parse_expiry
from mlwarden.serve.quotas import RateLimits


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    prefix = "t" + uuid.uuid4().hex[:10] + "_"
    database = Database(database_url, prefix=prefix)
    yield database
    database.tables.metadata.drop_all(database.writer)
    database.dispose()


def _entries(n: int, start: int = 0) -> list[AuditEntry]:
    return [
        AuditEntry(
            request_id=f"r{start + i}",
            key_id="abc",
            model="digits",
            status=200,
            decision="allow",
            reason="ok",
            latency_ms=1.5,
        )
        for i in range(n)
    ]


# -- key store ---------------------------------------------------------------------------
def test_key_store_keeps_only_the_hash(db: Database) -> None:
    store = KeyStore(db)
    record, key = store.create("analyst", name="ci")
    secret = key.split("_", 2)[2]
    with db.reader.connect() as conn:
        row = conn.execute(sa.select(db.tables.keys)).mappings().one()
    assert secret not in str(dict(row)).replace(row["secret_sha256"], "")
    assert row["secret_sha256"] == hashlib.sha256(secret.encode()).hexdigest()
    assert store.authenticate(key).key_id == record.key_id
    with pytest.raises(AuthFailure, match="wrong_secret"):
        store.authenticate(key[:-2] + ("xx" if not key.endswith("xx") else "yy"))


def test_every_secret_check_is_one_constant_time_compare_digest(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without timing: each secret check, an unknown key id included, is one
    ``hmac.compare_digest`` of two SHA-256 digests, and its answer alone decides."""
    import hmac

    real = hmac.compare_digest
    calls: list[tuple[str, str]] = []
    verdict: dict[str, bool | None] = {"force": None}

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b) if verdict["force"] is None else bool(verdict["force"])

    monkeypatch.setattr(hmac, "compare_digest", spy)
    store = KeyStore(db)
    record, key = store.create("analyst")
    secret = key.split("_", 2)[2]
    digest = hashlib.sha256(secret.encode()).hexdigest()
    wrong = key[:-2] + ("xx" if not key.endswith("xx") else "yy")
    unknown = (
        f"mlw_{'0' * 12}_{secret}" if record.key_id != "0" * 12 else f"mlw_{'1' * 12}_{secret}"
    )

    assert store.authenticate(key).key_id == record.key_id
    assert calls == [(digest, digest)]
    calls.clear()
    with pytest.raises(AuthFailure, match="wrong_secret"):
        store.authenticate(wrong)
    assert len(calls) == 1 and calls[0][1] == digest and calls[0][0] != digest
    calls.clear()
    with pytest.raises(AuthFailure, match="unknown_key"):
        store.authenticate(unknown)
    assert calls == [(digest, "0" * 64)]  # the same work as a known id, against a dummy digest

    calls.clear()
    verdict["force"] = False  # compare_digest, not another comparison, decides
    with pytest.raises(AuthFailure, match="wrong_secret"):
        store.authenticate(key)
    verdict["force"] = True
    assert store.authenticate(wrong).key_id == record.key_id
    assert len(calls) == 2


def test_revocation_and_expiry_apply_to_the_next_lookup(db: Database) -> None:
    store, other_replica = KeyStore(db), KeyStore(Database(db.url, prefix=db.tables.keys.name[:-8]))
    record, key = store.create("analyst", expires_at=time.time() + 3600)
    assert other_replica.authenticate(key).key_id == record.key_id
    store.revoke(record.key_id)
    with pytest.raises(AuthFailure, match="revoked_key"):
        other_replica.authenticate(key)
    _, soon = store.create("analyst", expires_at=time.time() + 3600)
    with pytest.raises(AuthFailure, match="expired_key"):
        store.authenticate(soon, now=time.time() + 7200)
    other_replica.db.dispose()


@pytest.mark.postgres
def test_cached_key_records_are_dropped_on_revocation_by_another_process() -> None:
    from serve.helpers import POSTGRES_URL, require_server

    require_server("PostgreSQL", "127.0.0.1", 5432)
    prefix = "t" + uuid.uuid4().hex[:10] + "_"
    cli, gateway = KeyStore(Database(POSTGRES_URL, prefix=prefix)), None
    try:
        gateway = KeyStore(Database(POSTGRES_URL, prefix=prefix))
        gateway.start_invalidation()
        assert gateway.wait_until_caching(10.0)
        record, key = cli.create("analyst")
        reads: list[str] = []
        fetch = gateway._fetch

        def counted(key_id: str) -> Any:
            reads.append(key_id)
            return fetch(key_id)

        gateway._fetch = counted  # type: ignore[method-assign]
        for _ in range(5):
            assert gateway.authenticate(key).key_id == record.key_id
        assert len(reads) == 1  # one database read, then the cache
        gateway.restrict(record.key_id, "throttle")  # this process: applies to the next lookup
        assert gateway.authenticate(key).restriction == "throttle"
        gateway.invalidated.clear()
        cli.revoke(record.key_id)  # another process (mlwarden keys revoke, another replica)
        assert gateway.invalidated.wait(10.0)
        with pytest.raises(AuthFailure, match="revoked_key"):
            gateway.authenticate(key)
    finally:
        if gateway is not None:
            gateway.stop_invalidation()
            assert not gateway.caching
            gateway.db.dispose()
        cli.db.tables.metadata.drop_all(cli.db.writer)
        cli.db.dispose()


def test_restrictions_only_ever_tighten(db: Database) -> None:
    store = KeyStore(db)
    record, _ = store.create("analyst")
    store.restrict(record.key_id, "label_only")
    store.restrict(record.key_id, "throttle")
    assert store.get(record.key_id).restriction == "label_only"  # type: ignore[union-attr]
    store.restrict(record.key_id, "block")
    assert store.get(record.key_id).restriction == "block"  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="no key with id"):
        store.revoke("000000000000")


def test_parse_expiry_accepts_durations_and_iso_dates() -> None:
    assert parse_expiry("30d", now=1000.0) == 1000.0 + 30 * 86400
    assert parse_expiry("2030-01-01T00:00:00+00:00", now=0) == 1893456000.0
    assert parse_expiry(None) is None
    for bad in ("soon", "2001-01-01", "0d"):
        with pytest.raises(ConfigError):
            parse_expiry(bad, now=time.time())


# -- audit log -------------------------------------------------------------------------------
def test_chain_matches_an_independent_recomputation(db: Database) -> None:
    log = AuditLog(db)
    log.append_many(_entries(5))
    rows = list(log.rows())
    prev = GENESIS_HASH
    for i, row in enumerate(rows, start=1):
        import json

        fields = {
            k: row[k]
            for k in (
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
                "peer_ip",  # hashed when present (entries written before it existed lack it)
                "client_request_id",
            )
        }
        text = json.dumps(fields, sort_keys=True, separators=(",", ":"))
        assert row["seq"] == i and row["prev_hash"] == prev
        assert (
            row["hash"]
            == hashlib.sha256((text + prev).encode()).hexdigest()
            == entry_hash(row, prev)
        )
        prev = row["hash"]
    assert log.verify().ok and log.head_state() == (5, prev)


def _tamper(db: Database, sql: str) -> None:
    table = db.tables.audit.name
    with db.writer.begin() as conn:
        conn.execute(sa.text(sql.format(t=table, h=db.tables.audit_head.name)))


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("UPDATE {t} SET status = 500 WHERE seq = 3", "entry 3: hash does not match"),
        ("DELETE FROM {t} WHERE seq = 3", "entry 4: expected seq 3"),
        # swap the contents of entries 2 and 3 (their seq stays)
        (
            "UPDATE {t} SET request_id = CASE seq WHEN 2 THEN 'r2' WHEN 3 THEN 'r1' END WHERE seq IN (2, 3)",
            "entry 2: hash does not match",
        ),
        # swap whole rows: entry 2 gets seq 3 and vice versa
        (
            "UPDATE {t} SET seq = CASE seq WHEN 2 THEN 1002 WHEN 3 THEN 1003 END WHERE seq IN (2, 3)",
            "expected seq 2",
        ),
        ("DELETE FROM {t} WHERE seq = 5", "chain head says seq 5 but the log ends at seq 4"),
    ],
)
def test_verify_detects_edited_deleted_reordered_and_truncated_entries(
    db: Database, sql: str, expected: str
) -> None:
    log = AuditLog(db)
    log.append_many(_entries(5))
    assert log.verify().ok
    _tamper(db, sql)
    result = log.verify()
    assert not result.ok
    assert any(expected in p for p in result.problems), result.problems


def test_concurrent_writers_on_two_connections_pools_keep_one_chain(db: Database) -> None:
    """Two AuditLog objects with their own engines (as two replicas) and 8 threads each."""
    replica = Database(db.url, prefix=db.tables.keys.name[: -len("api_keys")])
    logs = [AuditLog(db), AuditLog(replica)]
    errors: list[BaseException] = []

    def write(log: AuditLog, worker: int) -> None:
        try:
            for i in range(10):
                log.append_many(_entries(2, start=1000 * worker + 10 * i))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(logs[w % 2], w)) for w in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    result = logs[0].verify()
    assert result.ok, result.problems
    assert result.entries == logs[0].count() == 16 * 10 * 2
    replica.dispose()


@pytest.mark.parametrize("mode", ["inline", "group"])
def test_appends_from_the_event_loop_inline_or_grouped(db: Database, mode: str) -> None:
    import asyncio

    log = AuditLog(db, batch_max=16, mode=mode)

    async def many() -> None:
        await asyncio.gather(*(log.append_async(e) for e in _entries(100)))

    asyncio.run(many())
    log.close()
    assert log.count() == 100 and log.verify().ok
    if mode == "inline":  # the 100 entries ready in one loop turn: ceil(100 / 16) commits
        assert log.commits == 7
    else:  # 100 entries queued at once are written in a few batches of at most 16
        assert 7 <= log.commits <= 50


@pytest.mark.postgres
def test_group_commit_survives_its_kept_connection_being_killed() -> None:
    """The event loop's writer keeps one connection (no pool checkout or ping per batch); when
    the server drops it (a restart, an idle timeout), the next batch is written on a fresh one
    and no request is failed or written twice."""
    import asyncio

    from serve.helpers import POSTGRES_URL, require_server

    require_server("PostgreSQL", "127.0.0.1", 5432)
    database = Database(POSTGRES_URL, prefix="t" + uuid.uuid4().hex[:10] + "_")
    log = AuditLog(database, batch_max=16, mode="group")
    name = f"mlwarden audit {log.table.name}"
    activity = sa.text("SELECT pid FROM pg_stat_activity WHERE application_name = :n")

    def writer_pids() -> list[int]:
        with database.reader.connect() as conn:
            return [int(p) for p in conn.execute(activity, {"n": name}).scalars()]

    async def scenario() -> tuple[list[int], list[int]]:
        await asyncio.gather(*(log.append_async(e) for e in _entries(20)))
        await asyncio.gather(*(log.append_async(e) for e in _entries(20, start=20)))
        first = writer_pids()
        with database.reader.connect() as conn:
            assert conn.execute(sa.text(f"SELECT pg_terminate_backend({first[0]})")).scalar()
        await asyncio.gather(*(log.append_async(e) for e in _entries(20, start=40)))
        second = writer_pids()
        await log.aclose()
        return first, second

    try:
        first, second = asyncio.run(scenario())
        assert len(first) == 1  # one connection kept across batches
        assert len(second) == 1 and second != first  # the dead one replaced
        assert writer_pids() == []  # closed with the log
        assert log.count() == 60 and log.verify().ok
        assert [row["request_id"] for row in log.rows()] == [f"r{i}" for i in range(60)]
        assert log.contended == 0  # alone, every batch after the first is one statement
    finally:
        log.close()
        database.tables.metadata.drop_all(database.writer)
        database.dispose()


@pytest.mark.postgres
def test_loop_writers_of_two_replicas_and_a_synchronous_writer_keep_one_chain() -> None:
    """Each writer chains from the head it last wrote and falls back to locking the head when
    another moved it: interleaved batches of two replicas and direct appends never fork."""
    import asyncio

    from serve.helpers import POSTGRES_URL, require_server

    require_server("PostgreSQL", "127.0.0.1", 5432)
    prefix = "t" + uuid.uuid4().hex[:10] + "_"
    databases = [Database(POSTGRES_URL, prefix=prefix) for _ in range(2)]
    logs = [AuditLog(db, batch_max=8, mode="group") for db in databases]

    async def replica(r: int) -> None:
        for i in range(12):
            batch = _entries(3, start=1000 * r + 10 * i)
            await asyncio.gather(*(logs[r].append_async(e) for e in batch))
            if r == 0 and i % 4 == 0:  # a third writer, in its own thread
                await asyncio.to_thread(logs[1].append_many, _entries(2, start=9000 + 10 * i))

    async def both() -> None:
        await asyncio.gather(replica(0), replica(1))
        for log in logs:
            await log.aclose()

    try:
        asyncio.run(both())
        result = logs[0].verify()
        assert result.ok, result.problems
        assert result.entries == 2 * 12 * 3 + 3 * 2
        ids = [row["request_id"] for row in logs[0].rows()]
        assert len(set(ids)) == len(ids)  # nothing written twice
        assert sum(log.contended for log in logs) > 0  # the fallback path was taken
    finally:
        for log in logs:
            log.close()
        databases[0].tables.metadata.drop_all(databases[0].writer)
        for db in databases:
            db.dispose()


# -- rate limits ---------------------------------------------------------------------------
def _limits(url: str, prefix: str, **kwargs: Any) -> RateLimits:
    return RateLimits(RateLimitConfig(storage=url, key_prefix=prefix, **kwargs))


def test_quota_admits_exactly_q_under_concurrency(limits_url: str) -> None:
    prefix = "t" + uuid.uuid4().hex
    # two limiter objects share the storage on Redis (two replicas); memory:// is one process
    limiters = [_limits(limits_url, prefix, per_key_model=("10000/second",), daily_quota=37)]
    if limits_url.startswith("redis"):
        limiters.append(
            _limits(limits_url, prefix, per_key_model=("10000/second",), daily_quota=37)
        )
    admitted: list[bool] = []
    lock = threading.Lock()

    def hammer(i: int) -> None:
        for _ in range(10):
            decision = limiters[i % len(limiters)].charge_quota("key1", "digits")
            with lock:
                admitted.append(decision.allowed)

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(admitted) == 37 and len(admitted) == 160
    assert limiters[0].remaining_quota("key1", "digits") == 0
    assert limiters[0].charge_quota("key2", "digits").allowed  # quotas are per key


def test_quota_is_charged_per_query_and_never_overdrawn(limits_url: str) -> None:
    limits = _limits(limits_url, "t" + uuid.uuid4().hex, daily_quota=10)
    assert limits.charge_quota("k", "m", 4).allowed
    assert limits.charge_quota("k", "m", 6).allowed
    refused = limits.charge_quota("k", "m", 1)
    assert not refused.allowed and refused.reason == "quota"
    assert refused.retry_after_s >= 1
    assert limits.remaining_quota("k", "m") == 0


def test_a_batch_larger_than_the_rest_of_the_quota_is_refused(limits_url: str) -> None:
    limits = _limits(limits_url, "t" + uuid.uuid4().hex, daily_quota=10)
    assert limits.charge_quota("k", "m", 8).allowed
    assert not limits.charge_quota("k", "m", 3).allowed  # 11 > 10: refused, not part-served
    assert limits.remaining_quota("k", "m") == 2  # the refused batch spent nothing
    assert limits.charge_quota("k", "m", 2).allowed
    assert not limits.charge_quota("k", "m", 1).allowed


def test_rate_limit_refuses_with_retry_after_and_spares_the_quota(limits_url: str) -> None:
    limits = _limits(
        limits_url, "t" + uuid.uuid4().hex, per_key_model=("3/minute",), daily_quota=100
    )
    decisions = [limits.hit("k", "m") for _ in range(5)]
    assert [d.allowed for d in decisions] == [True, True, True, False, False]
    assert decisions[3].reason == "rate_limit" and 1 <= decisions[3].retry_after_s <= 60
    assert limits.remaining_quota("k", "m") == 100  # the rate check never spends quota
    assert limits.hit("k", "other-model").allowed  # per model


def test_throttled_keys_get_the_throttle_limit(limits_url: str) -> None:
    limits = _limits(
        limits_url,
        "t" + uuid.uuid4().hex,
        per_key_model=("100/second",),
        throttle="2/minute",
        daily_quota=0,
    )
    assert [limits.hit("k", "m", throttled=True).allowed for _ in range(3)] == [True, True, False]
    assert limits.hit("k", "m", throttled=True).reason == "throttled"
    assert limits.hit("k", "m").allowed and limits.remaining_quota("k", "m") is None


def test_unknown_storage_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"rate_limits\.storage"):
        _limits("nosuch://x", "p")
    with pytest.raises(ConfigError, match="not supported"):
        Database("mysql://x/y")


def test_async_quota_path_admits_exactly_q_across_two_limiters(limits_url: str) -> None:
    """The coroutines the gateway awaits keep the exact-quota guarantee (two replicas on Redis)."""
    import asyncio

    prefix = "t" + uuid.uuid4().hex
    limiters = [_limits(limits_url, prefix, daily_quota=23) for _ in range(2)]
    if not limits_url.startswith("redis"):
        limiters = limiters[:1]

    async def one(i: int) -> bool:
        limits = limiters[i % len(limiters)]
        decision, lease = await limits.areserve_quota("k", "m", 1)
        if lease is not None:
            await limits.aconfirm_quota(lease)
        return decision.allowed

    async def run() -> list[bool]:
        try:
            assert (await limiters[0].ahit("k", "m")).allowed
            admitted = list(await asyncio.gather(*(one(i) for i in range(60))))
            refused, _ = await limiters[-1].areserve_quota("k", "m", 1)
            return [*admitted, refused.allowed]
        finally:
            for limits in limiters:
                await limits.aclose()

    *admitted, last = asyncio.run(run())
    assert sum(admitted) == 23 and not last
    assert limiters[0].remaining_quota("k", "m") == 0


@pytest.mark.redis
def test_redis_reservation_and_confirmation_are_one_round_trip_each() -> None:
    from serve.helpers import REDIS_URL, require_server

    require_server("Redis", "127.0.0.1", 6379)
    limits = _limits(REDIS_URL, "t" + uuid.uuid4().hex, daily_quota=5)
    client = limits.storage.storage  # type: ignore[attr-defined]
    calls: list[str] = []
    original = client.execute_command

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(str(args[0]))
        return original(*args, **kwargs)

    client.execute_command = counted
    limits.reserve_quota("k", "m", 1)  # warms the script cache (EVALSHA, maybe SCRIPT LOAD)
    calls.clear()
    decision, lease = limits.reserve_quota("k", "m", 2)
    assert decision.allowed and lease is not None and calls == ["EVALSHA"]
    limits.confirm_quota(lease)
    assert calls == ["EVALSHA", "EVALSHA"]
    assert limits.remaining_quota("k", "m") == 2  # 1 still pending + 2 charged of 5


@pytest.mark.parametrize("strategy", ["fixed-window", "moving-window"])
def test_admission_checks_the_rate_limits_then_reserves_the_quota(
    limits_url: str, strategy: str
) -> None:
    """``aadmit`` answers as ``ahit`` followed by ``areserve_quota`` would: a request refused for
    its rate reserves nothing, one refused for its quota still counted against its rate."""
    import asyncio

    prefix = "t" + uuid.uuid4().hex
    limits = _limits(
        limits_url,
        prefix,
        strategy=strategy,
        per_key_model=("100/second", "3/minute"),
        throttle="1/minute",
        daily_quota=5,
    )

    async def run() -> list[Any]:
        try:
            return [
                await limits.aadmit("k", "m", 2),  # rate 1/3, quota 2/5
                await limits.aadmit("k", "m", 4),  # rate 2/3, quota refused (6 > 5)
                await limits.aadmit("k", "m", 3),  # rate 3/3, quota 5/5
                await limits.aadmit("k", "m", 1),  # rate refused: nothing reserved
                await limits.aadmit("other", "m", 1, throttled=True),
                await limits.aadmit("other", "m", 1, throttled=True),  # the throttle refuses
            ]
        finally:
            await limits.aclose()

    (a, lease_a), (b, lease_b), (c, lease_c), (d, lease_d), (e, _), (f, lease_f) = asyncio.run(
        run()
    )
    assert a.allowed and lease_a is not None and lease_a.queries == 2
    assert not b.allowed and b.reason == "quota" and lease_b is None and b.retry_after_s >= 1
    assert c.allowed and lease_c is not None
    assert not d.allowed and d.reason == "rate_limit" and lease_d is None
    assert 1 <= d.retry_after_s <= 60
    assert e.allowed and not f.allowed and f.reason == "throttled" and lease_f is None
    assert limits.remaining_quota("k", "m") == 0  # 2 + 3 pending, nothing for b or d
    assert not limits.hit("k", "m").allowed  # the refused requests counted: 4 of 3 per minute


@pytest.mark.redis
def test_redis_admission_is_one_script_and_charges_are_summed_per_counter() -> None:
    """Ten concurrent admissions are ten EVALSHA in one pipeline; their ten confirmations are one
    charge of 10 queries; a Redis that lost its scripts (restart, SCRIPT FLUSH) is reloaded."""
    import asyncio

    import redis

    from serve.helpers import REDIS_URL, require_server

    require_server("Redis", "127.0.0.1", 6379)
    server = redis.Redis.from_url(REDIS_URL)
    limits = _limits(REDIS_URL, "t" + uuid.uuid4().hex, strategy="fixed-window", daily_quota=12)

    def evalsha_calls() -> int:
        return int(server.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))

    async def run() -> tuple[int, int, bool]:
        try:
            await limits.aadmit("warm", "m", 1)  # loads the script (NOSCRIPT the first time)
            before = evalsha_calls()
            admitted = await asyncio.gather(*(limits.aadmit("k", "m", 1) for _ in range(10)))
            assert all(d.allowed and lease is not None for d, lease in admitted)
            admissions = evalsha_calls() - before
            for _, lease in admitted:
                assert lease is not None
                limits.confirm_soon(lease)
            await limits.aclose()  # waits for the charges owed
            charges = evalsha_calls() - before - admissions
            server.script_flush()
            after_flush, _ = await limits.aadmit("k", "m", 1)
            return admissions, charges, after_flush.allowed
        finally:
            await limits.aclose()

    admissions, charges, after_flush = asyncio.run(run())
    assert (admissions, charges) == (10, 1)
    assert after_flush  # reloaded and answered
    assert limits.remaining_quota("k", "m") == 1  # 10 charged + 1 pending of 12
    server.close()


def test_in_process_limits_start_no_timer_threads() -> None:
    before = threading.active_count()
    limits = _limits("memory://", "p", per_key_model=("1000/second",), daily_quota=10_000)
    for _ in range(200):
        assert limits.hit("k", "m").allowed
        assert limits.charge_quota("k", "m").allowed
    assert threading.active_count() <= before + 1  # limits' constructor starts one timer


@pytest.mark.parametrize("strategy", ["fixed-window", "moving-window"])
def test_awaited_rate_limits_count_with_the_synchronous_ones(
    limits_url: str, strategy: str
) -> None:
    """The gateway's coroutine and the synchronous call share one count (same keys, same rules)."""
    import asyncio

    limits = _limits(
        limits_url,
        "t" + uuid.uuid4().hex,
        strategy=strategy,
        per_key_model=("100/second", "3/minute"),
        throttle="2/minute",
    )

    async def run() -> list[Any]:
        try:
            return [await limits.ahit("k", "m", throttled=i >= 2) for i in range(4)]
        finally:
            await limits.aclose()

    assert limits.hit("k", "m").allowed  # 1 of 3 per minute
    first, second, refused, _ = asyncio.run(run())
    assert first.allowed and second.allowed  # 2 and 3 of 3
    assert not refused.allowed and refused.reason == "rate_limit"  # 3/minute before the throttle
    assert 1 <= refused.retry_after_s <= 60
    assert not limits.hit("k", "m").allowed

    other = _limits(limits_url, "t" + uuid.uuid4().hex, strategy=strategy, throttle="1/minute")

    async def throttled() -> list[Any]:
        try:
            return [await other.ahit("k", "m", throttled=True) for _ in range(2)]
        finally:
            await other.aclose()

    allowed, refused = asyncio.run(throttled())
    assert allowed.allowed and not refused.allowed and refused.reason == "throttled"
