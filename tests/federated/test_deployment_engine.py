"""Flower's deployment engine: a SuperLink and SuperNodes on 127.0.0.1, the mlwarden app.

The ground truth is the in-process engine: the same job gives the same global model (FedAvg:
up to the order in which the SuperLink hands Flower the replies; SecAgg+: within the
quantisation step of each round). Every Flower process listens on 127.0.0.1 only, a process
that cannot start is named in the error with its log, and nothing is left running.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from mlwarden.errors import ConfigError, FederationError
from mlwarden.federated import (
    FederatedClient,
    RoundRecord,
    get_weights,
    partition_dataset,
    run_federated,
)
from mlwarden.federated.app import APP_DIR
from mlwarden.federated.client import ROUND_KEY
from mlwarden.federated.deployment import DeploymentEngine, free_port, run_deployment
from mlwarden.federated.job import FederatedJob
from mlwarden.federated.runner import initial_global_weights

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SMALL = {"clients": 3, "rounds": 2, "local_epochs": 1, "seed": 0}


def _in_process(job: FederatedJob) -> Any:
    train, test = job.load_data()
    return run_federated(
        job.make_module,
        train,
        test,
        clients=job.clients,
        rounds=job.rounds,
        local=job.local_training(),
        secure_aggregation=job.secure_aggregation(),
        seed=job.seed,
    )


def _listening(psutil: Any) -> list[tuple[str, int, str]]:
    """(address, port, process name) of every listening TCP socket of this test's children."""
    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            name = process.name()
            connections = process.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        found += [
            (c.laddr.ip, c.laddr.port, name) for c in connections if c.status == psutil.CONN_LISTEN
        ]
    return found


def _still_running(psutil: Any, processes: list[Any] | None = None) -> list[Any]:
    """Which of ``processes`` (default: this test's descendants) still run. Given the
    processes seen during the run, this also catches one that was orphaned (re-parented)."""
    found = []
    for process in psutil.Process().children(recursive=True) if processes is None else processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except psutil.NoSuchProcess:
            continue
    return found


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port on 127.0.0.1 that this test listens on (without SO_REUSEPORT)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        yield int(squatter.getsockname()[1])


# -- the app project -------------------------------------------------------------------------
def test_app_project_declares_every_run_config_key_with_the_jobs_default() -> None:
    project = tomllib.loads((APP_DIR / "pyproject.toml").read_text(encoding="utf-8"))
    app = project["tool"]["flwr"]["app"]
    assert app["config"] == FederatedJob().run_config()
    from flwr.clientapp import ClientApp
    from flwr.serverapp import ServerApp

    from mlwarden.federated.app import clientapp, serverapp

    assert app["components"] == {
        "serverapp": "mlwarden.federated.app.serverapp:app",
        "clientapp": "mlwarden.federated.app.clientapp:app",
    }
    assert isinstance(serverapp.app, ServerApp) and isinstance(clientapp.app, ClientApp)


def test_run_config_refuses_unknown_keys_and_wrong_types() -> None:
    job = FederatedJob(clients=4, secagg=True, dp="client:0.5")
    assert FederatedJob.from_run_config(job.run_config()) == job
    with pytest.raises(ConfigError, match="secag"):
        FederatedJob.from_run_config({"secag": True})
    with pytest.raises(ConfigError, match="secagg"):
        FederatedJob.from_run_config({"secagg": "false"})  # a string is not a switch
    with pytest.raises(ConfigError, match="clients"):
        FederatedJob.from_run_config({"clients": 0})
    with pytest.raises(ConfigError, match="it cannot wrap krum"):
        FederatedJob.from_run_config({"aggregator": "krum", "dp": "client:1.0"})
    with pytest.raises(ConfigError, match="--partition 'shards' is unknown"):
        FederatedJob.from_run_config({"partition": "shards"})


# -- runs ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_fedavg_on_superlink_and_supernodes_gives_the_in_process_global_model() -> None:
    """3 SuperNodes × 2 rounds. Tolerance 1e-6: FedAvg sums the replies in the order they
    reach the SuperLink (node order in process), and float32 sums depend on the order by about
    one unit in the last place (3e-8 at these weights, below 0.35); one more round of local SGD
    carries that through. A different training (another seed, one client missing) moves the
    weights by 1e-3 and more."""
    psutil = pytest.importorskip("psutil")
    job = FederatedJob(**SMALL)
    link, nodes = free_port(), [free_port() for _ in range(job.clients)]
    sockets: list[tuple[str, int, str]] = []
    rounds: list[RoundRecord] = []
    processes: list[Any] = []

    def on_round(record: RoundRecord) -> None:
        rounds.append(record)
        sockets.extend(_listening(psutil))
        processes.extend(psutil.Process().children(recursive=True))

    result = run_deployment(
        job, engine=DeploymentEngine(superlink_port=link, supernode_ports=nodes), on_round=on_round
    )
    assert len({p.pid for p in processes}) > job.clients + 1  # Flower's helpers were seen too
    assert not _still_running(psutil, processes), "a Flower process outlived the run"
    record = result.record
    assert record["engine"].startswith(f"deployment (SuperLink + {job.clients} SuperNodes, Flower")
    assert [r.round for r in rounds] == [0, 1, 2] and len(record["curve"]) == 3
    assert {port for _, port, _ in sockets} >= {link, *nodes}
    assert {address for address, _, _ in sockets} == {"127.0.0.1"}, sockets

    reference = _in_process(job)
    assert [p["sha256"] for p in record["partitions"]] == [
        p["sha256"] for p in reference.record["partitions"]
    ]
    got, want = get_weights(result.module), get_weights(reference.module)
    initial = initial_global_weights(job.make_module, job.seed)
    assert max(float(np.abs(w - i).max()) for w, i in zip(want, initial, strict=True)) > 1e-3
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_secagg_on_superlink_and_supernodes_is_fedavg_within_the_quantisation_step() -> None:
    """Each round's SecAgg+ aggregate equals the weighted FedAvg of the clients' models trained
    from the same global model, within SecAgg+'s quantisation: every client's scaled weights
    are stochastically rounded to a step Δ = 2·clipping_range / quantization_range, so the
    average is off by at most n·Δ / Σ(weight_i / max_weight) (plus float32 rounding, 1e-6)."""
    psutil = pytest.importorskip("psutil")
    # one round: under SecAgg+ each round starts four ClientApp processes per SuperNode
    job = FederatedJob(**{**SMALL, "rounds": 1}, secagg=True)
    result = run_deployment(job)
    assert not _still_running(psutil), "a Flower process outlived the run"
    assert result.record["secure_aggregation"]["enabled"] is True
    assert result.record["engine"].startswith("deployment (SuperLink + 3 SuperNodes")

    secagg = job.secure_aggregation()
    assert secagg is not None
    train, _ = job.load_data()
    parts = partition_dataset(train, job.partition, job.clients, seed=job.seed)
    sizes = np.array([len(p) for p in parts], dtype=float)
    step = 2 * secagg.clipping_range / secagg.quantization_range
    bound = job.clients * step / (sizes / sizes.max()).sum() + 1e-6

    global_weights = [initial_global_weights(job.make_module, job.seed)]
    for update in result.round_updates:
        global_weights.append([w + u for w, u in zip(global_weights[-1], update, strict=True)])
    for server_round in range(1, job.rounds + 1):
        start = global_weights[server_round - 1]
        trained = [
            FederatedClient(
                job.make_module, part, partition_id=i, training=job.local_training(), seed=job.seed
            ).fit([w.copy() for w in start], {ROUND_KEY: server_round})[0]
            for i, part in enumerate(parts)
        ]
        for k, got in enumerate(global_weights[server_round]):
            expected = sum(
                n * t[k].astype(np.float64) for n, t in zip(sizes, trained, strict=True)
            ) / sum(sizes)
            assert float(np.abs(got - expected).max()) <= bound, (server_round, k)
            # and not merely close to where the round started
            if k == 0:
                assert float(np.abs(expected - start[k]).max()) > 100 * bound

    # round 1 starts from the same weights on both engines: within twice the bound of each other
    reference = _in_process(job)
    for a, b in zip(result.round_updates[0], reference.round_updates[0], strict=True):
        assert float(np.abs(a - b).max()) <= 2 * bound


# -- failures --------------------------------------------------------------------------------
def test_a_superlink_that_cannot_bind_its_port_is_named_with_its_log(taken_port: int) -> None:
    psutil = pytest.importorskip("psutil")
    job = FederatedJob(**SMALL)
    with pytest.raises(
        FederationError, match=r"SuperLink exited with code \d+ while starting"
    ) as e:
        run_deployment(job, engine=DeploymentEngine(superlink_port=taken_port, start_timeout_s=30))
    assert "address already in use" in str(e.value)
    assert not _still_running(psutil)


def test_a_supernode_that_cannot_bind_its_port_is_named_with_its_log(taken_port: int) -> None:
    psutil = pytest.importorskip("psutil")
    job = FederatedJob(**SMALL)
    ports = [free_port(), taken_port, free_port()]
    with pytest.raises(FederationError, match=r"SuperNode 1 exited with code \d+ while starting"):
        run_deployment(job, engine=DeploymentEngine(supernode_ports=ports, start_timeout_s=30))
    assert not _still_running(psutil)


def test_bad_counts_are_refused_before_any_process_starts() -> None:
    with pytest.raises(ConfigError, match="SecAgg\\+ needs at least 3 clients"):
        run_deployment(FederatedJob(clients=2, secagg=True))
    with pytest.raises(ConfigError, match="one each"):
        run_deployment(FederatedJob(clients=3), engine=DeploymentEngine(supernode_ports=[1, 2]))
