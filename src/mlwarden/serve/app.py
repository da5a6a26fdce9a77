"""The defended inference gateway: a FastAPI app built from a :class:`GatewayConfig`.

The app is assembled from small parts: :mod:`~mlwarden.serve.gateway` (the shared parts:
key store, audit log, limits, models, monitor), :mod:`~mlwarden.serve.middleware` (every request
audited before its answer leaves), :mod:`~mlwarden.serve.routes` (the endpoints and the
prediction path) and :mod:`~mlwarden.serve.webhook` (alert webhooks). The names other modules
and users import from here (:func:`create_app`, :class:`Gateway`, :class:`AuditMiddleware`, ...)
are re-exported.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from mlwarden import __version__
from mlwarden.errors import ConfigError
from mlwarden.models.base import Classifier
from mlwarden.serve.audit import AuditEntry
from mlwarden.serve.config import GatewayConfig
from mlwarden.serve.gateway import Gateway, MonitorHook, build_monitor
from mlwarden.serve.middleware import AuditMiddleware, RequestContext
from mlwarden.serve.routes import Problem, add_routes

__all__ = [
    "AuditMiddleware",
    "Gateway",
    "MalformedRequestRecorder",
    "MonitorHook",
    "Problem",
    "RequestContext",
    "app_from_env",
    "build_monitor",
    "create_app",
]


#: What uvicorn logs (on ``uvicorn.error``, at WARNING) when it refuses a request itself.
_SERVER_REFUSALS = {
    "Invalid HTTP request received.": "malformed_http",
    "Unsupported upgrade request.": "unsupported_upgrade",
}


class MalformedRequestRecorder(logging.Handler):
    """Counts and audits the requests uvicorn answers 400 before the app sees them.

    Attached to the ``uvicorn.error`` logger while the app runs. Each refusal adds one to
    ``mlwarden_malformed_requests_total`` and one audit entry (status 400, reason
    ``malformed_http``; uvicorn's log record carries no peer address, so ``client_ip`` is ``-``).
    Limit: uvicorn only emits the record when its log level is ``warning`` or more verbose
    (``mlwarden serve`` runs at ``warning``); at ``error`` such requests go uncounted.
    """

    def __init__(self, gateway: Gateway) -> None:
        super().__init__(level=logging.WARNING)
        self.gateway = gateway

    def emit(self, record: logging.LogRecord) -> None:
        reason = _SERVER_REFUSALS.get(str(record.msg))
        if reason is None:
            return
        self.gateway.metrics.malformed.inc()
        self.gateway.metrics.observe("-", 400, 0.0, reason)
        try:
            self.gateway.audit.append_nowait(
                AuditEntry(request_id=uuid.uuid4().hex, reason=reason, status=400, decision="deny")
            )
        except Exception:  # the log handler must never raise into the server
            logging.getLogger(__name__).error("audit log unavailable for a refused request")


def create_app(
    config: GatewayConfig,
    *,
    models: dict[str, Classifier] | None = None,
    monitor: MonitorHook | None = None,
) -> FastAPI:
    """Build the gateway app.

    Parameters
    ----------
    config
        The gateway configuration (:func:`mlwarden.serve.config.load_gateway_config`).
    models
        Already-loaded classifiers by model name (tests); others are scanned, verified and loaded.
    monitor
        An extraction monitor; by default built from ``config.monitor`` when enabled.

    Raises
    ------
    ConfigError, UnsafeModelError, SignatureError, ModelError
        A database, storage, model or detector cannot be used safely.
    """
    gateway = Gateway(config, models=models, monitor=monitor)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        server_log = logging.getLogger("uvicorn.error")
        recorder = MalformedRequestRecorder(gateway)
        server_log.addHandler(recorder)
        try:
            yield
        finally:
            server_log.removeHandler(recorder)
            await gateway.aclose()
            gateway.close()

    docs = config.docs
    app = FastAPI(
        lifespan=lifespan,
        # no redirects at all: Starlette's trailing-slash redirect builds its Location from the
        # Host header (an open redirect) and answers before any key is checked
        redirect_slashes=False,
        # Swagger UI loads its script from a CDN, and the OpenAPI document names every model:
        # both only when the configuration asks for them
        docs_url="/docs" if docs else None,
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
        # FastAPI's OpenTelemetry hooks check the global providers on every request; the gateway
        # exports Prometheus metrics and its own audit log instead
        telemetry={"tracing": False, "metrics": False, "logs": False},
        title="mlwarden gateway",
        version=__version__,
        description="A defended inference gateway: API keys, roles, rate limits, output "
        "policies, input validation, extraction monitoring and a hash-chained audit log.",
    )
    app.state.gateway = gateway
    predict = add_routes(app, gateway)
    app.add_middleware(AuditMiddleware, gateway=gateway, predict=predict)

    def custom_openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        schema.setdefault("components", {})["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        }
        schema["security"] = [{"bearer": []}, {"apiKey": []}]
        schema["x-mlwarden-models"] = {n: s.schema() for n, s in gateway.models.items()}
        app.openapi_schema = schema
        return schema

    app.openapi = custom_openapi  # type: ignore[method-assign]
    return app


def app_from_env() -> FastAPI:
    """An app built from the config file named by ``$MLWARDEN_GATEWAY_CONFIG`` (uvicorn factory).

    ``uvicorn --factory mlwarden.serve.app:app_from_env`` runs the gateway in each worker.
    """
    import os

    from mlwarden.serve.config import load_gateway_config

    path = os.environ.get("MLWARDEN_GATEWAY_CONFIG")
    if not path:
        raise ConfigError("set MLWARDEN_GATEWAY_CONFIG to the gateway.yaml to serve")
    return create_app(load_gateway_config(path))
