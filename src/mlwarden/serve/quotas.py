"""Per key, per model rate limits and daily quotas on a ``limits`` storage chosen by URI.

``memory://`` keeps counters in the process; ``redis://host:port`` shares them between replicas.
Every check is a single ``hit``: on Redis the fixed-window counter is an ``INCR`` with expiry in
one Lua script and the moving window is acquired in one Lua script, so two processes racing for
the last unit of quota can never both get it: at most ``quota`` requests are admitted.

The per second/minute limits count requests and are checked before the body is read; the daily
quota counts model queries (one per input in the batch) and is reserved once the body is parsed,
so a request refused for its rate or its input does not spend quota.

Only what is audited is charged. A request's queries are first *reserved*
(:meth:`RateLimits.reserve_quota`): they count against the quota at once, so concurrent requests
are never admitted past it, but they sit in a short-lived pending counter. Once the request's
audit entry is committed the middleware *confirms* the reservation (moves it to the daily
counter); when the audit commit fails it *releases* it. A process killed between the two
(``kill -9`` under load) leaves reservations that nobody confirms: they stop counting after
``quota_lease_s`` (one to two leases), so a crash never spends quota on a request the audit log
does not hold. The reverse can happen: a process killed after the commit and before the
confirmation has audited requests that are never charged (at most the requests in flight).

Cost on the request path. On Redis a reservation (increment, read the three counters, give the
increment back on refusal, the reset time) is one Lua script, and a confirmation (charge, drop
the reservation) another: one round trip each, atomic in Redis. With the fixed-window strategy
the request's rate limits (per second, per minute, the throttle) are one script too; the moving
window goes through ``limits``, one round trip per limit. The gateway calls the ``a``-
prefixed coroutines (:meth:`RateLimits.ahit`, :meth:`RateLimits.areserve_quota`, ...), which
on Redis use ``limits``' asyncio storage (``redis.asyncio``), so a round trip never blocks the
event loop; on ``memory://`` they are the synchronous calls (no I/O). The in-process storage
expires its counters inline instead of starting a timer thread every 10 ms as ``limits``'
``MemoryStorage`` does (a thread start per few requests was the largest single cost of the
embedded gateway's request path).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from limits import RateLimitItem, RateLimitItemPerDay, parse
from limits.aio import strategies as aio_strategies
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter, RateLimiter

from mlwarden.errors import ConfigError
from mlwarden.serve.config import RateLimitConfig

__all__ = ["LimitDecision", "QuotaLease", "RateLimits"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LimitDecision:
    """Whether a request may proceed; when not, which limit and seconds until it resets."""

    allowed: bool
    reason: str = ""
    retry_after_s: int = 0


@dataclass(frozen=True)
class QuotaLease:
    """Queries reserved against a daily quota, to confirm once audited (or release)."""

    quota_key: str
    pending_key: str
    queries: int


class InlineExpiryMemoryStorage(MemoryStorage):
    """``limits``' in-process storage, with expired entries swept inline (no timer thread).

    ``MemoryStorage`` starts a ``threading.Timer`` on every write when its previous one has
    fired (every 10 ms): under load that is a thread start every few requests. Counters already
    expire on read (:meth:`get`), so the sweep only bounds memory; here it runs inline on a
    write at most once a second.
    """

    SWEEP_EVERY_S = 1.0

    def __init__(self, uri: str | None = None, **options: Any) -> None:
        super().__init__(uri, **options)
        self._next_sweep = time.monotonic() + self.SWEEP_EVERY_S

    def _MemoryStorage__schedule_expiry(self) -> None:  # overrides the name-mangled hook
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + self.SWEEP_EVERY_S
            self._MemoryStorage__expire_events()  # type: ignore[attr-defined]


#: Reserve: add the batch to this lease bucket's pending counter, admit when confirmed plus both
#: live buckets stay within the quota, else give it back and say when the day's window resets.
#: KEYS: pending (this bucket), pending (previous bucket), confirmed. ARGV: queries, quota,
#: pending expiry (s), day (s). Returns {admitted (0/1), seconds until the confirmed key resets}.
_RESERVE_LUA = """
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('TTL', KEYS[1]) == -1 then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
local used = n + tonumber(redis.call('GET', KEYS[2]) or '0')
  + tonumber(redis.call('GET', KEYS[3]) or '0')
if used <= tonumber(ARGV[2]) then return {1, 0} end
redis.call('DECRBY', KEYS[1], ARGV[1])
local ttl = redis.call('TTL', KEYS[3])
if ttl < 0 then ttl = tonumber(ARGV[4]) end
return {0, ttl}
"""
#: Fixed-window hits of several limits in one round trip, stopping at the first exhausted one
#: (as ``limits``' FixedWindowRateLimiter.hit would, item by item, on the same keys).
#: KEYS: the limits' window keys. ARGV: limit, expiry (s) per key.
#: Returns {0, 0} when admitted, else {index of the exhausted limit (1-based), seconds to reset}.
_FIXED_HITS_LUA = """
for i, key in ipairs(KEYS) do
  local n = redis.call('INCRBY', key, 1)
  local ttl = redis.call('TTL', key)
  if ttl == -1 then
    ttl = tonumber(ARGV[2 * i])
    redis.call('EXPIRE', key, ttl)
  end
  if n > tonumber(ARGV[2 * i - 1]) then return {i, ttl} end
end
return {0, 0}
"""
#: Admission in one round trip: the fixed-window rate limits as in ``_FIXED_HITS_LUA`` and, when
#: every one admits the request, the quota reservation as in ``_RESERVE_LUA``.
#: KEYS: the n limits' window keys, then pending (this bucket), pending (previous), confirmed.
#: ARGV: n, limit and expiry (s) per window key, then queries, quota, pending expiry (s), day (s).
#: Returns {0, 0, 0} when admitted, {1, index of the exhausted limit, seconds to reset} or
#: {2, 0, seconds until the confirmed key resets} when the quota refuses.
_ADMIT_LUA = """
local n = tonumber(ARGV[1])
for i = 1, n do
  local c = redis.call('INCRBY', KEYS[i], 1)
  local ttl = redis.call('TTL', KEYS[i])
  if ttl == -1 then
    ttl = tonumber(ARGV[2 * i + 1])
    redis.call('EXPIRE', KEYS[i], ttl)
  end
  if c > tonumber(ARGV[2 * i]) then return {1, i, ttl} end
end
local q = 2 * n + 2
local pending = KEYS[n + 1]
local used = redis.call('INCRBY', pending, ARGV[q])
if redis.call('TTL', pending) == -1 then redis.call('EXPIRE', pending, ARGV[q + 2]) end
used = used + tonumber(redis.call('GET', KEYS[n + 2]) or '0')
  + tonumber(redis.call('GET', KEYS[n + 3]) or '0')
if used <= tonumber(ARGV[q + 1]) then return {0, 0, 0} end
redis.call('DECRBY', pending, ARGV[q])
local ttl = redis.call('TTL', KEYS[n + 3])
if ttl < 0 then ttl = tonumber(ARGV[q + 3]) end
return {2, 0, ttl}
"""
#: Confirm (ARGV[1] > 0: charge and drop the reservation) or release (ARGV[1] == 0: drop it).
#: KEYS: confirmed, pending. ARGV: charge, queries, day (s), pending expiry (s).
_SETTLE_LUA = """
if tonumber(ARGV[1]) > 0 then
  redis.call('INCRBY', KEYS[1], ARGV[1])
  if redis.call('TTL', KEYS[1]) == -1 then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
end
redis.call('DECRBY', KEYS[2], ARGV[2])
if redis.call('TTL', KEYS[2]) == -1 then redis.call('EXPIRE', KEYS[2], ARGV[4]) end
return 1
"""


class _AsyncRedis:
    """``limits``' asyncio Redis storage, its limiters and the scripts, for one event loop.

    Script calls made in the same loop turn (the admissions and charges of concurrent requests)
    go to Redis together in one pipeline: one round trip and one write for all of them, each
    still answered on its own. They are sent as plain ``EVALSHA`` (redis-py's pipelined
    scripts ask ``SCRIPT EXISTS`` first, a second round trip per pipeline); a script the server
    does not hold (``NOSCRIPT``: Redis restarted or flushed its scripts) is loaded and the
    calls that needed it are sent again. redis-py's per-command cost (about 0.1-0.2 ms of CPU)
    was the largest part of the replica setup's request path.
    """

    def __init__(self, uri: str, moving: bool) -> None:
        from limits.aio.storage import RedisStorage as AsyncRedisStorage

        self.loop = asyncio.get_running_loop()
        self.storage = AsyncRedisStorage("async+" + uri, implementation="redispy")
        self.rate: aio_strategies.RateLimiter = (
            aio_strategies.MovingWindowRateLimiter(self.storage)
            if moving
            else aio_strategies.FixedWindowRateLimiter(self.storage)
        )
        self.fixed = aio_strategies.FixedWindowRateLimiter(self.storage)
        self.client: Any = cast(Any, self.storage).bridge.storage  # redis.asyncio.Redis
        self.reserve = _Script(_RESERVE_LUA)
        self.settle = _Script(_SETTLE_LUA)
        self.fixed_hits = _Script(_FIXED_HITS_LUA)
        self.admit = _Script(_ADMIT_LUA)
        self._ready: list[tuple[_Script, list[Any], asyncio.Future[Any]]] = []
        self._flushing: set[asyncio.Task[None]] = set()  # strong references while they run

    async def run(self, script: _Script, keys: list[str], args: list[int]) -> Any:
        """Run ``script``, sent with the other calls of this loop turn in one pipeline."""
        return await self.submit(script, keys, args)

    def submit(self, script: _Script, keys: list[str], args: list[int]) -> asyncio.Future[Any]:
        """Queue ``script`` for this loop turn's pipeline now; the future gets its answer."""
        future: asyncio.Future[Any] = self.loop.create_future()
        self._ready.append((script, [script.sha, len(keys), *keys, *args], future))
        if len(self._ready) == 1:  # the flush starts next turn, with every call made until then
            self._flushing.add(task := self.loop.create_task(self._flush()))
            task.add_done_callback(self._flushing.discard)
        return future

    async def _evalsha(self, calls: list[list[Any]]) -> list[Any]:
        """Each call's answer, or the error Redis gave for it."""
        from redis.exceptions import ResponseError

        if len(calls) == 1:
            try:
                return [await self.client.execute_command("EVALSHA", *calls[0])]
            except ResponseError as exc:
                return [exc]
        async with self.client.pipeline(transaction=False) as pipe:
            for call in calls:
                pipe.execute_command("EVALSHA", *call)
            return list(await pipe.execute(raise_on_error=False))

    async def _flush(self) -> None:
        from redis.exceptions import NoScriptError

        ready, self._ready = self._ready, []
        try:
            answers = await self._evalsha([call for _, call, _ in ready])
            missing = [i for i, a in enumerate(answers) if isinstance(a, NoScriptError)]
            if missing:
                for script in {ready[i][0] for i in missing}:
                    await self.client.script_load(script.text)
                again = await self._evalsha([ready[i][1] for i in missing])
                for i, answer in zip(missing, again, strict=True):
                    answers[i] = answer
        except Exception as exc:  # every caller fails (the request answers 500/503)
            answers = [exc] * len(ready)
        for (_, _, future), answer in zip(ready, answers, strict=True):
            if future.done():
                continue
            if isinstance(answer, Exception):
                future.set_exception(answer)
            else:
                future.set_result(answer)


class _Script:
    """A Lua script and its SHA-1, the name ``EVALSHA`` runs it by."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


class RateLimits:
    """Apply a :class:`RateLimitConfig` to (key, model) pairs.

    ``clock`` (seconds) places quota reservations in lease buckets; tests pass their own.

    Raises
    ------
    ConfigError
        The storage URI is unknown or its driver is missing.
    """

    def __init__(self, config: RateLimitConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        try:
            storage = (
                InlineExpiryMemoryStorage()
                if config.storage.rstrip("/") == "memory:"
                else storage_from_string(config.storage)
            )
        except Exception as exc:  # limits raises ConfigurationError / ImportError
            raise ConfigError(
                f"rate_limits.storage {config.storage!r}: {exc} (use memory:// or redis://HOST:PORT)"
            ) from exc
        if not isinstance(storage, Storage):  # an async:// URI: not for this synchronous path
            raise ConfigError(
                f"rate_limits.storage {config.storage!r} must be memory:// or redis://HOST:PORT"
            )
        self.storage: Storage = storage
        self.rate: RateLimiter = (
            MovingWindowRateLimiter(self.storage)
            if config.strategy == "moving-window"
            else FixedWindowRateLimiter(self.storage)
        )
        self.fixed = FixedWindowRateLimiter(self.storage)
        self.items: tuple[RateLimitItem, ...] = tuple(parse(text) for text in config.per_key_model)
        self.throttle_item = parse(config.throttle)
        self.quota_item = RateLimitItemPerDay(config.daily_quota) if config.daily_quota else None
        #: a Redis client (``redis.Redis``) when the storage is Redis: quotas run as Lua scripts
        self._redis: Any = None
        if hasattr(self.storage, "prefixed_key") and config.storage.startswith("redis"):
            self._redis = cast(Any, self.storage).storage  # redis.Redis
            self._reserve = self._redis.register_script(_RESERVE_LUA)
            self._settle = self._redis.register_script(_SETTLE_LUA)
        self._aio: _AsyncRedis | None = None
        #: queries audited and not yet charged, by (quota counter, pending counter)
        self._owed: dict[tuple[str, str], int] = {}
        self._charging: asyncio.Task[None] | None = None

    @property
    def remote(self) -> bool:
        """Whether the counters live in another process (Redis): each call is a round trip."""
        return self._redis is not None

    def _key(self, key: str) -> str:
        """The storage's own name for ``key`` (Redis prefixes every key)."""
        return str(cast(Any, self.storage).prefixed_key(key)) if self._redis is not None else key

    def _retry_after(self, limiter: RateLimiter, item: RateLimitItem, ids: tuple[str, ...]) -> int:
        reset = limiter.get_window_stats(item, *ids).reset_time
        return max(1, math.ceil(reset - time.time()))

    def hit(self, key_id: str, model: str, *, throttled: bool = False) -> LimitDecision:
        """Count one request of ``key_id`` on ``model`` against the rate limits.

        Returns a refusal with Retry-After seconds when a per second/minute limit (or the
        monitor's throttle) is exhausted. The daily quota is charged separately, once the
        request's batch size is known (:meth:`charge_quota`).
        """
        ids = (self.config.key_prefix, key_id, model)
        items = (*self.items, self.throttle_item) if throttled else self.items
        for item in items:
            if not self.rate.hit(item, *ids):
                reason = "throttled" if item is self.throttle_item and throttled else "rate_limit"
                return LimitDecision(False, reason, self._retry_after(self.rate, item, ids))
        return LimitDecision(True)

    def _quota_keys(self, key_id: str, model: str) -> tuple[tuple[str, ...], str, int]:
        assert self.quota_item is not None
        ids = (self.config.key_prefix, key_id, model, "quota")
        return ids, self.quota_item.key_for(*ids), int(self.clock() // self.config.quota_lease_s)

    def _pending_key(self, quota_key: str, bucket: int) -> str:
        return f"{quota_key}/pending/{bucket}"

    def _used(self, quota_key: str, bucket: int) -> int:
        """Confirmed queries plus live reservations (this lease bucket and the one before).

        Three reads, not one snapshot: a confirmation moves queries from a pending counter to the
        confirmed one (confirmed first, then pending), so the pending counters are read *before*
        the confirmed one: a query moving in between is counted twice (a refusal that could
        have fitted), never zero times (an admission past the quota).
        """
        pending = self.storage.get(self._pending_key(quota_key, bucket)) + self.storage.get(
            self._pending_key(quota_key, bucket - 1)
        )
        return pending + self.storage.get(quota_key)

    def reserve_quota(
        self, key_id: str, model: str, queries: int = 1
    ) -> tuple[LimitDecision, QuotaLease | None]:
        """Reserve ``queries`` model queries (the batch size) against the key's daily quota.

        The reservation is one atomic increment of the current lease bucket's pending counter
        (``INCRBY`` on Redis), made *before* the sum of confirmed and pending queries is read,
        so every request already admitted is in the sum and concurrent requests on any number
        of replicas are never admitted past the quota. A refused batch gives its increment
        back (a client asking for more than it has left keeps the rest); while it does, a
        concurrent request may be refused that would have fitted (never the reverse).

        Returns the decision and, when admitted, the lease to :meth:`confirm_quota` once the
        request is audited (or :meth:`release_quota`); ``None`` without a quota.
        """
        if queries < 1:
            raise ValueError(f"queries must be >= 1, got {queries}")
        if self.quota_item is None:
            return LimitDecision(True), None
        ids, quota_key, bucket = self._quota_keys(key_id, model)
        pending = self._pending_key(quota_key, bucket)
        expiry = 2 * self.config.quota_lease_s
        if self._redis is not None:
            keys, args = self._reserve_args(quota_key, bucket, queries)
            return self._reserved(self._reserve(keys=keys, args=args), quota_key, pending, queries)
        self.storage.incr(pending, expiry, amount=queries)
        if self._used(quota_key, bucket) <= self.config.daily_quota:
            return LimitDecision(True), QuotaLease(quota_key, pending, queries)
        self.storage.incr(pending, expiry, amount=-queries)
        return (
            LimitDecision(False, "quota", self._retry_after(self.fixed, self.quota_item, ids)),
            None,
        )

    def _reserve_args(
        self, quota_key: str, bucket: int, queries: int
    ) -> tuple[list[str], list[int]]:
        assert self.quota_item is not None
        keys = [
            self._key(self._pending_key(quota_key, bucket)),
            self._key(self._pending_key(quota_key, bucket - 1)),
            self._key(quota_key),
        ]
        args = [
            queries,
            self.config.daily_quota,
            2 * self.config.quota_lease_s,
            self.quota_item.get_expiry(),
        ]
        return keys, args

    @staticmethod
    def _reserved(
        answer: Any, quota_key: str, pending: str, queries: int
    ) -> tuple[LimitDecision, QuotaLease | None]:
        admitted, ttl = int(answer[0]), int(answer[1])
        if admitted:
            return LimitDecision(True), QuotaLease(quota_key, pending, queries)
        return LimitDecision(False, "quota", max(1, ttl)), None

    def _settle_args(self, lease: QuotaLease, charge: bool) -> tuple[list[str], list[int]]:
        assert self.quota_item is not None
        keys = [self._key(lease.quota_key), self._key(lease.pending_key)]
        args = [
            lease.queries if charge else 0,
            lease.queries,
            self.quota_item.get_expiry(),
            2 * self.config.quota_lease_s,
        ]
        return keys, args

    def confirm_quota(self, lease: QuotaLease) -> None:
        """Charge a reservation for good (its request's audit entry is committed)."""
        assert self.quota_item is not None
        if self._redis is not None:
            self._settle(*self._settle_args(lease, True))
            return
        self.storage.incr(lease.quota_key, self.quota_item.get_expiry(), amount=lease.queries)
        self.release_quota(lease)

    def release_quota(self, lease: QuotaLease) -> None:
        """Give a reservation back (its request could not be audited)."""
        if self._redis is not None:
            self._settle(*self._settle_args(lease, False))
            return
        self.storage.incr(lease.pending_key, 2 * self.config.quota_lease_s, amount=-lease.queries)

    def charge_quota(self, key_id: str, model: str, queries: int = 1) -> LimitDecision:
        """Reserve and confirm at once (for callers that audit nothing themselves)."""
        decision, lease = self.reserve_quota(key_id, model, queries)
        if lease is not None:
            self.confirm_quota(lease)
        return decision

    def remaining_quota(self, key_id: str, model: str) -> int | None:
        """Queries left today for ``key_id`` on ``model`` (``None`` without a quota)."""
        if self.quota_item is None:
            return None
        _, quota_key, bucket = self._quota_keys(key_id, model)
        return max(0, self.config.daily_quota - self._used(quota_key, bucket))

    # -- the gateway's path: coroutines, no blocking round trip on the event loop -----------
    def _async_redis(self) -> _AsyncRedis:
        parts = self._aio
        if parts is None or parts.loop is not asyncio.get_running_loop():
            parts = self._aio = _AsyncRedis(
                self.config.storage, self.config.strategy == "moving-window"
            )
        return parts

    async def ahit(self, key_id: str, model: str, *, throttled: bool = False) -> LimitDecision:
        """:meth:`hit` for the event loop (``limits``' asyncio storage on Redis)."""
        if self._redis is None:
            return self.hit(key_id, model, throttled=throttled)
        parts = self._async_redis()
        ids = (self.config.key_prefix, key_id, model)
        items = (*self.items, self.throttle_item) if throttled else self.items
        if self.config.strategy == "fixed-window":  # every limit in one round trip
            keys = [self._key(item.key_for(*ids)) for item in items]
            args = [n for item in items for n in (item.amount, item.get_expiry())]
            exhausted, ttl = (int(v) for v in await parts.run(parts.fixed_hits, keys, args))
            if not exhausted:
                return LimitDecision(True)
            item = items[exhausted - 1]
            reason = "throttled" if item is self.throttle_item and throttled else "rate_limit"
            return LimitDecision(False, reason, max(1, ttl))
        for item in items:
            if not await parts.rate.hit(item, *ids):
                reason = "throttled" if item is self.throttle_item and throttled else "rate_limit"
                reset = (await parts.rate.get_window_stats(item, *ids)).reset_time
                return LimitDecision(False, reason, max(1, math.ceil(reset - time.time())))
        return LimitDecision(True)

    async def areserve_quota(
        self, key_id: str, model: str, queries: int = 1
    ) -> tuple[LimitDecision, QuotaLease | None]:
        """:meth:`reserve_quota` for the event loop (one Lua script, awaited, on Redis)."""
        if self._redis is None or self.quota_item is None or queries < 1:
            return self.reserve_quota(key_id, model, queries)
        _, quota_key, bucket = self._quota_keys(key_id, model)
        keys, args = self._reserve_args(quota_key, bucket, queries)
        parts = self._async_redis()
        answer = await parts.run(parts.reserve, keys, args)
        return self._reserved(answer, quota_key, self._pending_key(quota_key, bucket), queries)

    async def aadmit(
        self, key_id: str, model: str, queries: int, *, throttled: bool = False
    ) -> tuple[LimitDecision, QuotaLease | None]:
        """:meth:`ahit` then :meth:`areserve_quota`, in one round trip where the storage allows.

        On Redis with the fixed-window strategy and a daily quota, the rate limits and the
        reservation are one script (:data:`_ADMIT_LUA`): the request is counted against its
        rate limits, and its queries are reserved only if every limit admits it, as the two
        calls in a row would. Elsewhere it is those two calls.
        """
        return await self.admission(key_id, model, queries, throttled=throttled)

    def admission(
        self, key_id: str, model: str, queries: int, *, throttled: bool = False
    ) -> Awaitable[tuple[LimitDecision, QuotaLease | None]]:
        """:meth:`aadmit`, started now: call on the event loop, await the answer later.

        On the one-script path the call joins this loop turn's pipeline at once, so the caller
        can do other work (the gateway runs the model) while Redis answers.
        """
        if queries < 1:
            raise ValueError(f"queries must be >= 1, got {queries}")
        if self._redis is None or self.quota_item is None or self.config.strategy != "fixed-window":
            return asyncio.ensure_future(self._admit_in_two(key_id, model, queries, throttled))
        parts = self._async_redis()
        ids = (self.config.key_prefix, key_id, model)
        items = (*self.items, self.throttle_item) if throttled else self.items
        _, quota_key, bucket = self._quota_keys(key_id, model)
        quota_keys, quota_args = self._reserve_args(quota_key, bucket, queries)
        keys = [self._key(item.key_for(*ids)) for item in items] + quota_keys
        args = [len(items)]
        args += [n for item in items for n in (item.amount, item.get_expiry())]
        answer = parts.submit(parts.admit, keys, [*args, *quota_args])
        lease = QuotaLease(quota_key, self._pending_key(quota_key, bucket), queries)
        return self._admitted(answer, items, throttled, lease)

    async def _admit_in_two(
        self, key_id: str, model: str, queries: int, throttled: bool
    ) -> tuple[LimitDecision, QuotaLease | None]:
        limit = await self.ahit(key_id, model, throttled=throttled)
        if not limit.allowed:
            return limit, None
        return await self.areserve_quota(key_id, model, queries)

    async def _admitted(
        self,
        answer: asyncio.Future[Any],
        items: tuple[RateLimitItem, ...],
        throttled: bool,
        lease: QuotaLease,
    ) -> tuple[LimitDecision, QuotaLease | None]:
        outcome, index, ttl = (int(v) for v in await answer)
        if outcome == 0:
            return LimitDecision(True), lease
        if outcome == 2:
            return LimitDecision(False, "quota", max(1, ttl)), None
        item = items[index - 1]
        reason = "throttled" if item is self.throttle_item and throttled else "rate_limit"
        return LimitDecision(False, reason, max(1, ttl)), None

    def confirm_soon(self, lease: QuotaLease) -> None:
        """Charge ``lease`` (its request is audited) without waiting: call on the event loop.

        In-process storage: now. Redis: the leases confirmed during one loop turn are summed
        per quota counter and charged in the next turn, one script per counter (under load,
        one charge for many requests). Until then the reservation already counts against the
        quota (pending); if the process dies first, it expires with its lease and the audited
        requests go uncharged (the documented failure direction). :meth:`aclose` waits for
        the charges still owed.
        """
        if self._redis is None:
            self.confirm_quota(lease)
            return
        counter = (lease.quota_key, lease.pending_key)
        self._owed[counter] = self._owed.get(counter, 0) + lease.queries
        if self._charging is None:
            self._charging = asyncio.get_running_loop().create_task(self._charge_owed())

    async def _charge_owed(self) -> None:
        try:
            while self._owed:
                owed, self._owed = self._owed, {}
                settled = await asyncio.gather(
                    *(
                        self.aconfirm_quota(QuotaLease(quota_key, pending_key, queries))
                        for (quota_key, pending_key), queries in owed.items()
                    ),
                    return_exceptions=True,
                )
                failed = [r for r in settled if isinstance(r, BaseException)]
                if failed:
                    logger.error(
                        "quota confirmation failed (%s); the reservation expires with its lease",
                        type(failed[0]).__name__,
                    )
        finally:
            self._charging = None

    async def aconfirm_quota(self, lease: QuotaLease) -> None:
        """:meth:`confirm_quota` for the event loop."""
        if self._redis is None:
            self.confirm_quota(lease)
            return
        keys, args = self._settle_args(lease, True)
        parts = self._async_redis()
        await parts.run(parts.settle, keys, args)

    async def arelease_quota(self, lease: QuotaLease) -> None:
        """:meth:`release_quota` for the event loop."""
        if self._redis is None:
            self.release_quota(lease)
            return
        keys, args = self._settle_args(lease, False)
        parts = self._async_redis()
        await parts.run(parts.settle, keys, args)

    async def aclose(self) -> None:
        """Charge what :meth:`confirm_soon` still owes, close the asyncio Redis connections.

        Call in the loop that opened them (idempotent).
        """
        charging = self._charging
        if charging is not None and charging.get_loop() is asyncio.get_running_loop():
            await asyncio.wait({charging}, timeout=10.0)
        parts, self._aio = self._aio, None
        if parts is not None and parts.loop is asyncio.get_running_loop():
            await parts.client.aclose()

    def check_storage(self) -> bool:
        """Whether the storage answers (``/healthz``)."""
        try:
            return bool(self.storage.check())
        except Exception:
            return False
