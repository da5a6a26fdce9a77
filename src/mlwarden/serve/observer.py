"""The extraction monitor, run off the request path: after the answer has been sent.

A prediction hands its inputs and the model's probabilities to :meth:`MonitorRunner.submit`
and is answered without waiting for the monitor's statistics: the audit middleware calls
:meth:`MonitorRunner.schedule` once the response has left, and the batches queued so far are
observed on the event loop in the next turn (a batch of ``THREAD_MIN_INPUTS`` inputs or more
goes to the threadpool instead, so a large batch never stalls the loop). No worker thread: a
thread per process would contend for the GIL with the event loop on every request, and cost
a cross-thread wake-up per batch. An alert is audited as its own entry (action ``monitor``),
posted to the webhook, and its action (throttle, label_only, block) is written to the key store.

An alert still restricts the key's *next* request: a request waits (:meth:`settle`) until every
earlier batch of its own key has been observed, then reads its key again. A key therefore never
outruns its own monitor, while other keys never wait for it. The alerts a key raised are
returned in the body of its next answer (``alerts``), as they were in the answer that raised
them before the monitor left the request path.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
from starlette.concurrency import run_in_threadpool

__all__ = ["MonitorRunner", "alert_dict"]

logger = logging.getLogger(__name__)

#: ``(key_id, model, request_id, alerts)``: what to do with one batch's alerts
AlertHandler = Callable[[str, str, str, list[dict[str, Any]]], None]


def alert_dict(alert: Any) -> dict[str, Any]:
    """An alert (``Alert``, dataclass, dict or any object with the fields) as plain JSON values."""
    if isinstance(alert, dict):
        data = dict(alert)
    elif hasattr(alert, "to_dict"):
        data = dict(alert.to_dict())
    elif dataclasses.is_dataclass(alert) and not isinstance(alert, type):
        data = dataclasses.asdict(alert)
    else:
        data = {
            k: getattr(alert, k, None)
            for k in ("kind", "key_id", "model", "score", "threshold", "message")
        }
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, (np.floating, np.integer)):
            value = value.item()
        if isinstance(value, float) and not np.isfinite(value):
            value = None
        out[str(key)] = (
            value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        )
    return out


_Item = tuple[str, str, np.ndarray, np.ndarray, str]


class MonitorRunner:
    """Observe answered batches after their responses; make a key's next request wait for its own.

    Parameters
    ----------
    monitor
        Anything with ``observe(key_id, model, x, probs) -> list[alert]``.
    on_alerts
        Called with each batch's alerts (audit, restrict, webhook).
    settle_timeout_s
        Longest a request waits for its key's earlier batches (then it proceeds, logged).
    max_undelivered
        Alerts kept per key for its next answer.
    """

    #: batches with this many inputs or more are observed in the threadpool
    THREAD_MIN_INPUTS = 16

    def __init__(
        self,
        monitor: Any,
        on_alerts: AlertHandler,
        *,
        settle_timeout_s: float = 5.0,
        max_undelivered: int = 32,
    ) -> None:
        self.monitor = monitor
        self.on_alerts = on_alerts
        self.settle_timeout_s = settle_timeout_s
        self.max_undelivered = max_undelivered
        self._queue: deque[_Item] = deque()
        self._pending: dict[str, int] = {}
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._undelivered: dict[str, list[dict[str, Any]]] = {}
        self._draining = False
        self._task: asyncio.Task[None] | None = None

    # -- the request side ------------------------------------------------------------------
    def submit(
        self, key_id: str, model: str, x: np.ndarray, probs: np.ndarray, request_id: str
    ) -> None:
        """Queue one answered batch for the monitor (observed after :meth:`schedule`)."""
        self._pending[key_id] = self._pending.get(key_id, 0) + 1
        self._queue.append((key_id, model, x, probs, request_id))

    def schedule(self) -> None:
        """Observe what is queued, from the next loop turn on (called once a response is sent)."""
        if self._queue and not self._draining:
            self._draining = True
            self._task = asyncio.get_running_loop().create_task(self._drain())  # kept alive

    def pending(self, key_id: str) -> int:
        """Batches of ``key_id`` submitted and not yet observed."""
        return self._pending.get(key_id, 0)

    async def settle(self, key_id: str) -> bool:
        """Wait until every batch ``key_id`` submitted is observed; whether there was any."""
        if not self._pending.get(key_id):
            return False
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(key_id, []).append(future)
        self.schedule()
        try:
            await asyncio.wait_for(future, self.settle_timeout_s)
        except asyncio.TimeoutError:
            logger.warning("extraction monitor is %.0f s behind a key", self.settle_timeout_s)
        return True

    def take_alerts(self, key_id: str) -> list[dict[str, Any]]:
        """The alerts ``key_id`` raised that no answer has carried yet (and forget them)."""
        if not self._undelivered:
            return []
        return self._undelivered.pop(key_id, [])

    # -- observing -------------------------------------------------------------------------
    async def _drain(self) -> None:
        try:
            while self._queue:
                item = self._queue.popleft()
                if len(item[2]) >= self.THREAD_MIN_INPUTS:
                    raised = await run_in_threadpool(self._observe, item)
                else:
                    raised = self._observe(item)
                self._done(item, raised)
        finally:
            self._draining = False

    def _observe(self, item: _Item) -> list[dict[str, Any]]:
        key_id, model, x, probs, request_id = item
        try:
            raised = [alert_dict(a) for a in self.monitor.observe(key_id, model, x, probs)]
            for alert in raised:
                alert["request_id"] = request_id
            if raised:
                self.on_alerts(key_id, model, request_id, raised)
            return raised
        except Exception:
            logger.exception("extraction monitor failed on a batch (request %s)", request_id)
            return []

    def _done(self, item: _Item, raised: list[dict[str, Any]]) -> None:
        key_id = item[0]
        if raised:
            kept = self._undelivered.setdefault(key_id, [])
            kept.extend(raised)
            del kept[: max(0, len(kept) - self.max_undelivered)]
        left = self._pending.get(key_id, 1) - 1
        if left > 0:
            self._pending[key_id] = left
            return
        self._pending.pop(key_id, None)
        for future in self._waiters.pop(key_id, []):
            if not future.done():
                future.set_result(None)

    def close(self) -> None:
        """Observe whatever is still queued (shutdown; no event loop needed)."""
        while self._queue:
            item = self._queue.popleft()
            self._done(item, self._observe(item))
