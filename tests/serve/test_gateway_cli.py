"""``mlwarden serve | keys | audit`` and the load-time checks (scan, signature, config)."""

from __future__ import annotations

import contextlib
import io
import pickle
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlwarden.cli.app import main
from mlwarden.errors import ConfigError, SignatureError, UnsafeModelError
from mlwarden.serve.config import gateway_config_from_dict, load_gateway_config
from serve.helpers import ROLES


def _run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(list(argv))
    return code, out.getvalue()


def _write_config(tmp_path: Path, model: Path, **extra: Any) -> Path:
    data = {
        "database": "sqlite:///gw.db",
        "models": {"digits": {"source": str(model), **extra}},
        "roles": ROLES,
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_keys_create_list_revoke_and_audit_verify_through_the_cli(
    tmp_path: Path, tiny_model_file: Path
) -> None:
    config = _write_config(tmp_path, tiny_model_file)
    code, out = _run(
        "keys",
        "create",
        "--role",
        "analyst",
        "--expires",
        "30d",
        "--name",
        "ci",
        "--config",
        str(config),
    )
    assert code == 0
    key = out.strip().splitlines()[-1]
    key_id = key.split("_")[1]
    assert key.startswith("mlw_") and len(key) == 4 + 12 + 1 + 43
    code, listing = _run("keys", "list", "--config", str(config))
    assert code == 0 and key_id in listing and key.split("_", 2)[2] not in listing
    assert _run("keys", "revoke", key_id, "--config", str(config))[0] == 0
    assert "revoked" in _run("keys", "list", "--config", str(config))[1]
    code, message = _run("keys", "create", "--role", "nosuchrole", "--config", str(config))
    assert code == 2 and "not defined" in message
    # an (empty) chain verifies; the db is the one named in the config, next to it
    assert (tmp_path / "gw.db").exists()
    assert _run("audit", "verify", "--config", str(config))[0] == 0


def test_audit_verify_exits_3_on_tamper_and_tail_prints_the_head(tmp_path: Path) -> None:
    import sqlalchemy as sa

    from mlwarden.serve.audit import AuditEntry, AuditLog
    from mlwarden.serve.db import Database

    uri = f"sqlite:///{tmp_path}/a.db"
    db = Database(uri)
    log = AuditLog(db)
    for i in range(4):
        log.append(AuditEntry(request_id=f"r{i}", status=200))
    code, out = _run("audit", "tail", "--db", uri, "-n", "2")
    assert code == 0 and "head seq 4" in out
    with db.writer.begin() as conn:
        conn.execute(sa.text("UPDATE mlw_audit_log SET key_id = 'someone' WHERE seq = 2"))
    code, out = _run("audit", "verify", "--db", uri)
    assert code == 3 and "entry 2" in out and "tampered" in out


def test_serve_refuses_a_model_whose_scan_finds_code(tmp_path: Path, tiny_model_file: Path) -> None:
    from mlwarden.serve.app import create_app

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"x": __import__("os").system}, protocol=2))
    config = load_gateway_config(_write_config(tmp_path, evil))
    with pytest.raises(UnsafeModelError, match="refusing to serve"):
        create_app(config)
    code, out = _run("serve", "--config", str(tmp_path / "gateway.yaml"))
    assert code == 2 and "refusing to serve" in out


def test_serve_refuses_a_model_whose_signature_does_not_verify(
    tmp_path: Path, tiny_model_file: Path
) -> None:
    from mlwarden.serve.app import create_app
    from mlwarden.supplychain.signing import generate_keypair, sign_model

    model = tmp_path / "m" / "tiny.pt2"
    model.parent.mkdir()
    shutil.copy(tiny_model_file, model)
    shutil.copy(str(tiny_model_file) + ".mlwarden.json", str(model) + ".mlwarden.json")
    signer = generate_keypair(tmp_path / "signer")
    stranger = generate_keypair(tmp_path / "stranger")
    sign_model(model, private_key=signer.private_key)
    good = create_app(
        load_gateway_config(_write_config(tmp_path, model, public_key=str(signer.public_key)))
    )
    assert good.state.gateway.models["digits"].classifier.input_shape == (1, 8, 8)
    good.state.gateway.close()
    with pytest.raises(SignatureError):
        create_app(
            load_gateway_config(_write_config(tmp_path, model, public_key=str(stranger.public_key)))
        )
    model.write_bytes(model.read_bytes() + b"\0")  # tampered after signing
    with pytest.raises(SignatureError):
        create_app(
            load_gateway_config(_write_config(tmp_path, model, public_key=str(signer.public_key)))
        )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"models": {"../etc": "zoo:digits-cnn"}}, "model name '../etc' is not allowed"),
        ({"models": {}}, "at least one model"),
        (
            {"roles": {"r": {"grants": [{"models": ["*"], "actions": ["delete"]}]}}},
            "'delete' is not one of",
        ),
        (
            {"roles": {"r": {"grants": [{"models": ["../*"], "actions": ["predict"]}]}}},
            "not a model name or glob",
        ),
        ({"rate_limits": {"per_key_model": ["lots"]}}, "limits notation"),
        ({"rate_limits": {"strategy": "leaky"}}, "moving-window or fixed-window"),
        ({"monitor": {"action": "explode"}}, "monitor.action"),
        ({"models": {"m": {"source": "zoo:x", "output": {"mode": "everything"}}}}, "output.mode"),
        ({"surprise": 1}, "unknown key"),
        ({"database": "mysql://x"}, None),
    ],
)
def test_config_errors_name_the_bad_value(change: dict[str, Any], message: str | None) -> None:
    data: dict[str, Any] = {"models": {"digits": "zoo:digits-cnn"}, "roles": ROLES, **change}
    if message is None:
        from mlwarden.serve.db import Database

        cfg = gateway_config_from_dict(data)
        with pytest.raises(ConfigError, match="not supported"):
            Database(cfg.database)
        return
    with pytest.raises(
        ConfigError, match=message.replace("(", r"\(").replace(".", r"\.").replace("*", r"\*")
    ):
        gateway_config_from_dict(data)


def test_output_policies_ground_truth() -> None:
    import numpy as np

    from mlwarden.serve.config import OutputPolicy

    probs = np.array([[0.1234, 0.5678, 0.3088], [0.5, 0.25, 0.25]])
    assert OutputPolicy(decimals=1).apply(probs) == {
        "probabilities": [[0.1, 0.6, 0.3], [0.5, 0.2, 0.2]]
    }
    assert OutputPolicy(mode="top_k", top_k=2, decimals=2).apply(probs) == {
        "top_k": [
            [{"label": 1, "probability": 0.57}, {"label": 2, "probability": 0.31}],
            [{"label": 0, "probability": 0.5}, {"label": 1, "probability": 0.25}],
        ]
    }
    assert OutputPolicy(mode="label").apply(probs) == {"labels": [1, 0]}
    strict = OutputPolicy(decimals=4, top_k=3).stricter(
        OutputPolicy(mode="top_k", decimals=2, top_k=5)
    )
    assert strict == OutputPolicy(mode="top_k", decimals=2, top_k=3)
