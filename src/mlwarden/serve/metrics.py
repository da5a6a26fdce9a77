"""Prometheus metrics of one gateway app (own registry, so several apps can live in one process).

``mlwarden_requests_total{model,status}``, ``mlwarden_request_latency_seconds{model}``,
``mlwarden_rejections_total{reason}``, ``mlwarden_alerts_total{kind}`` and
``mlwarden_malformed_requests_total`` (requests uvicorn refused before the app, see
:class:`mlwarden.serve.app.MalformedRequestRecorder`). The ``model`` label
only ever takes configured model names (or ``-``), so a caller cannot blow up cardinality with
made-up names. Counters are per process: with several uvicorn workers, scrape each or run
``prometheus_client`` in multiprocess mode (not wired here).
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

__all__ = ["CONTENT_TYPE_LATEST", "GatewayMetrics"]


class GatewayMetrics:
    """The gateway's counters and histograms."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "mlwarden_requests",
            "Gateway requests by model and status",
            ["model", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "mlwarden_request_latency_seconds",
            "Gateway request latency",
            ["model"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self.rejections = Counter(
            "mlwarden_rejections", "Rejected requests by reason", ["reason"], registry=self.registry
        )
        self.malformed = Counter(
            "mlwarden_malformed_requests",
            "Requests the HTTP server refused before the app saw them (malformed HTTP)",
            registry=self.registry,
        )
        self.alerts = Counter(
            "mlwarden_alerts",
            "Monitor and detector alerts by kind",
            ["kind"],
            registry=self.registry,
        )

    def observe(self, model: str, status: int, latency_s: float, reason: str | None) -> None:
        """Record one finished request."""
        self.requests.labels(model, str(status)).inc()
        self.latency.labels(model).observe(latency_s)
        if reason and status >= 400:
            self.rejections.labels(reason).inc()

    def render(self) -> bytes:
        """The exposition text."""
        return generate_latest(self.registry)
