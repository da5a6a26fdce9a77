"""The defended inference gateway: a FastAPI app built from a :class:`GatewayConfig`.

Request path of ``POST /v1/models/{name}/predict`` (each step can end the request; every request
ends in the audit log, whatever its outcome)::

    authenticate key (401) -> model name pattern / known (404) -> role grant (403)
    -> key restriction "block" (403) -> rate limit per request (429, Retry-After)
    -> body size, streamed (413) -> JSON + shape/dtype/range/batch (422)
    -> daily quota, one query per input (429, Retry-After) -> detectors (422 / flag)
    -> model -> extraction monitor (alerts; throttle / label_only / block the key)
    -> output policy -> audit entry committed -> response sent

The audit middleware appends the entry when the response starts and sends nothing until the
commit returns; if the commit fails the caller gets a 503 instead of the model's answer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from mlwarden import __version__
from mlwarden.errors import ConfigError
from mlwarden.models.base import Classifier
from mlwarden.models.output_policy import OutputPolicy
from mlwarden.serve.audit import AuditEntry, AuditLog
from mlwarden.serve.authz import Authorizer
from mlwarden.serve.config import MODEL_NAME_PATTERN, GatewayConfig
from mlwarden.serve.db import Database
from mlwarden.serve.keys import AuthFailure, KeyRecord, KeyStore
from mlwarden.serve.loading import ServedModel, attach_detectors, load_served_model
from mlwarden.serve.metrics import CONTENT_TYPE_LATEST, GatewayMetrics
from mlwarden.serve.quotas import RateLimits
from mlwarden.serve.restriction import LADDER, Restriction
from mlwarden.serve.validation import InvalidInput, PayloadTooLarge, parse_inputs, read_body

__all__ = [
    "AuditMiddleware",
    "Gateway",
    "MonitorHook",
    "Problem",
    "RequestContext",
    "app_from_env",
    "build_monitor",
    "create_app",
]

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_ID_PROBES = frozenset({"unknown_key", "wrong_secret"})
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_STATUS_REASON = {
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method",
    413: "too_large",
    422: "invalid_input",
    429: "rate_limit",
    500: "error",
    503: "unavailable",
}


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


class Problem(Exception):
    """An HTTP error the gateway answers with ``{"error": reason, "detail": message}``."""

    def __init__(
        self, status: int, reason: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail
        self.headers = headers or {}


@dataclass
class RequestContext:
    """What the handlers learn about a request, for its audit entry."""

    request_id: str
    key_id: str = "anonymous"
    model: str = "-"
    action: str = "-"
    reason: str = ""
    alerts: list[dict[str, Any]] = field(default_factory=list)
    restriction: str | None = None


def _alert_dict(alert: Any) -> dict[str, Any]:
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

    def close(self) -> None:
        """Flush the audit log and close database connections."""
        self.audit.close()
        self.db.dispose()


def _problem_response(problem: Problem) -> JSONResponse:
    return JSONResponse(
        {"error": problem.reason, "detail": problem.detail},
        status_code=problem.status,
        headers=problem.headers,
    )


class AuditMiddleware:
    """Audit every request (except ``/healthz``) before its response leaves; record metrics."""

    def __init__(
        self, app: Callable[[Scope, Receive, Send], Awaitable[None]], gateway: Gateway
    ) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") == "/healthz":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        given = None
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                text = value.decode("latin-1")
                given = text if _REQUEST_ID.fullmatch(text) else None
        ctx = RequestContext(request_id=given or uuid.uuid4().hex)
        scope.setdefault("state", {})["mlw"] = ctx
        state = {"audited": False, "failed": False}
        client = scope.get("client")
        client_ip = str(client[0]) if client else "-"

        async def record(status: int) -> bool:
            latency_s = time.perf_counter() - started
            reason = ctx.reason or (
                "ok" if status < 400 else _STATUS_REASON.get(status, f"http_{status}")
            )
            entry = AuditEntry(
                request_id=ctx.request_id,
                key_id=ctx.key_id,
                model=ctx.model,
                action=ctx.action,
                decision="allow" if status < 400 else "deny",
                reason=reason,
                status=status,
                latency_ms=latency_s * 1000.0,
                alerts=ctx.alerts,
                client_ip=client_ip,
            )
            metric_model = ctx.model if ctx.model in self.gateway.models else "-"
            self.gateway.metrics.observe(metric_model, status, latency_s, reason)
            try:
                await self.gateway.audit.append_async(entry)
            except Exception:
                logger.error("audit log unavailable; answering 503 (request %s)", ctx.request_id)
                return False
            return True

        async def send_audited(message: Message) -> None:
            if message["type"] == "http.response.start" and not state["audited"]:
                state["audited"] = True
                if not await record(int(message["status"])):
                    state["failed"] = True
                    await _send_json(send, 503, _AUDIT_UNAVAILABLE)
                    return
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", ctx.request_id.encode("ascii")))
                message = {**message, "headers": headers}
            if state["failed"]:
                return
            await send(message)

        try:
            await self.app(scope, receive, send_audited)
        except Exception:
            if state["audited"]:  # the response had started: nothing more can be sent
                raise
            # answer here, audited and with the request id, instead of letting the server's
            # error middleware answer a bare 500; the traceback goes to the log
            logger.exception("unhandled error (request %s)", ctx.request_id)
            ctx.reason = ctx.reason or "error"
            await _send_json(send_audited, 500, _INTERNAL_ERROR)


_AUDIT_UNAVAILABLE = b'{"error":"audit_unavailable","detail":"the audit log is unavailable"}'
_INTERNAL_ERROR = b'{"error":"internal_error","detail":"internal error; see the server log"}'


async def _send_json(send: Send, status: int, body: bytes) -> None:
    """Send a complete JSON response through the ASGI ``send`` callable."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


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
        yield
        gateway.close()

    app = FastAPI(
        lifespan=lifespan,
        title="mlwarden gateway",
        version=__version__,
        description="A defended inference gateway: API keys, roles, rate limits, output "
        "policies, input validation, extraction monitoring and a hash-chained audit log.",
    )
    app.state.gateway = gateway
    app.add_middleware(AuditMiddleware, gateway=gateway)

    @app.exception_handler(Problem)
    async def _on_problem(request: Request, exc: Problem) -> JSONResponse:
        ctx = _ctx(request)
        ctx.reason = ctx.reason or exc.reason
        return _problem_response(exc)

    def _ctx(request: Request) -> RequestContext:
        ctx = request.scope.get("state", {}).get("mlw")
        if ctx is None:  # pragma: no cover - middleware always sets it
            ctx = RequestContext(request_id=uuid.uuid4().hex)
        return ctx  # type: ignore[no-any-return]

    def authenticate(request: Request) -> KeyRecord:
        ctx = _ctx(request)
        presented = None
        auth = request.headers.get("authorization")
        if auth is not None:
            scheme, _, token = auth.partition(" ")
            if scheme.lower() != "bearer":
                ctx.reason = "bad_auth_scheme"
                raise Problem(
                    401,
                    "bad_auth_scheme",
                    "use Authorization: Bearer <key>",
                    {"WWW-Authenticate": "Bearer"},
                )
            presented = token.strip()
        else:
            presented = request.headers.get("x-api-key")
        try:
            record = gateway.keys.authenticate(presented)
        except AuthFailure as failure:
            ctx.key_id = failure.key_id
            ctx.reason = failure.reason  # the audit log and metrics keep the exact reason
            # an unknown id and a wrong secret answer alike, so callers cannot probe which key
            # ids exist; revoked/expired are told only to whoever holds the right secret
            public = "invalid_key" if failure.reason in _ID_PROBES else failure.reason
            raise Problem(
                401, public, "a valid API key is required", {"WWW-Authenticate": "Bearer"}
            ) from None
        ctx.key_id = record.key_id
        return record

    def resolve(name: str, request: Request) -> ServedModel:
        ctx = _ctx(request)
        if not MODEL_NAME_PATTERN.fullmatch(name):
            ctx.model = "<invalid>"
            ctx.reason = "bad_model_name"
            raise Problem(404, "unknown_model", "no such model")
        ctx.model = name
        served = gateway.models.get(name)
        if served is None:
            ctx.reason = "unknown_model"
            raise Problem(404, "unknown_model", f"no model named {name!r}")
        return served

    def authorize(record: KeyRecord, model: str, action: str, request: Request) -> None:
        if not gateway.authz.allowed(record.role, model, action):
            _ctx(request).reason = "forbidden"
            raise Problem(403, "forbidden", f"this key may not {action} on model {model!r}")

    predict_body = {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["inputs"],
                    "additionalProperties": False,
                    "properties": {
                        "inputs": {
                            "type": "array",
                            "minItems": 1,
                            "description": "Samples, each nested to the model's input shape "
                            "(see GET /v1/models/{name} for the exact schema).",
                            "items": {"type": "array"},
                        }
                    },
                }
            }
        },
    }

    def limit_requests(record: KeyRecord, request: Request) -> None:
        """Apply the key's request rate limits to an endpoint that queries no model."""
        limit = gateway.limits.hit(record.key_id, "-")
        if not limit.allowed:
            _ctx(request).reason = limit.reason
            raise Problem(
                429,
                limit.reason,
                f"{limit.reason.replace('_', ' ')} exceeded; retry in {limit.retry_after_s} s",
                {"Retry-After": str(limit.retry_after_s)},
            )

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        """Liveness: the process answers. (Not audited.)"""
        return {"status": "ok"}

    @app.get("/metrics", tags=["ops"], response_class=Response)
    def metrics(request: Request) -> Response:
        """Prometheus metrics; needs a key whose role grants ``metrics`` unless configured public."""
        ctx = _ctx(request)
        ctx.action = "metrics"
        if not config.metrics_public:
            record = authenticate(request)
            limit_requests(record, request)
            if not gateway.authz.has_anywhere(record.role, "metrics"):
                ctx.reason = "forbidden"
                raise Problem(403, "forbidden", "this key's role does not grant metrics")
        return Response(gateway.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models", tags=["models"])
    def list_models(request: Request) -> dict[str, Any]:
        """The models this key may use."""
        _ctx(request).action = "list"
        record = authenticate(request)
        limit_requests(record, request)
        return {"models": gateway.authz.visible_models(record.role)}

    @app.get("/v1/models/{name}", tags=["models"])
    def describe_model(name: str, request: Request) -> dict[str, Any]:
        """A model's input schema, output policy for this key, and the actions granted."""
        _ctx(request).action = "describe"
        record = authenticate(request)
        limit_requests(record, request)
        served = resolve(name, request)
        actions = [
            a
            for a in ("predict", "explain", "admin")
            if gateway.authz.allowed(record.role, name, a)
        ]
        if not actions:
            _ctx(request).reason = "forbidden"
            raise Problem(403, "forbidden", f"this key has no access to model {name!r}")
        clf = served.classifier
        return {
            "name": name,
            "input_shape": list(clf.input_shape),
            "n_classes": clf.n_classes,
            "clip_range": list(clf.clip_range),
            "max_batch": served.config.max_batch,
            "actions": actions,
            "output_policy": _policy(served, record).describe(),
            "input_schema": served.schema(),
            "quota_remaining": gateway.limits.remaining_quota(record.key_id, name),
        }

    def _policy(served: ServedModel, record: KeyRecord) -> OutputPolicy:
        policy = served.config.output.stricter(
            gateway.authz.output_override(record.role, served.name)
        )
        if record.restriction == "label_only":
            policy = policy.stricter(OutputPolicy(mode="label"))
        return policy

    @app.post(
        "/v1/models/{name}/predict",
        tags=["models"],
        openapi_extra={"requestBody": predict_body},
        responses={401: {}, 403: {}, 404: {}, 413: {}, 422: {}, 429: {}},
    )
    async def predict(name: str, request: Request) -> JSONResponse:
        """Predict a batch; the output is shaped by the model's and the role's output policy."""
        ctx = _ctx(request)
        ctx.action = "predict"
        record = authenticate(request)
        served = resolve(name, request)
        authorize(record, name, "predict", request)
        if record.restriction == "block":
            ctx.reason = "key_blocked"
            raise Problem(403, "key_blocked", "this key is blocked (extraction monitor)")
        limit = gateway.limits.hit(record.key_id, name, throttled=record.restriction == "throttle")
        if not limit.allowed:
            ctx.reason = limit.reason
            raise Problem(
                429,
                limit.reason,
                f"{limit.reason.replace('_', ' ')} exceeded; retry in {limit.retry_after_s} s",
                {"Retry-After": str(limit.retry_after_s)},
            )
        try:
            body = await read_body(
                request.headers.get("content-length"), request.stream(), config.max_body_bytes
            )
            x = parse_inputs(
                body,
                input_shape=served.classifier.input_shape,
                clip_range=served.classifier.clip_range,
                max_batch=served.config.max_batch,
            )
        except PayloadTooLarge as exc:
            ctx.reason = "too_large"
            raise Problem(413, "too_large", str(exc)) from None
        except ClientDisconnect:
            ctx.reason = "client_disconnect"  # nobody is left to answer; the entry says why
            raise Problem(400, "client_disconnect", "the client closed the connection") from None
        except InvalidInput as exc:
            ctx.reason = exc.reason
            raise Problem(422, exc.reason, str(exc)) from None
        quota = gateway.limits.charge_quota(record.key_id, name, len(x))
        if not quota.allowed:
            ctx.reason = quota.reason
            raise Problem(
                429,
                quota.reason,
                f"daily query quota exceeded ({len(x)} queries asked); retry in "
                f"{quota.retry_after_s} s",
                {"Retry-After": str(quota.retry_after_s)},
            )

        def infer() -> dict[str, Any]:
            """Detectors, model, monitor and output policy: blocking work, run off the loop."""
            for detector, action in served.detectors:
                flagged = np.asarray(detector.predict(x), dtype=bool)
                if flagged.any():
                    alert = {
                        "kind": f"detector:{detector.name}",
                        "key_id": record.key_id,
                        "model": name,
                        "score": float(flagged.mean()),
                        "threshold": float(detector.threshold_),
                        "message": f"{int(flagged.sum())} of {len(x)} input(s) flagged",
                    }
                    ctx.alerts.append(alert)
                    gateway.metrics.alerts.labels(alert["kind"]).inc()
                    if action == "reject":
                        ctx.reason = "detector"
                        raise Problem(422, "detector", "input(s) rejected by an input detector")
            probs = served.classifier.predict_proba(x)
            if gateway.monitor is not None:
                _run_monitor(record, name, x, probs, ctx)
            policy = _policy(served, record)
            # imposed by this very request's alerts
            if Restriction.parse(ctx.restriction) >= Restriction.LABEL_ONLY:
                policy = policy.stricter(OutputPolicy(mode="label"))
            content: dict[str, Any] = {
                "model": name,
                "outputs": policy.apply(probs),
                "policy": policy.describe(),
                "alerts": ctx.alerts if config.monitor.expose_alerts else [],
            }
            return content

        def timed_infer() -> dict[str, Any]:
            started = time.perf_counter()
            try:
                return infer()
            finally:
                served.record_work(time.perf_counter() - started)

        # a slow batch of one key must not stall the event loop that serves every other key
        # (and the audit commits): model work runs in the threadpool unless it is measured
        # to be cheaper than the thread hop itself (small batches of a sub-millisecond model)
        if served.runs_inline(len(x)):
            content = timed_infer()
        else:
            content = await run_in_threadpool(timed_infer)
        return JSONResponse(content)

    def _run_monitor(
        record: KeyRecord, name: str, x: np.ndarray, probs: np.ndarray, ctx: RequestContext
    ) -> None:
        assert gateway.monitor is not None
        raised = [_alert_dict(a) for a in gateway.monitor.observe(record.key_id, name, x, probs)]
        if not raised:
            return
        ctx.alerts.extend(raised)
        for alert in raised:
            gateway.metrics.alerts.labels(str(alert.get("kind", "unknown"))[:64]).inc()
        if config.monitor.action == "per_alert":
            wanted = [str(a.get("action") or "none") for a in raised]
            action = Restriction.strictest(w for w in wanted if w in LADDER).value
        else:
            action = config.monitor.action
        if action != "none" and record.restriction != action:
            gateway.keys.restrict(record.key_id, action)
            ctx.restriction = action
        if config.monitor.webhook_url:
            _post_webhook(config.monitor.webhook_url, raised)

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


def _post_webhook(url: str, alerts: list[dict[str, Any]]) -> None:
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
