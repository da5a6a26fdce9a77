"""``mlwarden assess`` against the real gateway's label-only mode, over HTTP on 127.0.0.1.

A key whose role sees the digits model through ``output: {mode: label}`` gets only labels: the
assessment must notice, skip the score-based Square attack with a finding that says why, and
run the decision-based HopSkipJump over HTTP. HopSkipJump is seeded and sees only labels, so
its result over HTTP must equal the same attack run locally on the same model: the gateway
neither helps nor hides anything.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mlwarden.attacks import get_attack
from mlwarden.cli.app import app as cli
from mlwarden.cli.app import main
from mlwarden.data import load_dataset
from mlwarden.models.zoo import load_zoo_model

pytestmark = pytest.mark.slow

HSJ = {"max_queries": 150}


@pytest.fixture(scope="module")
def label_only_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    import uvicorn

    from mlwarden.serve.app import create_app
    from mlwarden.serve.config import gateway_config_from_dict

    tmp = tmp_path_factory.mktemp("gateway")
    config = gateway_config_from_dict(
        {
            "database": f"sqlite:///{tmp}/gateway.db",
            "models": {"digits": {"source": "zoo:digits-cnn", "max_batch": 256}},
            "roles": {
                "labels": {
                    "grants": [
                        {"models": ["digits"], "actions": ["predict"], "output": {"mode": "label"}}
                    ]
                }
            },
            "rate_limits": {
                "storage": "memory://",
                "per_key_model": ["100000/second"],
                "daily_quota": 1_000_000,
            },
        },
        base_dir=tmp,
    )
    app = create_app(config)
    _, key = app.state.gateway.keys.create("labels", name="red-team")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", ws="none"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    try:
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the gateway did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", key
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        app.state.gateway.close()


def test_assess_runs_hopskipjump_over_http_on_a_label_only_key(
    label_only_gateway: tuple[str, str], tmp_path: Path
) -> None:
    url, key = label_only_gateway
    config = tmp_path / "assess.yaml"
    config.write_text(
        "epsilons: [0.3]\nmax_samples: 8\nseed: 0\nexamples: 0\n"
        f"attack_params: {{hsj: {json.dumps(HSJ)}}}\n"
    )
    out = tmp_path / "report"
    result = CliRunner().invoke(
        cli,
        [
            "assess",
            "--model",
            url,
            "--model-name",
            "digits",
            "--data",
            "builtin:digits",
            "--config",
            str(config),
            "--out",
            str(out),
        ],
        env={"MLWARDEN_API_KEY": key},
    )
    assert result.exit_code == 0, result.output
    assert key not in result.output
    report = json.loads((out / "report.json").read_text())
    assert key not in (out / "report.json").read_text()
    evasion = report["sections"]["evasion"]
    assert evasion["attacks"] == ["hsj"]
    assert any("square needs scores" in reason for reason in evasion["skipped"])

    # the same seeded attack, run locally on the same model, on the same sample
    data = load_dataset("builtin:digits").sample(8, 0)
    local = get_attack("hsj")(eps=0.3, norm="linf", seed=0, **HSJ).generate(
        load_zoo_model("digits-cnn"), data.x, data.y
    )
    served = report["summary"]["metrics"]["robust_accuracy@0.3"]
    assert served == pytest.approx(float(np.mean(local.predictions == data.y)))
    assert served < report["summary"]["metrics"]["clean_accuracy"]  # the attack did break something


def test_a_wrong_key_is_a_clear_error_not_a_traceback(
    label_only_gateway: tuple[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, _ = label_only_gateway
    monkeypatch.setenv("MLWARDEN_API_KEY", "mlw_not-a-key")
    argv = ["assess", "--model", url, "--model-name", "digits", "--data", "builtin:digits"]
    code = main([*argv, "--out", str(tmp_path / "r")])
    captured = capsys.readouterr()
    assert code == 2
    assert "cannot read model 'digits'" in captured.err and "API key" in captured.err
    assert "Traceback" not in captured.err + captured.out
    assert "mlw_not-a-key" not in captured.err + captured.out
