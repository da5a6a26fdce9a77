"""Per key, per model rate limits and daily quotas on a ``limits`` storage chosen by URI.

``memory://`` keeps counters in the process; ``redis://host:port`` shares them between replicas.
Every check is a single ``hit``: on Redis the fixed-window counter is an ``INCR`` with expiry in
one Lua script and the moving window is acquired in one Lua script, so two processes racing for
the last unit of quota can never both get it: at most ``quota`` requests are admitted.

The per second/minute limits are checked before the daily quota, so a request refused for its
rate does not spend quota.
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
        """Count one request of ``key_id`` on ``model``, or refuse it with Retry-After seconds."""
        ids = (self.config.key_prefix, key_id, model)
        items = (*self.items, self.throttle_item) if throttled else self.items
        for item in items:
            if not self.rate.hit(item, *ids):
                reason = "throttled" if item is self.throttle_item and throttled else "rate_limit"
                return LimitDecision(False, reason, self._retry_after(self.rate, item, ids))
        if self.quota_item is not None and not self.fixed.hit(self.quota_item, *ids, "quota"):
            return LimitDecision(
                False, "quota", self._retry_after(self.fixed, self.quota_item, (*ids, "quota"))
            )
        return LimitDecision(True)

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
