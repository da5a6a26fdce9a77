"""The gateway's routes: health, metrics, model listing and description, and prediction.

Request path of ``POST /v1/models/{name}/predict`` (each step can end the request; every request
ends in the audit log, whatever its outcome, see :mod:`~mlwarden.serve.middleware`)::

    authenticate key (401) -> model name pattern / known (404) -> role grant (403)
    -> wait for the monitor to observe this key's earlier batches, read the key again
    -> key restriction "block" (403)
    -> body size, streamed (413) -> JSON + shape/dtype/range/batch (422)
    -> rate limits per request (429, Retry-After), then the daily quota reserved, one query
       per input (429, Retry-After): one Redis round trip for both -> detectors (422 / flag)
    -> model -> batch queued for the extraction monitor -> output policy
    -> audit entry committed -> quota reservation charged (on Redis, after the response)
    -> response sent -> the monitor observes the batch (audits alerts; throttles, degrades or
    blocks the key for its next requests)

A body larger than ``BODY_FIRST_MAX_BYTES``, one sent without a length, and any body of a
throttled key are read only after the rate limits admit the request (then the quota is a
second round trip), so a key over its limits cannot make the gateway parse large bodies. A
request refused for its body still counts against the rate limits, and a rate-limited request
is answered 429 whatever its body.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from mlwarden.models.output_policy import OutputPolicy
from mlwarden.serve.authz import effective_output
from mlwarden.serve.config import MODEL_NAME_PATTERN
from mlwarden.serve.gateway import Gateway
from mlwarden.serve.keys import AuthFailure, KeyRecord
from mlwarden.serve.loading import ServedModel
from mlwarden.serve.metrics import CONTENT_TYPE_LATEST
from mlwarden.serve.middleware import request_context
from mlwarden.serve.validation import InvalidInput, PayloadTooLarge, parse_inputs, read_body

__all__ = ["PredictHandler", "Problem", "add_routes"]


#: ``(scope, receive, send, model name)``: the prediction handler as a bare ASGI call
PredictHandler = Callable[[Scope, Receive, Send, str], Awaitable[None]]


_ID_PROBES = frozenset({"unknown_key", "wrong_secret"})
#: a predict body up to this size is read before the rate limits are checked (see predict)
BODY_FIRST_MAX_BYTES = 16_384


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


def _problem_response(problem: Problem) -> JSONResponse:
    return JSONResponse(
        {"error": problem.reason, "detail": problem.detail},
        status_code=problem.status,
        headers=problem.headers,
    )


def add_routes(app: FastAPI, gateway: Gateway) -> PredictHandler:
    """Register the gateway's routes and its :class:`Problem` handler on ``app``.

    Returns the prediction handler as a bare ASGI call, which the audit middleware calls
    directly for ``POST /v1/models/{name}/predict``: the framework's exception, exit-stack and
    routing layers cost more per request than the gateway's own checks. The FastAPI route
    stays for the OpenAPI document and answers other methods (405).
    """
    config = gateway.config

    @app.exception_handler(Problem)
    async def _on_problem(request: Request, exc: Problem) -> JSONResponse:
        ctx = request_context(request)
        ctx.reason = ctx.reason or exc.reason
        return _problem_response(exc)

    def authenticate(request: Request) -> KeyRecord:
        ctx = request_context(request)
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

    def resolve(
        record: KeyRecord, name: str, actions: tuple[str, ...], request: Request
    ) -> tuple[ServedModel, list[str]]:
        """The model ``name`` and which of ``actions`` the key may take on it.

        A model that does not exist and one the key may not use answer the same 404, so a key
        cannot enumerate the models of other roles; only a key whose role grants ``admin``
        somewhere is told 403 for a model that exists. The audit log keeps the exact reason.
        """
        ctx = request_context(request)
        valid = MODEL_NAME_PATTERN.fullmatch(name) is not None
        ctx.model = name if valid else "<invalid>"
        served = gateway.models.get(name) if valid else None
        granted = (
            [a for a in actions if gateway.authz.allowed(record.role, name, a)]
            if served is not None
            else []
        )
        if served is not None and granted:
            return served, granted
        ctx.reason = (
            "bad_model_name" if not valid else "unknown_model" if served is None else "forbidden"
        )
        if served is not None and gateway.authz.has_anywhere(record.role, "admin"):
            raise Problem(403, "forbidden", f"this key may not {actions[0]} on model {name!r}")
        raise Problem(404, "unknown_model", "no such model (or not available to this key)")

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
            request_context(request).reason = limit.reason
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
        ctx = request_context(request)
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
        request_context(request).action = "list"
        record = authenticate(request)
        limit_requests(record, request)
        return {"models": gateway.authz.visible_models(record.role)}

    @app.get("/v1/models/{name}", tags=["models"])
    def describe_model(name: str, request: Request) -> dict[str, Any]:
        """A model's input schema, output policy for this key, and the actions granted."""
        request_context(request).action = "describe"
        record = authenticate(request)
        limit_requests(record, request)
        served, actions = resolve(record, name, ("predict", "explain", "admin"), request)
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
        policy = effective_output(
            served.config.output, gateway.authz.output_override(record.role, served.name)
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
        ctx = request_context(request)
        ctx.action = "predict"
        record = authenticate(request)
        served, _ = resolve(record, name, ("predict",), request)
        observer = gateway.observer
        # the monitor runs after the answer; a key's next request waits for its own earlier
        # batches to be observed, then reads the key again (an alert may have restricted it)
        if observer is not None and await observer.settle(record.key_id):
            record = authenticate(request)
        if record.restriction == "block":
            ctx.reason = "key_blocked"
            raise Problem(403, "key_blocked", "this key is blocked (extraction monitor)")
        throttled = record.restriction == "throttle"

        async def refuse_if_limited(decision: Any = None) -> None:
            limit = decision or await gateway.limits.ahit(record.key_id, name, throttled=throttled)
            if not limit.allowed:
                ctx.reason = limit.reason
                raise Problem(
                    429,
                    limit.reason,
                    f"{limit.reason.replace('_', ' ')} exceeded; retry in {limit.retry_after_s} s",
                    {"Retry-After": str(limit.retry_after_s)},
                )

        # A small body of a key in good standing is read before its rate limits are checked,
        # so that limits and quota take one round trip together (Redis); a large or unsized
        # body, or a throttled key's, is read only once the rate limits admit the request.
        length = request.headers.get("content-length")
        body_first = (
            not throttled
            and length is not None
            and length.isdigit()
            and int(length) <= BODY_FIRST_MAX_BYTES
        )
        if not body_first:
            await refuse_if_limited()
        try:
            body = await read_body(length, request.stream(), config.max_body_bytes)
            x = parse_inputs(
                body,
                input_shape=served.classifier.input_shape,
                clip_range=served.classifier.clip_range,
                max_batch=served.config.max_batch,
            )
        except (PayloadTooLarge, ClientDisconnect, InvalidInput) as exc:
            if body_first:  # a refused body still counts against the rate limits, first
                await refuse_if_limited()
            if isinstance(exc, PayloadTooLarge):
                ctx.reason = "too_large"
                raise Problem(413, "too_large", str(exc)) from None
            if isinstance(exc, ClientDisconnect):
                ctx.reason = "client_disconnect"  # nobody is left to answer; the entry says why
                raise Problem(
                    400, "client_disconnect", "the client closed the connection"
                ) from None
            ctx.reason = exc.reason
            raise Problem(422, exc.reason, str(exc)) from None
        # reserved now, charged by the middleware once the audit entry is committed
        early: np.ndarray | None = None
        early_s = 0.0
        if body_first:
            admission = gateway.limits.admission(record.key_id, name, len(x), throttled=throttled)
            if not served.detectors and served.runs_inline(len(x)):
                # the model's answer is computed while the admission's round trip is in flight
                # and used only once it admits the request (nothing leaves before that)
                await asyncio.sleep(0)  # the admission leaves with this loop turn
                started = time.thread_time()
                early = served.classifier.predict_proba(x)
                early_s = time.thread_time() - started
            quota, ctx.quota_lease = await admission
            if quota.reason in ("rate_limit", "throttled"):
                await refuse_if_limited(quota)
        else:
            quota, ctx.quota_lease = await gateway.limits.areserve_quota(
                record.key_id, name, len(x)
            )
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
            probs = served.classifier.predict_proba(x) if early is None else early
            if observer is not None:
                observer.submit(record.key_id, name, x, probs, ctx.request_id)
                ctx.alerts.extend(observer.take_alerts(record.key_id))
            policy = _policy(served, record)
            content: dict[str, Any] = {
                "model": name,
                "outputs": policy.apply(probs),
                "policy": policy.describe(),
                "alerts": ctx.alerts if config.monitor.expose_alerts else [],
            }
            return content

        def timed_infer() -> dict[str, Any]:
            started = time.thread_time()
            try:
                return infer()
            finally:
                served.record_work(early_s + time.thread_time() - started)

        # a slow batch of one key must not stall the event loop that serves every other key
        # (and the audit commits): model work runs in the threadpool unless it is measured
        # to be cheaper than the thread hop itself (small batches of a sub-millisecond model)
        if served.runs_inline(len(x)):
            content = timed_infer()
        else:
            content = await run_in_threadpool(timed_infer)
        return JSONResponse(content)

    async def predict_asgi(scope: Scope, receive: Receive, send: Send, name: str) -> None:
        """``POST /v1/models/{name}/predict`` as a bare ASGI call (see :func:`add_routes`)."""
        request = Request(scope, receive)
        try:
            response = await predict(name, request)
        except Problem as exc:
            ctx = request_context(request)
            ctx.reason = ctx.reason or exc.reason
            response = _problem_response(exc)
        await response(scope, receive, send)

    return predict_asgi
