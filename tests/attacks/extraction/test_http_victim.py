"""The HTTP victim's reading of ``Retry-After``: delta-seconds, HTTP dates, and bad values."""

from __future__ import annotations

from datetime import datetime, timezone
from email.utils import format_datetime

import httpx
import numpy as np
import pytest

from mlwarden.attacks.extraction import HttpVictim, QueryRefused
from mlwarden.attacks.extraction.http_victim import (
    DEFAULT_RETRY_AFTER_S,
    MAX_RETRY_AFTER_S,
    retry_after_seconds,
)

NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=timezone.utc).timestamp()


def _http_date(seconds_from_now: float) -> str:
    return format_datetime(datetime.fromtimestamp(NOW + seconds_from_now, tz=timezone.utc), True)


def test_delta_seconds_are_read_as_seconds() -> None:
    assert retry_after_seconds("120", now=NOW) == 120.0
    assert retry_after_seconds(" 0 ", now=NOW) == 0.0


def test_an_http_date_is_the_time_until_that_date() -> None:
    assert _http_date(90) == "Tue, 01 Dec 2026 12:01:30 GMT"
    assert retry_after_seconds(_http_date(90), now=NOW) == 90.0
    assert retry_after_seconds(_http_date(-30), now=NOW) == 0.0  # already past: retry now


def test_waits_are_clamped_to_one_day() -> None:
    assert retry_after_seconds(_http_date(10 * 86_400), now=NOW) == MAX_RETRY_AFTER_S
    assert retry_after_seconds("99999999", now=NOW) == MAX_RETRY_AFTER_S


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "nan", "inf", "Mon, 99 Foo 2026"])
def test_a_missing_or_malformed_value_waits_the_default(value: str | None) -> None:
    assert retry_after_seconds(value, now=NOW) == DEFAULT_RETRY_AFTER_S


def _victim(retry_after: str, sleeps: list[float]) -> tuple[HttpVictim, list[int]]:
    """A victim whose API answers 429 (with ``retry_after``) once, then label outputs."""
    calls = [0]

    def api(request: httpx.Request) -> httpx.Response:
        calls[0] += 1
        if calls[0] == 1:
            return httpx.Response(429, headers={"Retry-After": retry_after}, json={"detail": "x"})
        return httpx.Response(200, json={"outputs": {"labels": [3]}, "alerts": []})

    client = httpx.Client(transport=httpx.MockTransport(api), base_url="http://gateway")
    victim = HttpVictim(
        "http://gateway",
        "digits",
        "key",
        input_shape=(2,),
        n_classes=10,
        client=client,
        sleep=sleeps.append,
        clock=lambda: NOW,
    )
    return victim, calls


def test_a_short_http_date_rate_limit_is_waited_out() -> None:
    sleeps: list[float] = []
    victim, calls = _victim(_http_date(5), sleeps)
    answer = victim.query(np.zeros((1, 2), dtype=np.float32))
    assert sleeps == [5.0] and calls[0] == 2 and victim.queries == 1
    assert answer.hard and answer.targets.argmax() == 3


def test_a_distant_http_date_stops_the_attack_without_waiting() -> None:
    sleeps: list[float] = []
    victim, calls = _victim(_http_date(6 * 3600), sleeps)
    with pytest.raises(QueryRefused, match="Retry-After 21600 s") as refused:
        victim.query(np.zeros((1, 2), dtype=np.float32))
    assert refused.value.reason == "quota" and sleeps == [] and calls[0] == 1
