"""The audit middleware: every request (except ``/healthz``) is audited before its answer leaves.

The middleware gives each request a :class:`RequestContext` (a fresh, unique id generated here
and returned in ``X-Request-ID``; a client's own well-formed ``X-Request-ID`` is kept beside it,
never used as the entry's id), works out the client address (the TCP peer, or what a configured
trusted proxy reports in ``X-Forwarded-For``; the peer is stored too), appends the audit entry when the response starts and sends
nothing until the commit returns; if the commit fails the caller gets a 503 instead of the
model's answer. An unhandled error becomes an audited JSON 500 carrying the request id.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from mlwarden.serve.audit import AuditEntry
from mlwarden.serve.gateway import Gateway

__all__ = ["AuditMiddleware", "RequestContext", "client_address", "request_context"]

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
#: the prediction route (``{name}`` as Starlette's path parameter matches it: no ``/``)
_PREDICT_PATH = re.compile(r"/v1/models/([^/]+)/predict")
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


@dataclass
class RequestContext:
    """What the handlers learn about a request, for its audit entry."""

    request_id: str
    client_request_id: str = "-"
    key_id: str = "anonymous"
    model: str = "-"
    action: str = "-"
    reason: str = ""
    alerts: list[dict[str, Any]] = field(default_factory=list)
    restriction: str | None = None
    #: a quota reservation to confirm once the entry is committed (``RateLimits.reserve_quota``)
    quota_lease: Any = None


def request_context(request: Any) -> RequestContext:
    """The :class:`RequestContext` the middleware attached to ``request`` (a Starlette request)."""
    ctx = request.scope.get("state", {}).get("mlw")
    if ctx is None:  # pragma: no cover - the middleware always sets it
        ctx = RequestContext(request_id=uuid.uuid4().hex)
    return ctx  # type: ignore[no-any-return]


_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def client_address(peer: str, forwarded_for: list[str], trusted: tuple[_Network, ...]) -> str:
    """The client's address: ``peer`` unless ``peer`` is a trusted proxy.

    Behind trusted proxies, ``X-Forwarded-For`` is read from the right (the hop nearest to us)
    and the first address that is not itself a trusted proxy is the client; an entry that is
    not an IP address stops the walk at the last trusted hop. A client can prepend anything to
    the header, so nothing left of that point is believed.
    """
    if not trusted:
        return peer
    current = _address(peer)
    if current is None or not any(current in net for net in trusted):
        return peer
    client = peer
    hops = [hop for header in forwarded_for for hop in header.split(",")]
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            break
        client = str(address)
        if not any(address in net for net in trusted):
            break
    return client


class AuditMiddleware:
    """Audit every request (except ``/healthz``) before its response leaves; record metrics."""

    def __init__(
        self,
        app: Callable[[Scope, Receive, Send], Awaitable[None]],
        gateway: Gateway,
        predict: Callable[[Scope, Receive, Send, str], Awaitable[None]] | None = None,
    ) -> None:
        self.app = app
        self.gateway = gateway
        #: ``POST /v1/models/{name}/predict`` called directly, past the framework's layers
        self.predict = predict
        self.trusted = tuple(
            ipaddress.ip_network(net, strict=False) for net in gateway.config.trusted_proxies
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") == "/healthz":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        given = None
        forwarded: list[str] = []
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                text = value.decode("latin-1")
                given = text if _REQUEST_ID.fullmatch(text) else None
            elif name == b"x-forwarded-for":
                forwarded.append(value.decode("latin-1"))
        ctx = RequestContext(request_id=uuid.uuid4().hex, client_request_id=given or "-")
        scope.setdefault("state", {})["mlw"] = ctx
        state = {"audited": False, "failed": False}
        client = scope.get("client")
        peer_ip = str(client[0]) if client else "-"
        client_ip = client_address(peer_ip, forwarded, self.trusted)

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
                peer_ip=peer_ip,
                client_request_id=ctx.client_request_id,
            )
            metric_model = ctx.model if ctx.model in self.gateway.models else "-"
            self.gateway.metrics.observe(metric_model, status, latency_s, reason)
            lease, ctx.quota_lease = ctx.quota_lease, None
            try:
                await self.gateway.audit.append_async(entry)
            except Exception:
                logger.error("audit log unavailable; answering 503 (request %s)", ctx.request_id)
                if lease is not None:  # charge only what is audited
                    await self.gateway.limits.arelease_quota(lease)
                return False
            if lease is not None:  # charged once audited (on Redis, in the next loop turn)
                self.gateway.limits.confirm_soon(lease)
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

        predict = _PREDICT_PATH.fullmatch(scope["path"]) if self.predict is not None else None
        try:
            if predict is not None and scope["method"] == "POST" and not scope.get("root_path"):
                assert self.predict is not None
                await self.predict(scope, receive, send_audited, predict.group(1))
            else:
                await self.app(scope, receive, send_audited)
            if self.gateway.observer is not None:  # the answer has left: now the monitor
                self.gateway.observer.schedule()
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
