"""Per key, per model rate limits and daily quotas on a ``limits`` storage chosen by URI.

``memory://`` keeps counters in the process; ``redis://host:port`` shares them between replicas.
Every check is a single ``hit``: on Redis the fixed-window counter is an ``INCR`` with expiry in
one Lua script and the moving window is acquired in one Lua script, so two processes racing for
the last unit of quota can never both get it: at most ``quota`` requests are admitted.

The per second/minute limits count requests and are checked before the body is read; the daily
quota counts model queries (one per input in the batch) and is charged once the body is parsed,
so a request refused for its rate or its input does not spend quota.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, RateLimitItemPerDay, parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter, RateLimiter

from mlwarden.errors import ConfigError
from mlwarden.serve.config import RateLimitConfig

__all__ = ["LimitDecision", "RateLimits"]


@dataclass(frozen=True)
class LimitDecision:
    """Whether a request may proceed; when not, which limit and seconds until it resets."""

    allowed: bool
    reason: str = ""
    retry_after_s: int = 0


class RateLimits:
    """Apply a :class:`RateLimitConfig` to (key, model) pairs.

    Raises
    ------
    ConfigError
        The storage URI is unknown or its driver is missing.
    """

    def __init__(self, config: RateLimitConfig) -> None:
        self.config = config
        try:
            self.storage = storage_from_string(config.storage)
        except Exception as exc:  # limits raises ConfigurationError / ImportError
            raise ConfigError(
                f"rate_limits.storage {config.storage!r}: {exc} (use memory:// or redis://HOST:PORT)"
            ) from exc
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

    def charge_quota(self, key_id: str, model: str, queries: int = 1) -> LimitDecision:
        """Charge ``queries`` model queries (the batch size) to the key's daily quota.

        One atomic increment by ``queries`` (``INCRBY`` on Redis): a batch is admitted only if
        the counter after its own increment is within the quota, so concurrent requests on any
        number of replicas are never admitted past it. A refused batch gives its increment
        back, so a client that asks for more than it has left keeps the rest; while a refusal
        is being given back, a concurrent request may be refused that would have fitted
        (never the reverse).
        """
        if queries < 1:
            raise ValueError(f"queries must be >= 1, got {queries}")
        if self.quota_item is None:
            return LimitDecision(True)
        ids = (self.config.key_prefix, key_id, model, "quota")
        if self.fixed.hit(self.quota_item, *ids, cost=queries):
            return LimitDecision(True)
        self.storage.incr(
            self.quota_item.key_for(*ids), self.quota_item.get_expiry(), amount=-queries
        )
        return LimitDecision(False, "quota", self._retry_after(self.fixed, self.quota_item, ids))

    def remaining_quota(self, key_id: str, model: str) -> int | None:
        """Queries left today for ``key_id`` on ``model`` (``None`` without a quota)."""
        if self.quota_item is None:
            return None
        ids = (self.config.key_prefix, key_id, model, "quota")
        return int(self.fixed.get_window_stats(self.quota_item, *ids).remaining)

    def check_storage(self) -> bool:
        """Whether the storage answers (``/healthz``)."""
        try:
            return bool(self.storage.check())
        except Exception:
            return False
