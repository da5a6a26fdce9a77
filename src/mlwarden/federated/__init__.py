"""Federated learning on Flower: partitions, client and server apps, SecAgg+, DP, runners.

Install with ``pip install mlwarden[fl]``. :func:`run_federated` trains in this process over
Flower's own ``ServerApp``/``ClientApp`` (no Ray); ``mlwarden fl train`` is its command line.
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
from mlwarden.federated.grid import Dropout, LocalGrid
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
    "Dropout",
    "FederatedClient",
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
    "run_federated",
    "set_weights",
    "train_local",
]
