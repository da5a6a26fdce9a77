"""Security behaviour of the gateway: every refusal is the right status AND is audited."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlwarden.errors import ConfigError
from serve.helpers import Client as GatewayClient
from serve.helpers import sample


def _rows(app: Any) -> list[dict[str, Any]]:
    return list(app.state.gateway.audit.rows())


def _key(app: Any, role: str = "analyst", **kwargs: Any) -> str:
    return str(app.state.gateway.keys.create(role, **kwargs)[1])


def _predict(client: GatewayClient, key: str | None, body: Any = None, **kwargs: Any) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return client.post(
        "/v1/models/digits/predict",
        json={"inputs": [sample()]} if body is None else body,
        headers=headers,
        **kwargs,
    )


def test_valid_key_gets_rounded_probabilities_and_is_audited(
    make_gateway: Any, tiny_classifier: Any
) -> None:
    app = make_gateway()
    key = _key(app)
    with GatewayClient(app) as client:
        response = _predict(client, key)
    assert response.status_code == 200
    body = response.json()
    probs = tiny_classifier.predict_proba(np.full((1, 1, 8, 8), 0.5)).astype(np.float64)
    expected = np.round(probs, 2)
    assert body["outputs"]["probabilities"] == expected.tolist()
    assert body["policy"] == "probabilities(decimals=2)" and body["model"] == "digits"
    (row,) = _rows(app)
    assert (row["status"], row["decision"], row["action"], row["model"]) == (
        200,
        "allow",
        "predict",
        "digits",
    )
    assert (
        row["key_id"] == key.split("_")[1] and row["request_id"] == response.headers["x-request-id"]
    )


@pytest.mark.parametrize(
    ("presented", "reason"),
    [
        (None, "missing_key"),
        ("not-a-key", "malformed_key"),
        ("mlw_000000000000_" + "A" * 43, "unknown_key"),
    ],
)
def test_missing_malformed_unknown_keys_are_401_and_audited(
    make_gateway: Any, presented: str | None, reason: str
) -> None:
    app = make_gateway()
    with GatewayClient(app) as client:
        response = _predict(client, presented)
    public = "invalid_key" if reason == "unknown_key" else reason
    assert response.status_code == 401 and response.json()["error"] == public
    (row,) = _rows(app)
    assert (row["status"], row["reason"], row["key_id"], row["decision"]) == (
        401,
        reason,
        "anonymous",
        "deny",
    )


def test_wrong_secret_is_401_and_audited_under_the_key_id(make_gateway: Any) -> None:
    app = make_gateway()
    key = _key(app)
    forged = key[:-43] + ("B" * 43 if not key.endswith("B" * 43) else "C" * 43)
    with GatewayClient(app) as client:
        response = _predict(client, forged)
    assert response.status_code == 401
    (row,) = _rows(app)
    assert (row["reason"], row["key_id"]) == ("wrong_secret", key.split("_")[1])


def test_an_unknown_id_and_a_wrong_secret_look_the_same_to_the_caller(make_gateway: Any) -> None:
    app = make_gateway()
    key = _key(app)
    wrong_secret = key[:-43] + ("B" * 43 if not key.endswith("B" * 43) else "C" * 43)
    unknown_id = "mlw_" + ("0" * 12 if key[4:16] != "0" * 12 else "1" * 12) + key[16:]
    with GatewayClient(app) as client:
        answers = [_predict(client, k) for k in (wrong_secret, unknown_id)]
    assert [a.status_code for a in answers] == [401, 401]
    assert (
        answers[0].json()
        == answers[1].json()
        == {
            "error": "invalid_key",
            "detail": "a valid API key is required",
        }
    )
    assert [r["reason"] for r in _rows(app)] == ["wrong_secret", "unknown_key"]


def test_revocation_takes_effect_on_the_next_request(make_gateway: Any) -> None:
    app = make_gateway()
    key = _key(app)
    with GatewayClient(app) as client:
        assert _predict(client, key).status_code == 200
        app.state.gateway.keys.revoke(key.split("_")[1])
        response = _predict(client, key)
    assert response.status_code == 401 and response.json()["error"] == "revoked_key"
    assert [r["reason"] for r in _rows(app)] == ["ok", "revoked_key"]


def test_expired_key_is_refused(make_gateway: Any) -> None:
    app = make_gateway()
    key = _key(app, expires_at=time.time() - 1)
    with GatewayClient(app) as client:
        response = _predict(client, key)
    assert response.status_code == 401 and response.json()["error"] == "expired_key"
    assert _rows(app)[0]["reason"] == "expired_key"


def test_another_roles_model_is_404_and_empty_role_can_do_nothing(make_gateway: Any) -> None:
    app = make_gateway()
    other, nobody = _key(app, "other"), _key(app, "nobody")
    with GatewayClient(app) as client:
        # an ungranted model answers like a missing one (no enumeration; see test_red_team_findings)
        assert _predict(client, other).status_code == 404
        assert _predict(client, nobody).status_code == 404
        listed = client.get("/v1/models", headers={"X-API-Key": nobody})
        assert client.get("/v1/models/digits", headers={"X-API-Key": nobody}).status_code == 404
        assert client.get("/metrics", headers={"X-API-Key": other}).status_code == 403
    assert listed.json() == {"models": []}
    rows = _rows(app)
    assert [r["status"] for r in rows] == [404, 404, 200, 404, 403]
    assert rows[0]["reason"] == "forbidden" and rows[0]["key_id"] == other.split("_")[1]


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models/%2e%2e/predict",
        "/v1/models/..%2F..%2Fetc%2Fpasswd/predict",
        "/v1/models/digits%00/predict",
        "/v1/models/%2e%2e%2f%2e%2e%2fetc%2fpasswd/predict",
        "/v1/models/.hidden/predict",
        "/v1/models/digits..pt2/predict",
        "/v1/models/%252e%252e/predict",
    ],
)
def test_path_tricks_in_model_names_are_404_and_audited(
    make_gateway: Any, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_gateway()
    key = _key(app)
    opened: list[str] = []
    real_open = Path.open

    def spy(self: Path, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", spy)
    with GatewayClient(app) as client:
        response = client.post(path, json={"inputs": [sample()]}, headers={"X-API-Key": key})
    assert response.status_code == 404
    (row,) = _rows(app)
    assert row["status"] == 404 and row["decision"] == "deny"
    assert row["model"] in ("<invalid>", "-")
    assert not [p for p in opened if "passwd" in p or "hidden" in p]


def test_crlf_header_injection_is_refused_and_audited(make_gateway: Any) -> None:
    """Headers carrying CR/LF (smuggled past a proxy) never authenticate nor reach the log."""
    import asyncio

    app = make_gateway()
    key = _key(app)
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/models/digits/predict",
        "raw_path": b"/v1/models/digits/predict",
        "query_string": b"",
        "root_path": "",
        "client": ("10.0.0.9", 1234),
        "server": ("t", 80),
        "headers": [
            (b"authorization", f"Bearer {key}\r\nX-Injected: 1".encode()),
            (b"x-request-id", b"abc\r\nSet-Cookie: x=1"),
            (b"content-type", b"application/json"),
        ],
    }
    body = json.dumps({"inputs": [sample()]}).encode()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 401
    assert all(b"\r" not in v and b"\n" not in v for _, v in start["headers"])
    (row,) = _rows(app)
    assert (row["status"], row["reason"], row["client_ip"]) == (401, "malformed_key", "10.0.0.9")
    assert "\r" not in row["request_id"] and "Set-Cookie" not in json.dumps(row)


def test_oversize_bodies_are_413_before_parsing_declared_and_chunked(make_gateway: Any) -> None:
    app = make_gateway()
    key = _key(app)
    big = b'{"inputs": [' + b"0," * 20_000 + b"0]}"

    async def chunks() -> Any:
        for i in range(0, len(big), 4096):
            yield big[i : i + 4096]

    with GatewayClient(app) as client:
        declared = client.post(
            "/v1/models/digits/predict",
            content=big,
            headers={"X-API-Key": key, "content-type": "application/json"},
        )
        chunked = client.post(
            "/v1/models/digits/predict",
            content=chunks(),
            headers={"X-API-Key": key, "content-type": "application/json"},
        )
    assert declared.status_code == 413 and chunked.status_code == 413
    assert [r["reason"] for r in _rows(app)] == ["too_large", "too_large"]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"inputs": [[[[NaN, 0, 0, 0, 0, 0, 0, 0]]]]}', "non_finite"),
        (b'{"inputs": [[[[Infinity]]]]}', "non_finite"),
        (b'{"inputs": [[[[1e999, 0, 0, 0, 0, 0, 0, 0]]]]}', "bad_shape"),
        (b'{"inputs": [[[0.5, 0.5]]]}', "bad_shape"),
        (b'{"inputs": []}', "batch_size"),
        (b'{"inputs": "x"}', "bad_body"),
        (b'{"inputs": [[[["a","b","c","d","e","f","g","h"]]]]}', "bad_type"),
        (b"not json", "bad_json"),
        (b'{"inputs": [[[[0.5]]]], "extra": 1}', "bad_body"),
    ],
)
def test_invalid_inputs_are_422_with_a_reason_and_audited(
    make_gateway: Any, raw: bytes, reason: str
) -> None:
    app = make_gateway()
    key = _key(app)
    with GatewayClient(app) as client:
        response = client.post(
            "/v1/models/digits/predict",
            content=raw,
            headers={"X-API-Key": key, "content-type": "application/json"},
        )
    assert response.status_code == 422 and response.json()["error"] == reason
    assert _rows(app)[0]["reason"] == reason


def test_non_finite_overflow_out_of_range_and_batch_limits(make_gateway: Any) -> None:
    app = make_gateway()
    key = _key(app)
    inf_sample = sample()
    inf_sample[0][0][0] = 1e999  # json.dumps writes Infinity; build the text by hand instead
    with GatewayClient(app) as client:
        overflow = client.post(
            "/v1/models/digits/predict",
            content=json.dumps({"inputs": [sample()]}).replace("0.5", "1e999", 1),
            headers={"X-API-Key": key, "content-type": "application/json"},
        )
        out_of_range = _predict(client, key, {"inputs": [sample(1.5)]})
        too_many = _predict(client, key, {"inputs": [sample()] * 9})
    assert overflow.status_code == 422 and overflow.json()["error"] == "non_finite"
    assert out_of_range.json()["error"] == "out_of_range"
    assert (
        too_many.json()["error"] == "batch_size" and "between 1 and 8" in too_many.json()["detail"]
    )


def test_rate_limit_and_quota_answer_429_with_retry_after(make_gateway: Any) -> None:
    app = make_gateway(rate_limits={"per_key_model": ["2/minute"], "daily_quota": 1000})
    quota_app = make_gateway(rate_limits={"per_key_model": ["100/second"], "daily_quota": 3})
    key, quota_key = _key(app), _key(quota_app)
    with GatewayClient(app) as client:
        statuses = [_predict(client, key).status_code for _ in range(2)]
        limited = _predict(client, key)
    with GatewayClient(quota_app) as client:
        quota_statuses = [_predict(client, quota_key).status_code for _ in range(5)]
        over = _predict(client, quota_key)
    assert statuses == [200, 200] and limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert quota_statuses == [200, 200, 200, 429, 429]
    assert over.json()["error"] == "quota"
    assert 86_000 <= int(over.headers["retry-after"]) <= 86_400
    assert [r["reason"] for r in _rows(quota_app)][-3:] == ["quota"] * 3


def test_refused_bodies_count_against_the_rate_limit_which_answers_first(
    make_gateway: Any,
) -> None:
    """Limits and quota are one call (one Redis round trip) after a small body is read, with the
    answers of checking the rate first: a bad body counts against the rate, a limited request
    gets 429 whatever its body. (``RateLimits.aadmit`` is checked on Redis in test_backends.)"""
    app = make_gateway(
        rate_limits={
            "strategy": "fixed-window",
            "per_key_model": ["3/minute"],
            "daily_quota": 1000,
        }
    )
    key = _key(app)
    bad = {"inputs": [[True] * 64]}
    with GatewayClient(app) as client:
        statuses = [_predict(client, key, body).status_code for body in (bad, None, bad)]
        limited_good = _predict(client, key)
        limited_bad = _predict(client, key, bad)
        too_large = _predict(client, key, {"inputs": [sample()] * 2000})  # read after the limit
    assert statuses == [422, 200, 422]
    assert [r.status_code for r in (limited_good, limited_bad, too_large)] == [429, 429, 429]
    assert limited_bad.json()["error"] == "rate_limit"
    assert [r["reason"] for r in _rows(app)][-3:] == ["rate_limit"] * 3


def test_daily_quota_counts_queries_not_requests(make_gateway: Any) -> None:
    app = make_gateway(rate_limits={"per_key_model": ["100/second"], "daily_quota": 5})
    key = _key(app)
    with GatewayClient(app) as client:
        batch_of_four = _predict(client, key, {"inputs": [sample()] * 4})
        batch_of_two = _predict(client, key, {"inputs": [sample()] * 2})
        last_one = _predict(client, key)
        spent = _predict(client, key)
    assert batch_of_four.status_code == 200
    assert batch_of_two.status_code == 429 and batch_of_two.json()["error"] == "quota"
    assert "2 queries" in batch_of_two.json()["detail"]
    # the refused batch (4 + 2 > 5) spent nothing: the last query of the day still fits
    assert last_one.status_code == 200
    assert spent.status_code == 429 and spent.json()["error"] == "quota"
    assert [r["reason"] for r in _rows(app)][-4:] == ["ok", "quota", "ok", "quota"]


def test_label_only_role_sees_labels_only(make_gateway: Any, tiny_classifier: Any) -> None:
    app = make_gateway()
    key = _key(app, "labeler")
    x = np.random.default_rng(0).uniform(0, 1, (3, 1, 8, 8))
    with GatewayClient(app) as client:
        body = _predict(client, key, {"inputs": x.tolist()}).json()
    assert body["outputs"] == {"labels": tiny_classifier.predict(x).tolist()}
    assert body["policy"] == "label"


def test_secret_never_reaches_logs_or_database(
    make_gateway: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app = make_gateway(database=f"sqlite:///{tmp_path}/secret.db")
    key = _key(app)
    secret = key.split("_", 2)[2]
    with GatewayClient(app) as client:
        _predict(client, key)
        _predict(client, key[:-1] + ("A" if key[-1] != "A" else "B"))
        client.get("/v1/models", headers={"Authorization": f"Bearer {key}"})
    app.state.gateway.close()
    stored = app.state.gateway.keys.get(key.split("_")[1])
    assert stored is not None
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("secret.db*"))
    assert secret.encode() not in raw and secret[:20].encode() not in raw
    assert hashlib.sha256(secret.encode()).hexdigest().encode() in raw  # only the hash is stored
    assert secret not in caplog.text
    for row in _rows(app):
        assert secret not in json.dumps(row)


def test_metrics_need_a_metrics_role_and_count_requests(make_gateway: Any) -> None:
    app = make_gateway()
    key, ops = _key(app), _key(app, "ops")
    with GatewayClient(app) as client:
        _predict(client, key)
        _predict(client, None)
        anonymous = client.get("/metrics")
        text = client.get("/metrics", headers={"X-API-Key": ops}).text
    assert anonymous.status_code == 401
    assert 'mlwarden_requests_total{model="digits",status="200"} 1.0' in text
    assert 'mlwarden_rejections_total{reason="missing_key"} 2.0' in text
    assert "mlwarden_request_latency_seconds_bucket" in text


class _BlockingMonitor:
    """A stand-in monitor: alerts on the second query of a key with action ``block``."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    def observe(
        self, key_id: str, model: str, x: np.ndarray, probs: np.ndarray
    ) -> list[dict[str, Any]]:
        assert x.shape[1:] == (1, 8, 8) and probs.shape == (len(x), 10)
        self.seen[key_id] = self.seen.get(key_id, 0) + len(x)
        if self.seen[key_id] == 2:
            return [
                {
                    "kind": "prada",
                    "key_id": key_id,
                    "model": model,
                    "score": 0.9,
                    "threshold": 0.95,
                    "message": "test alert",
                    "action": "block",
                }
            ]
        return []


def test_monitor_alert_is_audited_and_its_action_blocks_the_keys_next_request(
    tmp_path: Path, tiny_classifier: Any
) -> None:
    """The monitor runs after the answer; the alert's action applies from the next request on."""
    from mlwarden.serve.app import create_app
    from mlwarden.serve.config import gateway_config_from_dict
    from serve.helpers import config_dict

    cfg = gateway_config_from_dict(config_dict(f"sqlite:///{tmp_path}/monitor.db"))
    monitor = _BlockingMonitor()
    app = create_app(
        cfg, models={"digits": tiny_classifier, "other-model": tiny_classifier}, monitor=monitor
    )
    key = _key(app)
    with GatewayClient(app) as client:
        first, second, third = (_predict(client, key) for _ in range(3))
    assert first.status_code == 200 and first.json()["alerts"] == []
    # the second batch raised the alert after its answer; the third request waited for that
    # observation and found the key blocked
    assert second.status_code == 200 and "probabilities" in second.json()["outputs"]
    assert third.status_code == 403 and third.json()["error"] == "key_blocked"
    rows = _rows(app)
    (alert_row,) = [r for r in rows if r["action"] == "monitor"]
    assert json.loads(alert_row["alerts"])[0]["kind"] == "prada"
    assert alert_row["decision"] == "alert" and alert_row["reason"] == "prada -> block"
    assert alert_row["client_request_id"] == second.headers["x-request-id"]
    assert app.state.gateway.keys.get(key.split("_")[1]).restriction == "block"
    app.state.gateway.close()


class _CountingMonitor:
    """A stand-in monitor that counts the queries it observes per key."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    def observe(self, key_id: str, model: str, x: np.ndarray, probs: np.ndarray) -> list[Any]:
        self.seen[key_id] = self.seen.get(key_id, 0) + len(x)
        return []


@pytest.mark.parametrize(
    "limits", [{"daily_quota": 3}, {"per_key_model": ["3/minute"], "strategy": "fixed-window"}]
)
def test_a_refused_request_is_never_observed_nor_answered(
    tmp_path: Path, tiny_classifier: Any, limits: dict[str, Any]
) -> None:
    """The model may run while the admission's round trip is in flight; a request the limits
    refuse still reaches neither the monitor nor the client."""
    from mlwarden.serve.app import create_app
    from mlwarden.serve.config import gateway_config_from_dict
    from serve.helpers import config_dict

    cfg = gateway_config_from_dict(
        config_dict(f"sqlite:///{tmp_path}/refused.db", rate_limits=limits)
    )
    monitor = _CountingMonitor()
    app = create_app(
        cfg, models={"digits": tiny_classifier, "other-model": tiny_classifier}, monitor=monitor
    )
    key = _key(app)
    with GatewayClient(app) as client:
        answers = [_predict(client, key) for _ in range(6)]
    assert [a.status_code for a in answers] == [200] * 3 + [429] * 3
    assert all("outputs" not in a.json() for a in answers[3:])
    assert monitor.seen == {key.split("_")[1]: 3}
    app.state.gateway.close()


def test_a_keys_alerts_come_back_in_its_next_answer(tmp_path: Path, tiny_classifier: Any) -> None:
    from mlwarden.serve.app import create_app
    from mlwarden.serve.config import gateway_config_from_dict
    from serve.helpers import config_dict

    raw = config_dict(f"sqlite:///{tmp_path}/monitor.db")
    raw["monitor"] = {"action": "none"}
    app = create_app(
        gateway_config_from_dict(raw),
        models={"digits": tiny_classifier, "other-model": tiny_classifier},
        monitor=_BlockingMonitor(),
    )
    key = _key(app)
    with GatewayClient(app) as client:
        answers = [_predict(client, key) for _ in range(4)]
    assert [a.status_code for a in answers] == [200] * 4
    assert [len(a.json()["alerts"]) for a in answers] == [0, 0, 1, 0]
    carried = answers[2].json()["alerts"][0]
    assert (
        carried["kind"] == "prada" and carried["request_id"] == answers[1].headers["x-request-id"]
    )
    app.state.gateway.close()


def test_monitor_alerts_are_posted_to_the_webhook(tmp_path: Path, tiny_classifier: Any) -> None:
    import http.server
    import threading

    from mlwarden.serve.app import create_app
    from mlwarden.serve.config import gateway_config_from_dict
    from serve.helpers import config_dict

    received: list[dict[str, Any]] = []
    arrived = threading.Event()

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            received.append({"type": self.headers["content-type"], "body": json.loads(body)})
            self.send_response(204)
            self.end_headers()
            arrived.set()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        raw = config_dict(f"sqlite:///{tmp_path}/hook.db")
        raw["monitor"] = {"webhook_url": f"http://127.0.0.1:{server.server_port}/alerts"}
        app = create_app(
            gateway_config_from_dict(raw),
            models={"digits": tiny_classifier, "other-model": tiny_classifier},
            monitor=_BlockingMonitor(),
        )
        key = _key(app)
        with GatewayClient(app) as client:
            for _ in range(2):
                _predict(client, key)
        assert arrived.wait(10), "the webhook received nothing"
    finally:
        server.shutdown()
        server.server_close()
        app.state.gateway.close()
    assert len(received) == 1 and received[0]["type"] == "application/json"
    (alert,) = received[0]["body"]["alerts"]
    assert alert["kind"] == "prada" and alert["key_id"] == key.split("_")[1]
    assert key not in json.dumps(received)  # the key id travels, never the secret


@pytest.mark.parametrize("url", ["ftp://x/y", "127.0.0.1:9/alerts", "http://", 7])
def test_a_webhook_that_is_not_an_http_url_is_a_config_error(tmp_path: Path, url: Any) -> None:
    from mlwarden.serve.config import gateway_config_from_dict
    from serve.helpers import config_dict

    raw = config_dict(f"sqlite:///{tmp_path}/hook.db")
    raw["monitor"] = {"webhook_url": url}
    with pytest.raises(ConfigError, match=r"monitor\.webhook_url"):
        gateway_config_from_dict(raw)


def test_openapi_and_model_schema_are_published(make_gateway: Any) -> None:
    app = make_gateway(docs=True)
    key = _key(app)
    with GatewayClient(app) as client:
        spec = client.get("/openapi.json").json()
        described = client.get("/v1/models/digits", headers={"X-API-Key": key}).json()
        docs = client.get("/docs")
    assert "/v1/models/{name}/predict" in spec["paths"] and docs.status_code == 200
    inputs = described["input_schema"]["properties"]["inputs"]
    assert inputs["maxItems"] == 8 and inputs["items"]["minItems"] == 1
    assert inputs["items"]["items"]["items"]["items"] == {
        "type": "number",
        "minimum": 0.0,
        "maximum": 1.0,
    }
    assert described["quota_remaining"] == 1000 and not math.isnan(described["n_classes"])


@pytest.mark.parametrize("action", ["flag", "reject"])
def test_configured_detector_flags_or_rejects_far_inputs(
    make_gateway: Any, tiny_classifier: Any, tmp_path: Path, action: str
) -> None:
    from mlwarden.defenses.detectors import KNNDetector

    rng = np.random.default_rng(0)
    clean = rng.uniform(0.0, 0.3, (200, 1, 8, 8)).astype(np.float32)
    detector = KNNDetector(tiny_classifier, k=3).fit(clean[:150]).calibrate(clean[150:], fpr=0.05)
    detector.save(tmp_path / "knn")
    models = {
        "digits": {
            "source": "zoo:unused",
            "max_batch": 8,
            "detectors": [{"path": str(tmp_path / "knn"), "action": action}],
        }
    }
    app = make_gateway(models=models)
    key = _key(app)
    with GatewayClient(app) as client:
        near = _predict(client, key, {"inputs": [clean[0].tolist()]})
        far = _predict(client, key, {"inputs": [sample(1.0)]})
    assert near.status_code == 200 and near.json()["alerts"] == []
    if action == "flag":
        assert far.status_code == 200 and far.json()["alerts"][0]["kind"] == "detector:knn"
    else:
        assert far.status_code == 422 and far.json()["error"] == "detector"
    assert json.loads(_rows(app)[1]["alerts"])[0]["kind"] == "detector:knn"


def test_a_mixed_case_table_prefix_is_refused(tmp_path: Path) -> None:
    from mlwarden.serve.config import gateway_config_from_dict
    from mlwarden.serve.db import Database
    from serve.helpers import config_dict

    raw = config_dict(f"sqlite:///{tmp_path}/p.db")
    raw["table_prefix"] = "GW_"  # PostgreSQL would fold it to gw_ in unquoted SQL
    with pytest.raises(ConfigError, match="table_prefix"):
        gateway_config_from_dict(raw)
    with pytest.raises(ConfigError, match="table_prefix"):
        Database(f"sqlite:///{tmp_path}/p.db", prefix="GW_")


def test_a_model_name_with_a_trailing_newline_is_not_a_model(make_gateway: Any) -> None:
    app = make_gateway()
    key = _key(app)
    with GatewayClient(app) as client:
        response = client.post(
            "/v1/models/digits%0A/predict",
            json={"inputs": [sample()]},
            headers={"X-API-Key": key},
        )
    assert response.status_code == 404
    (row,) = _rows(app)
    assert (row["model"], row["reason"]) == ("<invalid>", "bad_model_name")


def test_listing_and_describing_models_count_against_the_key_rate_limit(
    make_gateway: Any,
) -> None:
    app = make_gateway(rate_limits={"per_key_model": ["2/minute"], "daily_quota": 1000})
    key = _key(app)
    with GatewayClient(app) as client:
        statuses = [
            client.get(url, headers={"X-API-Key": key}).status_code
            for url in ("/v1/models", "/v1/models/digits", "/v1/models")
        ]
        limited = client.get("/v1/models", headers={"X-API-Key": key})
    assert statuses == [200, 200, 429]
    assert limited.json()["error"] == "rate_limit" and int(limited.headers["retry-after"]) >= 1
    assert [r["reason"] for r in _rows(app)][-2:] == ["rate_limit", "rate_limit"]


def test_a_blocked_model_call_does_not_stall_other_requests(
    tmp_path: Path, tiny_classifier: Any
) -> None:
    """The model runs off the event loop: while one prediction is stuck, others are answered."""
    import asyncio
    import threading

    import httpx

    from mlwarden.serve.app import create_app
    from mlwarden.serve.config import gateway_config_from_dict
    from serve.helpers import config_dict

    reached = threading.Event()  # the stuck request is inside the model
    release = threading.Event()
    order: list[str] = []

    class Stuck:
        def __getattr__(self, name: str) -> Any:
            return getattr(tiny_classifier, name)

        def predict_proba(self, x: np.ndarray) -> np.ndarray:
            reached.set()
            release.wait(10)  # a bug that blocks the loop would deadlock here until the timeout
            order.append("prediction done")
            return tiny_classifier.predict_proba(x)

    cfg = gateway_config_from_dict(config_dict(f"sqlite:///{tmp_path}/stuck.db"))
    app = create_app(cfg, models={"digits": Stuck(), "other-model": tiny_classifier})  # type: ignore[dict-item]
    key = _key(app)

    async def scenario() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            headers = {"X-API-Key": key}
            stuck = asyncio.create_task(
                client.post(
                    "/v1/models/digits/predict", json={"inputs": [sample()]}, headers=headers
                )
            )
            # wait (off the loop) until the stuck request is inside the model: the list below
            # is then asked while the model holds its request, never before it got there
            assert await asyncio.to_thread(reached.wait, 10), "the request never reached the model"
            listed = await client.get("/v1/models", headers=headers)
            order.append("list answered")
            release.set()
            return [listed.status_code, (await stuck).status_code]

    try:
        assert asyncio.run(scenario()) == [200, 200]
    finally:
        release.set()
        app.state.gateway.close()
    assert order == ["list answered", "prediction done"]


def test_a_client_that_disconnects_mid_body_is_audited_as_such(make_gateway: Any) -> None:
    import asyncio

    app = make_gateway()
    key = _key(app)
    messages = [
        {"type": "http.request", "body": b'{"inp', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/models/digits/predict",
        "raw_path": b"/v1/models/digits/predict",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"gateway"),
            (b"x-api-key", key.encode()),
            (b"content-type", b"application/json"),
            (b"content-length", b"1000"),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("gateway", 80),
    }
    asyncio.run(app(scope, receive, send))
    (row,) = _rows(app)
    assert (row["status"], row["reason"]) == (400, "client_disconnect")


def test_an_unexpected_error_is_a_json_500_with_the_request_id_and_audited(
    tmp_path: Path, tiny_classifier: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from mlwarden.serve.app import create_app
    from mlwarden.serve.config import gateway_config_from_dict
    from serve.helpers import config_dict

    class Broken:
        def __getattr__(self, name: str) -> Any:
            return getattr(tiny_classifier, name)

        def predict_proba(self, x: np.ndarray) -> np.ndarray:
            raise RuntimeError("model exploded")

    cfg = gateway_config_from_dict(config_dict(f"sqlite:///{tmp_path}/broken.db"))
    app = create_app(cfg, models={"digits": Broken(), "other-model": tiny_classifier})  # type: ignore[dict-item]
    key = _key(app)
    try:
        with caplog.at_level(logging.ERROR), GatewayClient(app) as client:
            response = _predict(client, key)
        assert response.status_code == 500
        assert response.json()["error"] == "internal_error"
        assert "exploded" not in response.text  # internals stay in the server log
        (row,) = _rows(app)
        assert (row["status"], row["reason"]) == (500, "error")
        assert row["request_id"] == response.headers["x-request-id"]
        assert "model exploded" in caplog.text and key not in caplog.text
    finally:
        app.state.gateway.close()


def test_only_small_batches_of_a_measured_fast_model_run_on_the_event_loop(
    tiny_classifier: Any,
) -> None:
    from mlwarden.serve.config import ModelConfig
    from mlwarden.serve.loading import ServedModel

    served = ServedModel(ModelConfig(name="digits", source="zoo:digits-cnn"), tiny_classifier)
    assert not served.runs_inline(1)  # not measured yet: the threadpool
    served.record_work(0.0002)
    assert served.runs_inline(1) and served.runs_inline(8)
    assert not served.runs_inline(9)  # a large batch always leaves the loop
    for _ in range(14):
        served.record_work(0.0002)
    served.record_work(0.004)  # one slow call (a descheduled CPU) does not move it off
    assert served.runs_inline(1)
    served.record_work(0.5)  # one call this slow (a hang) does, at once, for a while
    for _ in range(7):
        assert not served.runs_inline(1)
        served.record_work(0.0002)
    served.record_work(0.0002)  # as many fast calls as the window's majority: back on the loop
    assert served.runs_inline(1)
    for _ in range(15):
        served.record_work(0.0002)
    for _ in range(8):
        served.record_work(0.02)  # the model became slow: most recent calls over 1 ms
    assert not served.runs_inline(1)


def test_no_answer_leaves_without_its_audit_entry(
    make_gateway: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_gateway()
    key = _key(app)

    async def broken_append(entry: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(app.state.gateway.audit, "append_async", broken_append)
    with GatewayClient(app) as client:
        response = _predict(client, key)
    assert response.status_code == 503
    assert response.json() == {
        "error": "audit_unavailable",
        "detail": "the audit log is unavailable",
    }
    assert "probabilities" not in response.text  # the model's answer was withheld


def test_predict_answers_other_methods_405_and_stays_in_the_openapi_document(
    make_gateway: Any,
) -> None:
    """Predict is served by a plain Starlette route (POST only); FastAPI keeps the rest."""
    app = make_gateway(docs=True)
    key = _key(app)
    with GatewayClient(app) as client:
        assert _predict(client, key).status_code == 200
        wrong = client.get("/v1/models/digits/predict", headers={"Authorization": f"Bearer {key}"})
        paths = client.get("/openapi.json").json()["paths"]
    assert wrong.status_code == 405 and wrong.json() == {"detail": "Method Not Allowed"}
    assert "requestBody" in paths["/v1/models/{name}/predict"]["post"]
    assert 405 in {r["status"] for r in _rows(app)}  # audited like any other answer
