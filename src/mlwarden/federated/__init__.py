"""Federated learning on Flower: partitions, client and server apps, SecAgg+, DP, runners.

Install with ``pip install mlwarden[fl]``. :func:`run_federated` trains in this process over
Flower's own ``ServerApp``/``ClientApp`` (no Ray); :func:`run_deployment` trains a
:class:`FederatedJob` on Flower's deployment engine (a SuperLink and SuperNodes, processes on
127.0.0.1) with the same apps; ``mlwarden fl train [--engine deployment]`` is their command line.
"""

from mlwarden.federated.client import (
    FederatedClient,
    LocalTraining,
    ModelReplacementClient,
    SampleLevelDP,
    get_weights,
    make_client_app,
    set_weights,
    train_local,
)
from mlwarden.federated.deployment import DeploymentEngine, run_deployment
from mlwarden.federated.grid import Dropout, LocalGrid
from mlwarden.federated.job import FederatedJob
from mlwarden.federated.partition import (
    PARTITION_KINDS,
    Partition,
    parse_partition,
    partition_dataset,
)
from mlwarden.federated.runner import (
    Backdoor,
    FederatedResult,
    RoundRecord,
    SampleLevelTarget,
    parse_privacy,
    run_federated,
)
from mlwarden.federated.server import (
    AGGREGATORS,
    ClientLevelDP,
    SecureAggregation,
    build_strategy,
    make_server_app,
)

__all__ = [
    "AGGREGATORS",
    "PARTITION_KINDS",
    "Backdoor",
    "ClientLevelDP",
    "DeploymentEngine",
    "Dropout",
    "FederatedClient",
    "FederatedJob",
    "FederatedResult",
    "LocalGrid",
    "LocalTraining",
    "ModelReplacementClient",
    "Partition",
    "RoundRecord",
    "SampleLevelDP",
    "SampleLevelTarget",
    "SecureAggregation",
    "build_strategy",
    "get_weights",
    "make_client_app",
    "make_server_app",
    "parse_partition",
    "parse_privacy",
    "partition_dataset",
    "run_deployment",
    "run_federated",
    "set_weights",
    "train_local",
]
