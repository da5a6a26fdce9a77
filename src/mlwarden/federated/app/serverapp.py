"""The ``ServerApp`` the SuperLink runs: the strategy, SecAgg+, DP, and the global model's curve.

It builds, from the run config (:class:`~mlwarden.federated.job.FederatedJob`), the
``ServerApp`` the in-process engine builds (:func:`~mlwarden.federated.runner.federated_server_app`:
the same initial weights, strategy, DP wrapper and SecAgg+ workflow), waits until all
``clients`` SuperNodes are connected, and runs it under the run's seed. It writes into
``result-dir``, on the SuperLink's machine:

* ``rounds.jsonl``: one :class:`~mlwarden.federated.runner.RoundRecord` per line, appended as
  each round is evaluated (round 0 is the initial model);
* ``weights.npz``: the global weights after every round (``r{round}_{index}``, in
  ``state_dict`` order);
* ``result.json``: the curve and the ServerApp's seconds, written last (atomically): its
  presence means the run finished.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from mlwarden._io import atomic_write_bytes, atomic_write_text
from mlwarden.errors import ConfigError
from mlwarden.federated.job import FederatedJob
from mlwarden.federated.partition import parse_partition, partition_dataset
from mlwarden.federated.runner import (
    CurveRecorder,
    RoundRecord,
    check_counts,
    federated_server_app,
    initial_global_weights,
    largest_client_weight,
    seeded_generators,
)
from mlwarden.federated.server import ClientLevelDP

__all__ = ["RESULT_FILE", "ROUNDS_FILE", "WEIGHTS_FILE", "app", "run_server"]

ROUNDS_FILE = "rounds.jsonl"
WEIGHTS_FILE = "weights.npz"
RESULT_FILE = "result.json"

app = ServerApp()
"""The ``serverapp`` component of the app's ``pyproject.toml``."""


@app.main()
def run_server(grid: Grid, context: Context) -> None:
    """Run the federation described by ``context.run_config`` over ``grid``.

    Raises
    ------
    ConfigError
        A bad run config, or no ``result-dir``.
    MlwardenError
        Fewer than ``clients`` SuperNodes connected within ``wait-for-nodes-s``.
    """
    started = time.perf_counter()
    job = FederatedJob.from_run_config(context.run_config)
    if not job.result_dir:
        raise ConfigError("set result-dir in the run config: the folder the global model goes to")
    out = Path(job.result_dir)
    out.mkdir(parents=True, exist_ok=True)
    secure_aggregation = job.secure_aggregation()
    per_round = check_counts(job.clients, job.rounds, job.per_round, secure_aggregation)
    privacy = job.privacy()
    client_dp = privacy if isinstance(privacy, ClientLevelDP) else None
    train, test = job.load_data()
    max_weight = job.max_weight
    if not max_weight:
        parts = partition_dataset(train, parse_partition(job.partition), job.clients, seed=job.seed)
        max_weight = largest_client_weight(parts, client_dp)
    rounds_path = out / ROUNDS_FILE
    rounds_path.write_text("")

    def on_round(record: RoundRecord) -> None:
        with rounds_path.open("a", encoding="utf-8") as stream:
            stream.write(json.dumps(record.to_dict()) + "\n")

    curve = CurveRecorder(job.make_module(), test, on_round=on_round)
    server_app = federated_server_app(
        curve,
        initial_global_weights(job.make_module, job.seed),
        aggregator=job.aggregator,
        clients=job.clients,
        clients_per_round=per_round,
        rounds=job.rounds,
        secure_aggregation=secure_aggregation,
        client_dp=client_dp,
        max_weight=max_weight,
        wait_for_nodes_s=job.wait_for_nodes_s,
    )
    with seeded_generators(job.seed):
        server_app(grid, context)
    buffer = io.BytesIO()
    arrays: dict[str, Any] = {
        f"r{r}_{i}": w for r, weights in enumerate(curve.weights) for i, w in enumerate(weights)
    }
    np.savez(buffer, **arrays)
    atomic_write_bytes(out / WEIGHTS_FILE, buffer.getvalue())
    result = {
        "curve": [r.to_dict() for r in curve.curve],
        "rounds": len(curve.curve) - 1,
        "arrays_per_round": len(curve.weights[0]) if curve.weights else 0,
        "serverapp_seconds": round(time.perf_counter() - started, 3),
    }
    atomic_write_text(out / RESULT_FILE, json.dumps(result, indent=2))
