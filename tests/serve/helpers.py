"""Helpers shared by the gateway tests (imported as ``serve.helpers``)."""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any

import pytest
import torch
from torch import nn

from mlwarden.serve.config import GatewayConfig

POSTGRES_URL = os.environ.get("MLWARDEN_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("MLWARDEN_TEST_REDIS", "redis://127.0.0.1:6379")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def require_server(name: str, host: str, port: int) -> None:
    """Skip (or fail under CI=true) when a backend server is not reachable."""
    if _reachable(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def tiny_module(seed: int = 0) -> nn.Module:
    """A small net on 1x8x8 inputs with 10 classes (random weights, fixed seed)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


ROLES: dict[str, Any] = {
    "analyst": {"grants": [{"models": ["digits"], "actions": ["predict"]}]},
    "labeler": {
        "grants": [{"models": ["digits"], "actions": ["predict"], "output": {"mode": "label"}}]
    },
    "other": {"grants": [{"models": ["other-model"], "actions": ["predict"]}]},
    "ops": {"grants": [{"models": ["*"], "actions": ["metrics"]}]},
    "nobody": {"grants": []},
}


def config_dict(database: str, **overrides: Any) -> dict[str, Any]:
    """A gateway config with fresh table and counter prefixes (parallel runs never clash)."""
    data: dict[str, Any] = {
        "database": database,
        "table_prefix": "t" + uuid.uuid4().hex[:10] + "_",
        "models": {
            "digits": {"source": "zoo:unused", "max_batch": 8},
            "other-model": {"source": "zoo:unused"},
        },
        "roles": ROLES,
        "rate_limits": {
            "storage": "memory://",
            "per_key_model": ["1000/second"],
            "daily_quota": 1000,
            "key_prefix": "t" + uuid.uuid4().hex[:10],
        },
        "max_body_bytes": 20_000,
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


def drop_tables(config: GatewayConfig) -> None:
    """Drop a test's tables (PostgreSQL tests share one database)."""
    from mlwarden.serve.db import Database

    db = Database(config.database, prefix=config.table_prefix)
    db.tables.metadata.drop_all(db.writer)
    db.dispose()


def sample(value: float = 0.5) -> list[list[list[float]]]:
    """One 1x8x8 input filled with ``value``."""
    return [[[value] * 8 for _ in range(8)]]


class Client:
    """A synchronous client for an in-process app (httpx + ASGITransport; one loop per call)."""

    def __init__(self, app: Any, client_ip: str = "127.0.0.1") -> None:
        self.app = app
        self.client_ip = client_ip

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        import asyncio

        import httpx

        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, client=(self.client_ip, 50000))
            async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as c:
                return await c.request(method, url, **kwargs)

        return asyncio.run(go())

    def get(self, url: str, **kwargs: Any) -> Any:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> Any:
        return self.request("POST", url, **kwargs)
