"""Fuzz the gateway's OpenAPI spec with schemathesis against the in-process app: no 5xx, ever.

Requests carry a valid key of a role that may predict and read metrics, so generated bodies reach
validation and the model instead of stopping at authentication. (The app is built at import:
``schemathesis.pytest.from_fixture`` does not work with this pytest; the build is cheap — a tiny
model and a SQLite file in a temporary folder removed at exit.)
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
from hypothesis import HealthCheck, settings

from mlwarden.models.torch import TorchClassifier
from mlwarden.serve.app import create_app
from mlwarden.serve.config import gateway_config_from_dict
from serve.helpers import config_dict, tiny_module

pytestmark = pytest.mark.slow

_ROLES = {"fuzzer": {"grants": [{"models": ["*"], "actions": ["predict", "metrics"]}]}}


def _build() -> Any:
    tmp = Path(tempfile.mkdtemp(prefix="mlwarden-fuzz-"))
    atexit.register(shutil.rmtree, tmp, True)
    classifier = TorchClassifier(tiny_module(), input_shape=(1, 8, 8), n_classes=10)
    cfg = gateway_config_from_dict(
        config_dict(
            f"sqlite:///{tmp}/fuzz.db",
            roles=_ROLES,
            rate_limits={"per_key_model": ["100000/second"], "daily_quota": 0},
        )
    )
    return create_app(cfg, models={"digits": classifier, "other-model": classifier})


APP = _build()
KEY = APP.state.gateway.keys.create("fuzzer")[1]
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: Any) -> None:
    name_given = case.path_parameters and "name" in case.path_parameters
    # half the cases naming a model hit the real one, so bodies reach validation and the model
    if name_given and zlib.crc32(repr(case.body).encode()) % 2 == 0:
        case.path_parameters["name"] = "digits"
    response = case.call(headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code < 500, (case.operation.path, case.path_parameters, response.text)


def test_every_fuzzed_request_was_audited_in_one_chain() -> None:
    result = APP.state.gateway.audit.verify()
    assert result.ok, result.problems
    assert result.entries >= 40
    statuses = {row["status"] for row in APP.state.gateway.audit.rows()}
    assert 200 in statuses and 422 in statuses  # the fuzz reached the model and the validator
