"""The extraction monitor, run off the request path: one worker thread per gateway process.

A prediction hands its inputs and the model's probabilities to :meth:`MonitorRunner.submit`
and is answered without waiting for the monitor's statistics. The worker thread observes each
batch in submission order; an alert is audited as its own entry (action ``monitor``), posted to
the webhook, and its action (throttle, label_only, block) is written to the key store.

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
import queue
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

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
    """Observe predictions in a worker thread; make a key's next request wait for its own.

    Parameters
    ----------
    monitor
        Anything with ``observe(key_id, model, x, probs) -> list[alert]``.
    on_alerts
        Called in the worker thread with each batch's alerts (audit, restrict, webhook).
    max_queued
        Batches waiting beyond this are observed in the submitting thread (back-pressure).
    settle_timeout_s
        Longest a request waits for its key's earlier batches (then it proceeds, logged).
    max_undelivered
        Alerts kept per key for its next answer.
    """

    def __init__(
        self,
        monitor: Any,
        on_alerts: AlertHandler,
        *,
        max_queued: int = 4096,
        settle_timeout_s: float = 5.0,
        max_undelivered: int = 32,
    ) -> None:
        self.monitor = monitor
        self.on_alerts = on_alerts
        self.settle_timeout_s = settle_timeout_s
        self.max_undelivered = max_undelivered
        self._queue: queue.Queue[_Item | None] = queue.Queue(maxsize=max_queued)
        self._lock = threading.Lock()
        self._pending: dict[str, int] = {}
        self._waiters: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]] = {}
        self._undelivered: dict[str, list[dict[str, Any]]] = {}
        self._idle = threading.Condition(self._lock)
        self._thread = threading.Thread(target=self._run, name="mlwarden-monitor", daemon=True)
        self._thread.start()

    # -- the request side ------------------------------------------------------------------
    def submit(
        self, key_id: str, model: str, x: np.ndarray, probs: np.ndarray, request_id: str
    ) -> None:
        """Queue one answered batch for the monitor (returns at once)."""
        item = (key_id, model, x, probs, request_id)
        with self._lock:
            self._pending[key_id] = self._pending.get(key_id, 0) + 1
        try:
            self._queue.put_nowait(item)
        except queue.Full:  # the worker is far behind: this batch is observed right here
            self._observe(item)

    def pending(self, key_id: str) -> int:
        """Batches of ``key_id`` submitted and not yet observed."""
        with self._lock:
            return self._pending.get(key_id, 0)

    async def settle(self, key_id: str) -> bool:
        """Wait until every batch ``key_id`` submitted is observed; whether there was any."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if not self._pending.get(key_id):
                return False
            future: asyncio.Future[None] = loop.create_future()
            self._waiters.setdefault(key_id, []).append((loop, future))
        try:
            await asyncio.wait_for(future, self.settle_timeout_s)
        except asyncio.TimeoutError:
            logger.warning("extraction monitor is %.0f s behind a key", self.settle_timeout_s)
        return True

    def take_alerts(self, key_id: str) -> list[dict[str, Any]]:
        """The alerts ``key_id`` raised that no answer has carried yet (and forget them)."""
        if not self._undelivered:
            return []
        with self._lock:
            return self._undelivered.pop(key_id, [])

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until nothing is queued or being observed (tests, shutdown)."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._pending, timeout_s)

    # -- the worker ------------------------------------------------------------------------
    def _observe(self, item: _Item) -> None:
        key_id, model, x, probs, request_id = item
        try:
            raised = [alert_dict(a) for a in self.monitor.observe(key_id, model, x, probs)]
            if raised:
                for alert in raised:
                    alert["request_id"] = request_id
                self.on_alerts(key_id, model, request_id, raised)
                with self._lock:
                    kept = self._undelivered.setdefault(key_id, [])
                    kept.extend(raised)
                    del kept[: max(0, len(kept) - self.max_undelivered)]
        except Exception:
            logger.exception("extraction monitor failed on a batch (request %s)", request_id)
        finally:
            with self._lock:
                left = self._pending.get(key_id, 1) - 1
                if left > 0:
                    self._pending[key_id] = left
                    waiters = []
                else:
                    self._pending.pop(key_id, None)
                    waiters = self._waiters.pop(key_id, [])
                    self._idle.notify_all()
            for loop, future in waiters:
                loop.call_soon_threadsafe(_settle, future)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            self._observe(item)

    def close(self, timeout_s: float = 30.0) -> None:
        """Observe what is queued, then stop the worker."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=timeout_s)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
