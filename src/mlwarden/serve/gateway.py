"""The gateway's parts, shared by the app's middleware and routes.

:class:`Gateway` opens the key store and audit log (:mod:`~mlwarden.serve.db`), the
authoriser, the rate limits, the metrics, the served models and the extraction monitor, all
from one :class:`~mlwarden.serve.config.GatewayConfig`.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, Protocol

import numpy as np

from mlwarden.models.base import Classifier
from mlwarden.serve.audit import AuditEntry, AuditLog
from mlwarden.serve.authz import Authorizer
from mlwarden.serve.config import GatewayConfig
from mlwarden.serve.db import Database
from mlwarden.serve.keys import KeyStore
from mlwarden.serve.loading import ServedModel, attach_detectors, load_served_model
from mlwarden.serve.metrics import GatewayMetrics
from mlwarden.serve.observer import MonitorRunner
from mlwarden.serve.quotas import RateLimits
from mlwarden.serve.restriction import LADDER, Restriction
from mlwarden.serve.webhook import post_alerts

logger = logging.getLogger(__name__)

__all__ = ["Gateway", "MonitorHook", "build_monitor"]


class MonitorHook(Protocol):
    """What the gateway calls after every successful prediction (the extraction monitor).

    ``observe`` gets the key id, the model name, the validated inputs (``(n, *input_shape)``,
    float32) and the model's full probabilities (before any output policy), and returns alerts:
    objects (or dicts) with ``kind``, ``key_id``, ``model``, ``score``, ``threshold`` and
    ``message``.
    """

    def observe(self, key_id: str, model: str, x: np.ndarray, probs: np.ndarray) -> list[Any]:
        """Update the key's statistics and return any alerts raised by this batch."""
        ...


def build_monitor(config: GatewayConfig) -> MonitorHook | None:
    """The extraction monitor (:mod:`mlwarden.serve.monitor`) when ``monitor.enabled``.

    Raises
    ------
    ConfigError
        The monitor's options are invalid or its reference data cannot be read.
    """
    if not config.monitor.enabled:
        return None
    from mlwarden.serve.monitor import ExtractionMonitor, MonitorConfig

    reference = None
    if config.monitor.reference is not None:
        from mlwarden.data.readers import load_dataset

        reference = load_dataset(config.monitor.reference, split="train").x
    return ExtractionMonitor(MonitorConfig.from_dict(config.monitor.options), reference=reference)


class Gateway:
    """The gateway's parts, shared by the app's handlers."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        models: dict[str, Classifier] | None = None,
        monitor: MonitorHook | None = None,
    ) -> None:
        self.config = config
        self.db = Database(
            config.database, prefix=config.table_prefix, synchronous=config.audit.synchronous
        )
        self.keys = KeyStore(self.db)
        self.keys.start_invalidation()  # PostgreSQL: cached key records, dropped on NOTIFY
        self.audit = AuditLog(self.db, batch_max=config.audit.batch_max, mode=config.audit.mode)
        self.authz = Authorizer(config)
        self.limits = RateLimits(config.rate_limits)
        self.metrics = GatewayMetrics()
        self.models: dict[str, ServedModel] = {}
        for name, model_config in config.models.items():
            if models is not None and name in models:
                self.models[name] = attach_detectors(ServedModel(model_config, models[name]))
            else:
                self.models[name] = load_served_model(model_config, scan=config.scan_models)
        self.monitor = monitor if monitor is not None else build_monitor(config)
        #: runs the monitor after each response (statistics off the request path)
        self.observer = (
            MonitorRunner(self.monitor, self.apply_alerts) if self.monitor is not None else None
        )

    def apply_alerts(
        self, key_id: str, model: str, request_id: str, alerts: list[dict[str, Any]]
    ) -> None:
        """One batch's alerts: counted, audited as their own entry, acted on, posted.

        Runs on the event loop after the response (in the threadpool for large batches). The
        key's restriction is written before the batch counts as observed, so the key's next
        request (which waits for that) sees it.
        """
        for alert in alerts:
            self.metrics.alerts.labels(str(alert.get("kind", "unknown"))[:64]).inc()
        if self.config.monitor.action == "per_alert":
            wanted = [str(a.get("action") or "none") for a in alerts]
            action = Restriction.strictest(w for w in wanted if w in LADDER).value
        else:
            action = self.config.monitor.action
        if action != "none":
            self.keys.restrict(key_id, action)
        kinds = ",".join(sorted({str(a.get("kind", "?")) for a in alerts}))
        entry = AuditEntry(
            request_id=uuid.uuid4().hex,
            key_id=key_id,
            model=model,
            action="monitor",
            decision="alert",
            reason=f"{kinds} -> {action}",
            status=0,
            alerts=alerts,
            client_request_id=request_id,  # the answered request whose batch raised them
        )
        try:
            self.audit.append_nowait(entry)
        except Exception:
            logger.error("audit log unavailable for a monitor alert (request %s)", request_id)
        if self.config.monitor.webhook_url:
            post_alerts(self.config.monitor.webhook_url, alerts)

    async def aclose(self) -> None:
        """Charge the quota still owed, close the Redis and audit connections."""
        await self.limits.aclose()
        await self.audit.aclose()

    def close(self) -> None:
        """Flush the audit log and close database connections."""
        if self.observer is not None:
            self.observer.close()
        self.keys.close()
        self.audit.close()
        self.db.dispose()
