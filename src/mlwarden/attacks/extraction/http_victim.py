"""A model behind a prediction API over HTTP (``mlwarden serve`` or any API with its contract).

The client counts every query the API answers, waits out short rate limits (``429`` with a
``Retry-After`` in delta-seconds or as an HTTP date), and stops the attack with
:class:`~mlwarden.attacks.extraction.victim.QueryRefused` on a long wait (the daily quota), a
``403`` (blocked key) or an unreachable server, keeping what was answered.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import Any

import numpy as np

from mlwarden.attacks.extraction.victim import Answer, QueryRefused, Victim, targets_from_response
from mlwarden.errors import AttackError

__all__ = ["DEFAULT_RETRY_AFTER_S", "MAX_RETRY_AFTER_S", "HttpVictim", "retry_after_seconds"]

logger = logging.getLogger(__name__)

#: Wait when a 429 carries no usable ``Retry-After`` (missing, malformed, negative).
DEFAULT_RETRY_AFTER_S = 1.0
#: Longest wait a ``Retry-After`` is read as (one day): a far-off date is a refusal either way.
MAX_RETRY_AFTER_S = 86_400.0


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float:
    """Seconds to wait from a ``Retry-After`` header (RFC 9110, section 10.2.3).

    Parameters
    ----------
    value
        The header: delta-seconds (``120``; a decimal such as ``1.5`` is accepted too) or an
        HTTP date (``Wed, 21 Oct 2026 07:28:00 GMT``).
    now
        The current UNIX time a date is measured from (default: ``time.time()``).

    Returns
    -------
    float
        The wait in ``[0, MAX_RETRY_AFTER_S]``: a date in the past is ``0``, a wait beyond a day
        is clamped to one day, and a missing, malformed or negative value is
        :data:`DEFAULT_RETRY_AFTER_S`.
    """
    if value is None or not value.strip():
        return DEFAULT_RETRY_AFTER_S
    text = value.strip()
    seconds: float | None
    try:
        seconds = float(text)
    except ValueError:
        seconds = _seconds_until(text, time.time() if now is None else now)
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        logger.warning(
            "unreadable Retry-After %r; waiting %.0f s", text[:64], DEFAULT_RETRY_AFTER_S
        )
        return DEFAULT_RETRY_AFTER_S
    return min(seconds, MAX_RETRY_AFTER_S)


def _seconds_until(text: str, now: float) -> float | None:
    """Seconds from ``now`` to the HTTP date ``text`` (``0`` if past), ``None`` if not a date."""
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a date without a zone is read as UTC
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - now)


class HttpVictim(Victim):
    """A model behind ``mlwarden serve`` (or any API with the same contract).

    ``POST {url}/v1/models/{model}/predict`` with ``Authorization: Bearer KEY`` and body
    ``{"inputs": [...]}``. A 429 is retried after its ``Retry-After`` (delta-seconds or an HTTP
    date, read by :func:`retry_after_seconds`) when that is at most
    ``max_retry_wait_s`` (the rate limit); a longer wait (the daily quota) or a 403 (blocked)
    stops the attack with :class:`QueryRefused`, keeping what was answered.

    Parameters
    ----------
    url
        The gateway's base URL, e.g. ``http://127.0.0.1:8000``.
    model
        The served model's name.
    api_key
        The API key; sent only in the ``Authorization`` header, never logged or reported.
    input_shape, n_classes, clip_range
        The model's input description; read from ``GET /v1/models`` when not given.
    batch_size
        Inputs per request.
    max_retry_wait_s
        Longest single ``Retry-After`` the attack waits for.
    max_total_wait_s
        Longest total time spent waiting for rate limits before giving up.
    client
        An ``httpx.Client`` to use (tests pass one with an in-process transport).
    sleep
        The sleep function (tests pass a fake clock).
    clock
        The UNIX-time clock an HTTP-date ``Retry-After`` is measured from (tests pass a fake).
    """

    def __init__(
        self,
        url: str,
        model: str,
        api_key: str | None,
        *,
        input_shape: tuple[int, ...] | None = None,
        n_classes: int | None = None,
        clip_range: tuple[float, float] | None = None,
        batch_size: int = 32,
        max_retry_wait_s: float = 30.0,
        max_total_wait_s: float = 300.0,
        timeout_s: float = 30.0,
        client: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        import httpx

        if batch_size < 1:
            raise AttackError(f"batch_size must be >= 1, got {batch_size}")
        self.url = url.rstrip("/")
        self.model = model
        self.batch_size = batch_size
        self.max_retry_wait_s = max_retry_wait_s
        self.max_total_wait_s = max_total_wait_s
        self.waited_s = 0.0
        self.rate_limited = 0
        self._sleep = sleep
        self._clock = clock
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._owns_client = client is None
        self._client = client or httpx.Client(base_url=self.url, timeout=timeout_s)
        self._headers = headers
        if input_shape is None or n_classes is None:
            try:
                info = self._describe()
            except AttackError:
                self.close()  # the caller never gets the object to close
                raise
            input_shape = input_shape or tuple(int(d) for d in info["input_shape"])
            n_classes = n_classes or int(info["n_classes"])
            clip_range = clip_range or tuple(info.get("clip_range") or (0.0, 1.0))  # type: ignore[assignment]
        self.input_shape = tuple(input_shape)
        self.n_classes = int(n_classes)
        low, high = clip_range or (0.0, 1.0)
        self.clip_range = (float(low), float(high))

    @property
    def description(self) -> str:
        return f"{self.url}/v1/models/{self.model}"

    def close(self) -> None:
        """Close the HTTP client (when this victim created it)."""
        if self._owns_client:
            self._client.close()

    def _describe(self) -> dict[str, Any]:
        """``GET /v1/models/{model}`` (or the ``/v1/models`` listing): shape and classes."""
        import httpx

        for path in (f"/v1/models/{self.model}", "/v1/models"):
            try:
                response = self._client.get(path, headers=self._headers)
            except httpx.HTTPError as exc:
                raise AttackError(f"cannot reach {self.url}: {type(exc).__name__}") from exc
            if response.status_code != 200:
                continue
            body = response.json()
            if isinstance(body, dict) and "input_shape" in body and "n_classes" in body:
                return dict(body)
            entries = body.get("models", []) if isinstance(body, dict) else body
            for entry in entries if isinstance(entries, list) else []:
                if (
                    isinstance(entry, dict)
                    and entry.get("name") == self.model
                    and "input_shape" in entry
                    and "n_classes" in entry
                ):
                    return dict(entry)
        raise AttackError(
            f"cannot read model {self.model!r}'s input shape and classes from {self.url}/v1/models "
            "(check --model-name and the API key)"
        )

    def _query(self, x: np.ndarray) -> Answer:
        parts: list[np.ndarray] = []
        hard = True
        for start in range(0, len(x), self.batch_size):
            batch = x[start : start + self.batch_size]
            try:
                targets, batch_hard = self._post(batch)
            except QueryRefused as refused:
                if parts:  # keep what was answered so the attack can still train on it
                    refused.partial = Answer(np.concatenate(parts), hard)
                raise
            parts.append(targets)
            hard = hard and batch_hard
        return Answer(targets=np.concatenate(parts), hard=hard)

    def _post(self, batch: np.ndarray) -> tuple[np.ndarray, bool]:
        import httpx

        path = f"/v1/models/{self.model}/predict"
        body = {"inputs": batch.tolist()}
        while True:
            try:
                response = self._client.post(path, json=body, headers=self._headers)
            except httpx.HTTPError as exc:
                raise QueryRefused("unreachable", f"{type(exc).__name__}") from exc
            status = response.status_code
            if status == 200:
                payload = response.json()
                alerts = list(payload.get("alerts") or [])
                targets, hard = targets_from_response(
                    payload.get("outputs") or {}, len(batch), self.n_classes
                )
                self._count(len(batch), alerts)
                return targets, hard
            detail = _detail(response)
            if status == 429:
                self.rate_limited += 1
                wait = retry_after_seconds(response.headers.get("retry-after"), now=self._clock())
                if wait > self.max_retry_wait_s or self.waited_s + wait > self.max_total_wait_s:
                    raise QueryRefused("quota", f"429, Retry-After {wait:g} s: {detail}")
                logger.info("rate limited; waiting %.2f s", wait)
                self._sleep(wait)
                self.waited_s += wait
                continue
            if status in (401, 403):
                raise QueryRefused("blocked" if status == 403 else "unauthorized", detail)
            if status == 413 and len(batch) > 1:
                half = len(batch) // 2
                self.batch_size = min(self.batch_size, half)  # later batches start smaller
                a, ha = self._post(batch[:half])
                b, hb = self._post(batch[half:])
                return np.concatenate([a, b]), ha and hb
            if status == 404:
                raise AttackError(f"model {self.model!r} not found at {self.url}: {detail}")
            raise AttackError(f"POST {path} answered {status}: {detail}")


def _detail(response: Any) -> str:
    try:
        detail = response.json().get("detail", "")
    except (ValueError, AttributeError):
        detail = ""
    return str(detail)[:200]
