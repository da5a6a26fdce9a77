"""Fuzz the gateway's OpenAPI spec with schemathesis against the in-process app: no 5xx, ever.

Requests carry a valid key of a role that may predict and read metrics, so generated bodies reach
validation and the model instead of stopping at authentication. (The parametrized test's app is
built at import: ``schemathesis.pytest.from_fixture`` does not work with this pytest; the build is
cheap — a tiny model and a SQLite file in a temporary folder removed at exit.) Each test builds
its own app and key, so each passes or fails on its own, in any order.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import zlib
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from mlwarden.models.torch import TorchClassifier
from mlwarden.serve.app import create_app
from mlwarden.serve.config import gateway_config_from_dict
from serve.helpers import config_dict, tiny_module

pytestmark = pytest.mark.slow

_ROLES = {"fuzzer": {"grants": [{"models": ["*"], "actions": ["predict", "metrics"]}]}}


def _build() -> tuple[Any, str]:
    """A fresh gateway app and a key of the fuzzer role."""
    tmp = Path(tempfile.mkdtemp(prefix="mlwarden-fuzz-"))
    atexit.register(shutil.rmtree, tmp, True)
    classifier = TorchClassifier(tiny_module(), input_shape=(1, 8, 8), n_classes=10)
    cfg = gateway_config_from_dict(
        config_dict(
            f"sqlite:///{tmp}/fuzz.db",
            roles=_ROLES,
            rate_limits={"per_key_model": ["100000/second"], "daily_quota": 0},
            docs=True,  # the fuzzer reads the OpenAPI document
        )
    )
    app = create_app(cfg, models={"digits": classifier, "other-model": classifier})
    return app, app.state.gateway.keys.create("fuzzer")[1]


def _aim_at_the_model(case: Any) -> None:
    """Half the cases naming a model hit the real one, so bodies reach validation and the model."""
    name_given = case.path_parameters and "name" in case.path_parameters
    if name_given and zlib.crc32(repr(case.body).encode()) % 2 == 0:
        case.path_parameters["name"] = "digits"


APP, KEY = _build()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_every_answer_is_audited(case: Any) -> None:
    _aim_at_the_model(case)
    response = case.call(headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code < 500, (case.operation.path, case.path_parameters, response.text)
    if case.operation.path == "/healthz":  # liveness is deliberately not audited
        return
    request_id = response.headers["x-request-id"][0]
    audited = [r for r in APP.state.gateway.audit.rows() if r["request_id"] == request_id]
    assert [r["status"] for r in audited] == [response.status_code]


def test_a_fuzz_run_passes_authentication_reaches_the_validator_and_audits_every_request() -> None:
    """Every fuzzed request (but ``/healthz``) is audited once, with its status, in one chain.

    The generated predict bodies are arrays of arrays without the model's exact shape, so they
    stop at input validation (422); the model path itself is covered by test_gateway_security.
    """
    app, key = _build()
    operations = schemathesis.openapi.from_asgi("/openapi.json", app)  # one audited GET
    answers: list[tuple[str, int, str]] = []  # (operation, status, request id) when audited

    @given(case=operations.as_strategy())
    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    def fuzz(case: Any) -> None:
        _aim_at_the_model(case)
        response = case.call(headers={"Authorization": f"Bearer {key}"})
        if case.operation.path != "/healthz":  # liveness is deliberately not audited
            operation = f"{case.method} {case.operation.path}"
            answers.append((operation, response.status_code, response.headers["x-request-id"][0]))

    fuzz()
    result = app.state.gateway.audit.verify()
    assert result.ok, result.problems
    rows = {r["request_id"]: r["status"] for r in app.state.gateway.audit.rows()}
    missing = [answer for answer in answers if rows.get(answer[2]) != answer[1]]
    assert not missing, f"{len(missing)} fuzzed request(s) not audited with their status"
    assert len(answers) >= 40 and result.entries == len(answers) + 1  # + the schema's GET
    seen = {(operation, status) for operation, status, _ in answers}
    assert ("GET /v1/models", 200) in seen  # past authentication and authorisation
    assert ("POST /v1/models/{name}/predict", 422) in seen  # bodies reached the validator
