"""The red-team findings of issue 13, one specification each (each failed before its fix)."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import re
import socket
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlwarden.errors import ConfigError
from mlwarden.models.output_policy import OutputPolicy
from mlwarden.serve.config import ALL_CLASSES, gateway_config_from_dict, load_gateway_config
from serve.helpers import ROLES, sample
from serve.helpers import Client as GatewayClient


def _key(app: Any, role: str = "analyst") -> str:
    return str(app.state.gateway.keys.create(role)[1])


def _rows(app: Any) -> list[dict[str, Any]]:
    return list(app.state.gateway.audit.rows())


def _predict(client: GatewayClient, key: str, body: Any = None, **kwargs: Any) -> Any:
    return client.post(
        "/v1/models/digits/predict",
        json={"inputs": [sample()]} if body is None else body,
        headers={"X-API-Key": key, **kwargs.pop("headers", {})},
        **kwargs,
    )


# -- finding 1: configuration fails closed ------------------------------------------------------
_BASE: dict[str, Any] = {"models": {"digits": "zoo:digits-cnn"}, "roles": ROLES}


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"metrics_public": "false"}, "metrics_public"),
        ({"scan_models": "no"}, "scan_models"),
        ({"monitor": {"enabled": "false"}}, "monitor.enabled"),
        ({"monitor": {"expose_alerts": "false"}}, "monitor.expose_alerts"),
        ({"metrics_public": 0}, "metrics_public"),
        ({"max_body_bytes": "1000"}, "max_body_bytes"),
        ({"max_body_bytes": True}, "max_body_bytes"),
        ({"rate_limits": {"daily_quota": 10.5}}, "rate_limits.daily_quota"),
        ({"models": {"digits": {"source": "zoo:d", "max_batch": "8"}}}, "models.digits.max_batch"),
        ({"docs": "yes"}, "docs"),
    ],
)
def test_a_string_or_number_where_a_boolean_or_integer_goes_is_an_error_naming_its_path(
    change: dict[str, Any], path: str
) -> None:
    with pytest.raises(ConfigError, match="(?m)^  " + re.escape(path) + ": must be"):
        gateway_config_from_dict({**_BASE, **change})


def test_one_error_names_the_path_of_every_bad_value(tmp_path: Path) -> None:
    data = {
        **_BASE,
        "metrics_public": "false",
        "scan_models": "no",
        "monitor": {"enabled": "yes", "expose_alerts": "no", "colour": 1},
        "audit": {"batch_max": 0},
    }
    file = tmp_path / "gateway.yaml"
    file.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as raised:
        load_gateway_config(file)
    message = str(raised.value)
    assert "6 invalid value(s)" in message
    for path in (
        "metrics_public",
        "scan_models",
        "monitor.enabled",
        "monitor.expose_alerts",
        "monitor.colour: unknown key",
        "audit.batch_max",
    ):
        assert f"\n  {path}" in message


def test_yaml_booleans_are_read_as_written() -> None:
    cfg = gateway_config_from_dict(
        {**_BASE, "metrics_public": True, "scan_models": False, "monitor": {"enabled": True}}
    )
    assert (cfg.metrics_public, cfg.scan_models, cfg.monitor.enabled) == (True, False, True)
    assert cfg.docs is False and cfg.trusted_proxies == ()


# -- finding 2: booleans among numbers -----------------------------------------------------------
@pytest.mark.parametrize("literal", ["true", "false", "null", '"0.5"'])
def test_a_non_number_anywhere_in_numeric_inputs_is_422(make_gateway: Any, literal: str) -> None:
    app = make_gateway()
    key = _key(app)
    values = ", ".join([literal] + ["0.5"] * 7)
    rows = ", ".join([f"[{values}]"] + ["[" + ", ".join(["0.5"] * 8) + "]"] * 7)
    body = '{"inputs": [[[' + rows + "]]]}"
    with GatewayClient(app) as client:
        response = client.post(
            "/v1/models/digits/predict",
            content=body,
            headers={"X-API-Key": key, "Content-Type": "application/json"},
        )
    assert response.status_code == 422 and response.json()["error"] == "bad_type"


# -- finding 3: no redirects ---------------------------------------------------------------------
def test_a_trailing_slash_is_404_not_a_redirect_to_the_host_header(make_gateway: Any) -> None:
    app = make_gateway()
    with GatewayClient(app) as client:
        response = client.post(
            "/v1/models/digits/predict/",
            json={"inputs": [sample()]},
            headers={"Host": "evil.example"},
        )
    assert response.status_code == 404 and "location" not in response.headers
    (row,) = _rows(app)
    assert row["status"] == 404


# -- finding 4: forwarded client addresses -------------------------------------------------------
def test_x_forwarded_for_is_ignored_without_trusted_proxies(make_gateway: Any) -> None:
    app = make_gateway()
    with GatewayClient(app, client_ip="127.0.0.1") as client:
        _predict(client, _key(app), headers={"X-Forwarded-For": "6.6.6.6"})
    (row,) = _rows(app)
    assert (row["client_ip"], row["peer_ip"]) == ("127.0.0.1", "127.0.0.1")


def test_x_forwarded_for_is_believed_only_from_a_trusted_proxy(make_gateway: Any) -> None:
    app = make_gateway(trusted_proxies=["10.0.0.0/8"])
    key = _key(app)
    spoofed = {"X-Forwarded-For": "6.6.6.6, 203.0.113.9, 10.1.1.1"}
    with GatewayClient(app, client_ip="10.0.0.2") as client:
        _predict(client, key, headers=spoofed)
    with GatewayClient(app, client_ip="192.0.2.7") as client:
        _predict(client, key, headers=spoofed)
    behind_proxy, direct = _rows(app)
    # the rightmost address that is not a trusted proxy: the client's own 6.6.6.6 is not believed
    assert (behind_proxy["client_ip"], behind_proxy["peer_ip"]) == ("203.0.113.9", "10.0.0.2")
    assert (direct["client_ip"], direct["peer_ip"]) == ("192.0.2.7", "192.0.2.7")


def test_mlwarden_serve_leaves_forwarded_headers_to_the_gateway(
    tmp_path: Path, tiny_model_file: Path
) -> None:
    """uvicorn's own proxy-headers middleware (on by default, trusting 127.0.0.1) would replace
    the TCP peer with whatever ``X-Forwarded-For`` a local client sends, before the gateway sees
    it; ``mlwarden serve`` turns it off, so ``trusted_proxies`` alone decides."""
    import subprocess
    import sys
    import time
    import urllib.request

    from mlwarden.serve.audit import AuditLog
    from mlwarden.serve.db import Database
    from mlwarden.serve.keys import KeyStore

    config = tmp_path / "gateway.yaml"
    database = f"sqlite:///{tmp_path}/gw.db"
    config.write_text(
        yaml.safe_dump(
            {
                "database": database,
                "models": {"digits": {"source": str(tiny_model_file)}},
                "roles": ROLES,
            }
        )
    )
    db = Database(database)
    secret = KeyStore(db).create("analyst")[1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launch = "from mlwarden.cli.app import main; raise SystemExit(main())"
    argv = ["serve", "--config", str(config), "--port", str(port)]
    server = subprocess.Popen([sys.executable, "-c", launch, *argv], cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.2)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/models/digits/predict",
            data=json.dumps({"inputs": [sample()]}).encode(),
            headers={
                "Content-Type": "application/json",
                "X-API-Key": secret,
                "X-Forwarded-For": "6.6.6.6",
            },
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
    finally:
        server.terminate()
        server.wait(timeout=30)
    (row,) = AuditLog(db).rows()
    db.dispose()
    assert (row["client_ip"], row["peer_ip"]) == ("127.0.0.1", "127.0.0.1")


def test_trusted_proxies_must_be_addresses_or_networks() -> None:
    with pytest.raises(ConfigError, match=r"trusted_proxies\[0\]: 'proxy\.local' is not an IP"):
        gateway_config_from_dict({**_BASE, "trusted_proxies": ["proxy.local"]})


# -- finding 5: request ids ----------------------------------------------------------------------
def test_every_entry_gets_a_unique_server_id_and_keeps_the_clients_own(make_gateway: Any) -> None:
    app = make_gateway()
    keys = [_key(app), _key(app)]
    with GatewayClient(app) as client:
        answers = [
            _predict(client, keys[i % 2], headers={"X-Request-ID": "p001"}) for i in range(4)
        ]
    rows = _rows(app)
    ids = [r["request_id"] for r in rows]
    assert len(set(ids)) == 4 and "p001" not in ids
    assert ids == [a.headers["x-request-id"] for a in answers]
    assert [r["client_request_id"] for r in rows] == ["p001"] * 4


def test_an_old_chain_without_the_new_columns_still_verifies(tmp_path: Path) -> None:
    import sqlalchemy as sa

    from mlwarden.serve.audit import AuditEntry, AuditLog
    from mlwarden.serve.db import Database

    uri = f"sqlite:///{tmp_path}/old.db"
    log = AuditLog(Database(uri))
    log.append(AuditEntry(request_id="a", status=200))
    with log.db.writer.begin() as conn:  # what a database written by the previous version holds
        conn.execute(sa.text("UPDATE mlw_audit_log SET peer_ip = NULL, client_request_id = NULL"))
        row = conn.execute(sa.text("SELECT * FROM mlw_audit_log")).mappings().one()
        from mlwarden.serve.audit import GENESIS_HASH, entry_hash

        new_hash = entry_hash(dict(row), GENESIS_HASH)
        conn.execute(sa.text("UPDATE mlw_audit_log SET hash = :h"), {"h": new_hash})
        conn.execute(sa.text("UPDATE mlw_audit_head SET hash = :h"), {"h": new_hash})
    log.append(AuditEntry(request_id="b", status=200, peer_ip="10.0.0.1"))
    assert log.verify().ok and log.verify().entries == 2


# -- finding 6: model and role output policies ---------------------------------------------------
_MODEL_OUTPUTS = [
    {},
    {"decimals": 4},
    {"mode": "top_k", "top_k": 2},
    {"mode": "top_k", "top_k": 5, "decimals": 1},
    {"mode": "label"},
    {"decimals": None},
]
_ROLE_OUTPUTS = [
    None,
    {"mode": "top_k", "top_k": 3},
    {"decimals": 1},
    {"decimals": 6},
    {"mode": "top_k"},
    {"mode": "probabilities"},
    {"mode": "label"},
]


def _expected(model: dict[str, Any], role: dict[str, Any] | None) -> OutputPolicy:
    """The documented rule, field by field: the stricter of what each side sets."""
    order = ["probabilities", "top_k", "label"]
    role = role or {}
    mode = max(
        model.get("mode", "probabilities"), role.get("mode", "probabilities"), key=order.index
    )
    model_decimals = model.get("decimals", 2)  # a model's default is 2 decimals
    given = [d for d in (model_decimals, role.get("decimals")) if d is not None]
    top_ks = []
    if model.get("mode") == "top_k":
        top_ks.append(model.get("top_k", 1))
    if role.get("mode") == "top_k" or "top_k" in role:
        top_ks.append(role.get("top_k", 1))
    return OutputPolicy(
        mode=mode,
        decimals=min(given) if given else None,
        top_k=min(top_ks) if top_ks else ALL_CLASSES,
    )


@pytest.mark.parametrize(
    ("model_output", "role_output"), list(itertools.product(_MODEL_OUTPUTS, _ROLE_OUTPUTS))
)
def test_model_and_role_policies_combine_to_the_stricter_of_each_field(
    model_output: dict[str, Any], role_output: dict[str, Any] | None
) -> None:
    from mlwarden.serve.authz import Authorizer, effective_output

    grant: dict[str, Any] = {"models": ["m"], "actions": ["predict"]}
    if role_output is not None:
        grant["output"] = role_output
    cfg = gateway_config_from_dict(
        {
            "models": {"m": {"source": "zoo:x", "output": model_output}},
            "roles": {"r": [grant]},
        }
    )
    role_policy = Authorizer(cfg).output_override("r", "m")
    combined = effective_output(cfg.models["m"].output, role_policy)
    expected = _expected(model_output, role_output)
    assert combined.describe() == expected.describe()
    assert (combined.mode, combined.decimals) == (expected.mode, expected.decimals)
    if combined.mode == "top_k":
        assert combined.top_k == expected.top_k


def test_a_roles_top_k_grant_is_served_with_the_models_decimals(make_gateway: Any) -> None:
    roles = {
        **ROLES,
        "top3": [
            {"models": ["digits"], "actions": ["predict"], "output": {"mode": "top_k", "top_k": 3}}
        ],
    }
    app = make_gateway(
        roles=roles, models={"digits": {"source": "zoo:unused", "output": {"decimals": 4}}}
    )
    with GatewayClient(app) as client:
        body = _predict(client, _key(app, "top3")).json()
    assert body["policy"] == "top_k(k=3,decimals=4)"
    assert len(body["outputs"]["top_k"][0]) == 3


# -- finding 7: model enumeration ----------------------------------------------------------------
def test_an_ungranted_model_and_a_missing_one_answer_alike(make_gateway: Any) -> None:
    roles = {**ROLES, "admin": [{"models": ["digits"], "actions": ["admin", "predict"]}]}
    app = make_gateway(roles=roles)
    key, admin = _key(app, "other"), _key(app, "admin")
    with GatewayClient(app) as client:
        exists = _predict(client, key)
        missing = client.post(
            "/v1/models/nosuch/predict", json={"inputs": [sample()]}, headers={"X-API-Key": key}
        )
        described = client.get("/v1/models/digits", headers={"X-API-Key": key})
        described_missing = client.get("/v1/models/nosuch", headers={"X-API-Key": key})
        admin_view = client.post(
            "/v1/models/other-model/predict",
            json={"inputs": [sample()]},
            headers={"X-API-Key": admin},
        )
    assert exists.status_code == missing.status_code == 404
    assert exists.json() == missing.json()
    assert described.status_code == described_missing.status_code == 404
    assert described.json() == described_missing.json()
    assert admin_view.status_code == 403  # an admin is told the model exists
    reasons = [r["reason"] for r in _rows(app)]
    assert reasons == ["forbidden", "unknown_model", "forbidden", "unknown_model", "forbidden"]


# -- finding 8: charge only what is audited ------------------------------------------------------
def test_a_request_whose_audit_entry_fails_spends_no_quota(
    make_gateway: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_gateway(rate_limits={"daily_quota": 5})
    key = _key(app)
    key_id = key.split("_")[1]
    real_append = app.state.gateway.audit.append_async

    async def broken_append(entry: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(app.state.gateway.audit, "append_async", broken_append)
    with GatewayClient(app) as client:
        assert _predict(client, key, {"inputs": [sample()] * 4}).status_code == 503
    assert app.state.gateway.limits.remaining_quota(key_id, "digits") == 5
    monkeypatch.setattr(app.state.gateway.audit, "append_async", real_append)
    with GatewayClient(app) as client:
        assert _predict(client, key, {"inputs": [sample()] * 4}).status_code == 200
    assert app.state.gateway.limits.remaining_quota(key_id, "digits") == 1


def test_a_reservation_left_by_a_killed_process_returns_after_its_lease() -> None:
    from mlwarden.serve.config import RateLimitConfig
    from mlwarden.serve.quotas import RateLimits

    now = [1_000_000.0]
    config = RateLimitConfig(daily_quota=10, quota_lease_s=60, key_prefix="lease-test")
    limits = RateLimits(config, clock=lambda: now[0])
    decision, lease = limits.reserve_quota("k", "m", 8)  # the process dies before confirming
    assert decision.allowed and lease is not None
    assert not limits.reserve_quota("k", "m", 3)[0].allowed  # held while it may be in flight
    now[0] += 60
    assert limits.remaining_quota("k", "m") == 2  # still held during the next lease bucket
    now[0] += 60
    assert limits.remaining_quota("k", "m") == 10  # never confirmed: back to the key
    decision, lease = limits.reserve_quota("k", "m", 10)
    assert decision.allowed and lease is not None
    limits.confirm_quota(lease)
    now[0] += 600
    assert limits.remaining_quota("k", "m") == 0  # confirmed charges stay for the day


def test_a_confirmation_between_a_reservations_reads_never_admits_past_the_quota() -> None:
    """Found by the two-replica kill test: reads in the wrong order admitted quota + 1."""
    from mlwarden.serve.config import RateLimitConfig
    from mlwarden.serve.quotas import RateLimits

    limits = RateLimits(RateLimitConfig(daily_quota=1, key_prefix="race-test"))
    admitted, first = limits.reserve_quota("k", "m", 1)
    assert admitted.allowed and first is not None
    real_get = limits.storage.get
    reads: list[str] = []

    def get(key: str) -> int:
        reads.append(key)
        if len(reads) == 2:  # the first request is audited and confirmed mid-way
            limits.confirm_quota(first)
        return real_get(key)

    limits.storage.get = get  # type: ignore[method-assign]
    second, lease = limits.reserve_quota("k", "m", 1)
    assert not second.allowed and lease is None


# -- finding 9: lifting restrictions; keys for scripts -------------------------------------------
def _run(*argv: str) -> tuple[int, str]:
    from mlwarden.cli.app import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(list(argv))
    return code, out.getvalue()


def test_keys_create_json_and_quiet_print_only_the_key(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/k.db"
    code, quiet = _run("keys", "create", "--role", "analyst", "--db", uri, "--quiet")
    assert code == 0 and quiet.endswith("\n") and quiet.count("\n") == 1
    assert quiet.startswith("mlw_") and len(quiet.strip()) == 4 + 12 + 1 + 43
    code, as_json = _run("keys", "create", "--role", "analyst", "--db", uri, "--json")
    data = json.loads(as_json)
    assert code == 0 and data["key"].startswith(f"mlw_{data['key_id']}_")
    assert data["role"] == "analyst"


def test_an_operator_can_restrict_and_unrestrict_a_key_and_both_are_audited(
    make_gateway: Any,
) -> None:
    app = make_gateway(rate_limits={"throttle": "1/minute"})
    gateway = app.state.gateway
    key = _key(app)
    key_id = key.split("_")[1]
    gateway.keys.restrict(key_id, "throttle")  # what the monitor does on an alert
    with GatewayClient(app) as client:
        assert _predict(client, key).status_code == 200
        assert _predict(client, key).status_code == 429  # throttled
    database = gateway.config.database
    prefix = gateway.config.table_prefix
    code, out = _run("keys", "unrestrict", key_id, "--db", database, "--table-prefix", prefix)
    assert code == 0 and "no longer restricted" in out
    with GatewayClient(app) as client:
        assert _predict(client, key).status_code == 200  # the next request is not throttled
    code, _ = _run(
        "keys", "restrict", key_id, "--level", "block", "--db", database, "--table-prefix", prefix
    )
    assert code == 0
    with GatewayClient(app) as client:
        assert _predict(client, key).status_code == 403
    operator = [(r["action"], r["reason"]) for r in _rows(app) if r["client_ip"] == "cli"]
    assert operator == [("unrestrict", "operator"), ("restrict", "operator:block")]
    assert gateway.audit.verify().ok
    code, out = _run("keys", "unrestrict", "000000000000", "--db", database)
    assert code == 2 and "no key with id" in out


# -- finding 10: offline ------------------------------------------------------------------------
def test_docs_and_openapi_are_off_by_default_and_nothing_loads_from_a_cdn(
    make_gateway: Any,
) -> None:
    app = make_gateway()
    with GatewayClient(app) as client:
        assert client.get("/docs").status_code == 404
        assert client.get("/openapi.json").status_code == 404
        assert client.get("/redoc").status_code == 404
    on = make_gateway(docs=True)
    with GatewayClient(on) as client:
        assert client.get("/docs").status_code == 200
        assert "/v1/models/{name}/predict" in client.get("/openapi.json").json()["paths"]


# -- finding 11: requests refused by the HTTP server --------------------------------------------
def test_malformed_http_refused_by_uvicorn_is_counted_and_audited(make_gateway: Any) -> None:
    import asyncio

    import uvicorn

    app = make_gateway()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", ws="none"
        )
    )
    ready = threading.Event()

    async def run() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():  # bounded by the server's own startup
            await asyncio.sleep(0.01)
        ready.set()
        await task

    thread = threading.Thread(target=lambda: asyncio.run(run()), daemon=True)
    thread.start()
    try:
        assert ready.wait(30) and server.started
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
            answer = conn.recv(1024)
    finally:
        server.should_exit = True
        thread.join(30)
    assert answer.startswith(b"HTTP/1.1 400")
    gateway = app.state.gateway
    assert gateway.metrics.malformed._value.get() == 1
    (row,) = list(gateway.audit.rows())
    assert (row["status"], row["reason"]) == (400, "malformed_http")


def test_the_docs_state_the_audit_limit_precisely() -> None:
    text = (Path(__file__).parents[2] / "docs" / "gateway.md").read_text()
    assert "malformed_http" in text and "mlwarden_malformed_requests_total" in text


# -- finding 12: docs that run -------------------------------------------------------------------
def test_the_readme_curl_example_has_no_placeholder_body() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    curls = [line for line in readme.splitlines() if "curl" in line and "predict" in line]
    assert curls and not any("..." in line for line in curls)


def test_extraction_docs_say_the_quota_counts_inputs() -> None:
    text = (Path(__file__).parents[2] / "docs" / "extraction.md").read_text().lower()
    assert "one query per input" in text
