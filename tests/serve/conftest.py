"""Fixtures of the gateway tests: a tiny model, configs, and backends by URI (sqlite/postgres,
memory/redis). Backend tests carry the ``redis`` / ``postgres`` markers; under ``CI=true`` a
server that does not answer is a failure, elsewhere a skip."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mlwarden.models.torch import TorchClassifier
from mlwarden.serve.config import GatewayConfig, gateway_config_from_dict
from serve.helpers import (
    POSTGRES_URL,
    REDIS_URL,
    config_dict,
    drop_tables,
    require_server,
    tiny_module,
)


@pytest.fixture(scope="session")
def tiny_classifier() -> TorchClassifier:
    return TorchClassifier(tiny_module(), input_shape=(1, 8, 8), n_classes=10)


@pytest.fixture(scope="session")
def tiny_model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model exported with torch.export (what ``mlwarden serve`` loads from disk)."""
    from mlwarden.models.zoo import save_torch_model

    path = tmp_path_factory.mktemp("model") / "tiny.pt2"
    save_torch_model(
        tiny_module(),
        path,
        input_shape=(1, 8, 8),
        metadata={"input_shape": [1, 8, 8], "n_classes": 10, "clip_range": [0.0, 1.0]},
    )
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URI per backend (the contract suites run over both)."""
    if request.param == "postgres":
        require_server("PostgreSQL", "127.0.0.1", 5432)
        return POSTGRES_URL
    return f"sqlite:///{tmp_path}/gateway.db"


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def limits_url(request: pytest.FixtureRequest) -> str:
    """A ``limits`` storage URI per backend."""
    if request.param == "redis":
        require_server("Redis", "127.0.0.1", 6379)
        return REDIS_URL
    return "memory://"


@pytest.fixture
def make_gateway(tiny_classifier: TorchClassifier, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Build an in-process app (sqlite unless ``database`` is given); closes and drops after."""
    from mlwarden.serve.app import create_app

    made: list[tuple[Any, GatewayConfig]] = []

    def make(database: str | None = None, **overrides: Any) -> Any:
        cfg = gateway_config_from_dict(
            config_dict(database or f"sqlite:///{tmp_path}/gw-{len(made)}.db", **overrides)
        )
        app = create_app(cfg, models={"digits": tiny_classifier, "other-model": tiny_classifier})
        made.append((app, cfg))
        return app

    yield make
    for app, cfg in made:
        app.state.gateway.close()
        if cfg.database.startswith("postgresql"):
            drop_tables(cfg)
