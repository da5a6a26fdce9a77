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
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from limits import RateLimitItem, RateLimitItemPerDay, parse
from limits.storage import Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter, RateLimiter

from mlwarden.errors import ConfigError
from mlwarden.serve.config import RateLimitConfig

__all__ = ["LimitDecision", "QuotaLease", "RateLimits"]


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
            storage = storage_from_string(config.storage)
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
        self.storage.incr(pending, expiry, amount=queries)
        if self._used(quota_key, bucket) <= self.config.daily_quota:
            return LimitDecision(True), QuotaLease(quota_key, pending, queries)
        self.storage.incr(pending, expiry, amount=-queries)
        return (
            LimitDecision(False, "quota", self._retry_after(self.fixed, self.quota_item, ids)),
            None,
        )

    def confirm_quota(self, lease: QuotaLease) -> None:
        """Charge a reservation for good (its request's audit entry is committed)."""
        assert self.quota_item is not None
        self.storage.incr(lease.quota_key, self.quota_item.get_expiry(), amount=lease.queries)
        self.release_quota(lease)

    def release_quota(self, lease: QuotaLease) -> None:
        """Give a reservation back (its request could not be audited)."""
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

    def check_storage(self) -> bool:
        """Whether the storage answers (``/healthz``)."""
        try:
            return bool(self.storage.check())
        except Exception:
            return False
