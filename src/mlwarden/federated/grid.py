"""Run a Flower ``ServerApp`` against ``ClientApp`` nodes in this process, without Ray.

Flower 1.42's ``run_simulation`` always starts its Ray backend, which binds the host's network
address. :class:`LocalGrid` is the same contract one level lower: it implements Flower's public
``flwr.serverapp.Grid`` (the object a ``ServerApp`` sends its messages through), and delivers
each message straight to the ``ClientApp`` of its destination node, each node keeping its own
``Context`` between rounds as a SuperNode does. Nothing listens on a socket and nothing runs in
another thread, so a run is deterministic: replies come back sorted by node, and the same
seed gives the same global model bit for bit.

A node can be made to drop out (:class:`Dropout`): from a chosen round and message on it stops
replying, exactly as a SuperNode that lost its connection, so SecAgg+'s recovery path (the
survivors reveal the dropped node's mask shares) is exercised for real.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import NUM_PARTITIONS_KEY, PARTITION_ID_KEY
from flwr.proto.node_pb2 import NodeInfo  # type: ignore[attr-defined]
from flwr.serverapp import Grid
from flwr.supercore.run import Run

__all__ = ["Dropout", "LocalGrid"]

logger = logging.getLogger(__name__)

_FIRST_NODE_ID = 1001  # node IDs are fixed (partition i is node 1001 + i), so runs repeat


@dataclass(frozen=True)
class Dropout:
    """Node ``partition_id`` answers ``after_messages`` messages, then never again.

    Messages are counted over the whole run. Plain FedAvg sends a node one ``train`` message per
    round; SecAgg+ sends four (setup, share keys, collect masked vectors, unmask). So with
    SecAgg+, ``after_messages = 4 * (r - 1) + 2`` drops the node in round ``r`` after it shared
    its keys and before it sent its masked update: the case SecAgg+'s secret sharing is for.
    """

    partition_id: int
    after_messages: int

    def __post_init__(self) -> None:
        if self.partition_id < 0 or self.after_messages < 0:
            raise ValueError(f"Dropout needs partition_id >= 0 and after_messages >= 0, got {self}")


class LocalGrid(Grid):
    """A Flower ``Grid`` that runs every node's ``ClientApp`` in this process.

    Parameters
    ----------
    client_app
        The ``ClientApp`` every node runs (its mods included).
    n_nodes
        How many nodes; node ``i`` gets ``partition-id = i`` and ``num-partitions = n_nodes``
        in its node config.
    run_config
        The run config every node's ``Context`` carries.
    dropouts
        Nodes that stop replying (see :class:`Dropout`).
    """

    def __init__(
        self,
        client_app: ClientApp,
        n_nodes: int,
        *,
        run_config: dict[str, Any] | None = None,
        dropouts: Sequence[Dropout] = (),
    ) -> None:
        self._client_app = client_app
        self._run = Run.create_empty(run_id=1)
        self._node_ids = [_FIRST_NODE_ID + i for i in range(n_nodes)]
        self._contexts = {
            node_id: Context(
                run_id=1,
                node_id=node_id,
                node_config={PARTITION_ID_KEY: i, NUM_PARTITIONS_KEY: n_nodes},
                state=RecordDict(),
                run_config=dict(run_config or {}),
            )
            for i, node_id in enumerate(self._node_ids)
        }
        self._dropouts = {d.partition_id: d for d in dropouts}
        self._dropped: set[int] = set()
        self._answered: dict[int, int] = {}
        self._replies: dict[str, Message] = {}
        self._lock = threading.Lock()  # Flower polls get_node_ids from a helper thread
        self.messages_delivered = 0

    # -- the Grid contract -------------------------------------------------------------------
    def set_run(self, run: Run) -> None:
        """Adopt the run the ServerApp is started with."""
        self._run = run

    @property
    def run(self) -> Run:
        """The current run."""
        return self._run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        """A new message (Flower's deprecated helper, kept for older workflows)."""
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        """IDs of the nodes still connected (a dropped node is gone, as a dead SuperNode)."""
        with self._lock:
            return [n for n in self._node_ids if self._partition(n) not in self._dropped]

    def get_nodes(self) -> Iterable[NodeInfo]:
        """Node infos of the connected nodes."""
        return [NodeInfo(node_id=n) for n in self.get_node_ids()]

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Deliver each message to its node now; its reply (if any) waits for a pull."""
        ids: list[str] = []
        for message in messages:
            message.metadata.__dict__["_message_id"] = str(uuid4())
            message.metadata.__dict__["_run_id"] = self._run.run_id
            ids.append(message.metadata.message_id)
            reply = self._deliver(message)
            if reply is not None:
                self._replies[message.metadata.message_id] = reply
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        """The replies to ``message_ids`` that exist, sorted by the node that sent them."""
        found = [self._replies.pop(i) for i in list(message_ids) if i in self._replies]
        return sorted(found, key=lambda m: m.metadata.src_node_id)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Deliver ``messages`` and return every reply (a dropped node's is missing)."""
        return self.pull_messages(self.push_messages(messages))

    # -- delivery ----------------------------------------------------------------------------
    def _partition(self, node_id: int) -> int:
        return node_id - _FIRST_NODE_ID

    def _deliver(self, message: Message) -> Message | None:
        node_id = message.metadata.dst_node_id
        if node_id not in self._contexts:
            raise KeyError(f"message for unknown node {node_id}")
        partition = self._partition(node_id)
        if partition in self._dropped:
            return None
        dropout = self._dropouts.get(partition)
        if dropout is not None:
            answered = self._answered.get(partition, 0)
            if answered >= dropout.after_messages:
                logger.info("node %d (partition %d) drops out", node_id, partition)
                with self._lock:
                    self._dropped.add(partition)
                return None
            self._answered[partition] = answered + 1
        context = self._contexts[node_id]
        # Each node gets its own copy, as over the wire: Flower's workflows send one content
        # object to every node, and mods (SecAgg+) consume keys from it.
        reply = self._client_app(copy.deepcopy(message), context)
        self.messages_delivered += 1
        reply.metadata.__dict__["_message_id"] = str(uuid4())
        return reply
