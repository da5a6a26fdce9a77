"""Alert webhooks: the monitor's alerts POSTed as JSON to ``monitor.webhook_url``."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

__all__ = ["post_alerts"]

logger = logging.getLogger(__name__)


def post_alerts(url: str, alerts: list[dict[str, Any]]) -> None:
    """POST alerts as JSON in a background thread (best effort; failures are logged)."""

    def run() -> None:
        import httpx

        try:
            httpx.post(
                url,
                content=json.dumps({"alerts": alerts}),
                headers={"content-type": "application/json"},
                timeout=2.0,
            )
        except httpx.HTTPError as exc:
            logger.warning("alert webhook failed: %s", exc.__class__.__name__)

    threading.Thread(target=run, name="mlwarden-webhook", daemon=True).start()
