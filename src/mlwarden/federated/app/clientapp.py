"""The ``ClientApp`` a SuperNode runs: local training on this node's partition.

A SuperNode starts this app in a fresh process for every message, with the run config (the
:class:`~mlwarden.federated.job.FederatedJob`) and its own node config (``partition-id``,
``num-partitions``). The app loads the pooled data, keeps partition ``partition-id`` (the same
partitioner and seed as the in-process engine, so the data never crosses a process), and
handles the message with the ``ClientApp`` the in-process engine builds
(:func:`~mlwarden.federated.client.make_client_app` with the same clients and mods: SecAgg+'s
``secaggplus_mod``, client-side clipping for client-level DP under SecAgg+). SecAgg+'s state
between its stages lives in the node's ``Context``, which the SuperNode keeps.
"""

from __future__ import annotations

from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.common.constant import NUM_PARTITIONS_KEY, PARTITION_ID_KEY

from mlwarden.errors import ConfigError
from mlwarden.federated.client import SampleLevelDP, make_client_app
from mlwarden.federated.job import FederatedJob
from mlwarden.federated.partition import parse_partition, partition_dataset
from mlwarden.federated.runner import (
    SampleLevelTarget,
    calibrate_sample_dp,
    client_mods,
    honest_clients,
)
from mlwarden.federated.server import ClientLevelDP

__all__ = ["RunConfiguredClientApp", "app", "client_app_for"]


def client_app_for(context: Context) -> ClientApp:
    """The ``ClientApp`` for this node and run: its partition, local training, DP and mods.

    Raises
    ------
    ConfigError
        A bad run config, or a node config whose ``num-partitions`` is not the run's
        ``clients`` (a SuperNode set up for another federation).
    """
    job = FederatedJob.from_run_config(context.run_config)
    try:
        partition_id = int(context.node_config[PARTITION_ID_KEY])
        n_partitions = int(context.node_config[NUM_PARTITIONS_KEY])
    except (KeyError, ValueError):
        raise ConfigError(
            "this SuperNode's --node-config must set partition-id and num-partitions, got "
            f"{dict(context.node_config)!r}"
        ) from None
    if n_partitions != job.clients:
        raise ConfigError(
            f"this SuperNode has num-partitions={n_partitions}, the run has clients={job.clients}"
        )
    train, _ = job.load_data()
    parts = partition_dataset(train, parse_partition(job.partition), job.clients, seed=job.seed)
    local = job.local_training()
    privacy = job.privacy()
    sample_dp: dict[int, SampleLevelDP] = {}
    if isinstance(privacy, SampleLevelTarget):
        sample_dp, _ = calibrate_sample_dp(privacy, parts, local, job.rounds)
    client_dp = privacy if isinstance(privacy, ClientLevelDP) else None
    client_for = honest_clients(
        job.make_module, parts, local=local, seed=job.seed, sample_dp=sample_dp, client_dp=client_dp
    )
    if not 0 <= partition_id < job.clients:
        raise ConfigError(f"partition-id {partition_id} is not one of 0..{job.clients - 1}")
    mods, _ = client_mods(job.secure_aggregation(), client_dp)
    return make_client_app(client_for, mods=mods)


class RunConfiguredClientApp(ClientApp):
    """A ``ClientApp`` whose clients and mods are read from each message's run and node config.

    Flower loads one ``ClientApp`` object for every run a SuperNode serves; what it does
    (SecAgg+ or not, DP or not) is a property of the run, so it is built per call.
    """

    def __call__(self, message: Message, context: Context) -> Message:
        """Handle ``message`` with this run's ``ClientApp``."""
        return client_app_for(context)(message, context)


app = RunConfiguredClientApp()
"""The ``clientapp`` component of the app's ``pyproject.toml``."""
