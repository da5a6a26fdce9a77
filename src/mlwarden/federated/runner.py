"""Federated training end to end, in this process: partition, train, aggregate, record.

:func:`run_federated` splits the training data among the clients
(:mod:`~mlwarden.federated.partition`), builds a Flower ``ClientApp`` and ``ServerApp``
(:mod:`~mlwarden.federated.client`, :mod:`~mlwarden.federated.server`) and runs them over a
:class:`~mlwarden.federated.grid.LocalGrid`: Flower's own workflows (FedAvg, SecAgg+, the DP
wrappers) run unchanged; only the transport is in-process. The global model is evaluated on the
held-out data before training and after every round (the curve), and the run is summarised in a
training record: each partition's digest, the rounds and clients per round, whether secure
aggregation was on, and the privacy record.

The same seed gives the same global model: partitions, client shuffles, DP-SGD noise and
Flower's client sampling are all seeded, and the grid returns replies in node order so the
floating-point sums are taken in the same order every time. Flower's client-level DP noise is
drawn from NumPy's global generator, which the run seeds and restores afterwards: reproducible,
and therefore not cryptographically secure (the record says so).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import random
import re
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from mlwarden import __version__
from mlwarden.data.dataset import Dataset
from mlwarden.errors import ConfigError, MlwardenError, SecurityWarning
from mlwarden.federated.client import (
    ROUND_KEY,
    FederatedClient,
    LocalTraining,
    ModelReplacementClient,
    SampleLevelDP,
    get_weights,
    make_client_app,
    set_weights,
)
from mlwarden.federated.grid import Dropout, LocalGrid
from mlwarden.federated.partition import parse_partition, partition_dataset
from mlwarden.federated.server import (
    ClientLevelDP,
    SecureAggregation,
    build_strategy,
    make_server_app,
)

if TYPE_CHECKING:
    from flwr.serverapp import ServerApp

__all__ = [
    "Backdoor",
    "CurveRecorder",
    "FederatedResult",
    "RoundRecord",
    "SampleLevelTarget",
    "calibrate_sample_dp",
    "check_counts",
    "client_dp_record",
    "client_mods",
    "federated_server_app",
    "honest_clients",
    "initial_global_weights",
    "largest_client_weight",
    "parse_privacy",
    "result_from_weights",
    "run_federated",
    "seeded_generators",
    "training_record",
]

logger = logging.getLogger(__name__)

INSECURE_NOISE_WARNING = (
    "DP noise in this federated run comes from seeded generators (Opacus's without secure "
    "mode, NumPy's for Flower's client-level noise): reproducible, not cryptographically "
    "secure. Fine for experiments; not for a release."
)


@dataclass(frozen=True)
class SampleLevelTarget:
    """Sample-level DP: every client trains with DP-SGD calibrated to (``epsilon``, ``delta``).

    The guarantee protects one training sample of one client over the whole run: each client's
    noise σ is calibrated (Opacus's RDP accountant) for all its steps over all rounds.
    """

    epsilon: float
    delta: float = 1e-5
    max_grad_norm: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.epsilon) and self.epsilon > 0):
            raise ConfigError(f"sample-level ε must be a positive number, got {self.epsilon!r}")
        if not self.max_grad_norm > 0:
            raise ConfigError(f"max_grad_norm must be > 0, got {self.max_grad_norm!r}")


Privacy = SampleLevelTarget | ClientLevelDP


def parse_privacy(spec: str, *, delta: float | None = None) -> Privacy | None:
    """``none``, ``sample:EPS`` (DP-SGD on every client) or ``client:NOISE`` (Flower's wrappers).

    Raises
    ------
    ConfigError
        Another form, or a number that is not positive.
    """
    text = spec.strip().lower()
    if text == "none":
        return None
    match = re.fullmatch(r"(sample|client):([0-9.eE+-]+)", text)
    if not match:
        raise ConfigError(
            f"--dp {spec!r} is unknown; use none, sample:EPS (e.g. sample:5) or client:NOISE "
            "(e.g. client:1.0)"
        )
    try:
        value = float(match.group(2))
    except ValueError:
        raise ConfigError(f"--dp {spec!r}: {match.group(2)!r} is not a number") from None
    if match.group(1) == "sample":
        return SampleLevelTarget(epsilon=value, **({"delta": delta} if delta else {}))
    return ClientLevelDP(noise_multiplier=value, **({"delta": delta} if delta else {}))


@dataclass(frozen=True)
class Backdoor:
    """One malicious client planting a BadNets trigger by model replacement.

    Attributes
    ----------
    partition_id
        Which client is malicious.
    boost
        γ, the scale of its update (``0``: the number of clients per round, full replacement).
    target_class, rate, patch_size
        The BadNets trigger: the share of the attacker's samples stamped and relabelled.
    """

    partition_id: int = 0
    boost: float = 0.0
    target_class: int = 0
    rate: float = 0.5
    patch_size: int = 2


@dataclass(frozen=True)
class RoundRecord:
    """The global model after round ``round`` (round 0: before training)."""

    round: int
    test_accuracy: float
    test_loss: float
    seconds: float = 0.0
    backdoor_success: float | None = None
    aggregated: bool = True
    """``False`` when the round changed nothing (e.g. too few clients left for SecAgg+)."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON view without unmeasured fields."""
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class FederatedResult:
    """The global model, its per-round curve and the training record."""

    module: nn.Module
    curve: list[RoundRecord]
    record: dict[str, Any]
    round_updates: list[list[np.ndarray]] = field(default_factory=list, repr=False)
    """What the server saw each round: ``global_r - global_{r-1}`` (the aggregate update)."""

    @property
    def test_accuracy(self) -> float:
        """Held-out accuracy of the final global model."""
        return self.curve[-1].test_accuracy


def _evaluate(module: nn.Module, data: Dataset) -> tuple[float, float]:
    module.eval()
    with torch.no_grad():
        logits = module(torch.from_numpy(data.x))
        loss = float(nn.functional.cross_entropy(logits, torch.from_numpy(data.y)))
        accuracy = float((logits.argmax(1).numpy() == data.y).mean())
    return loss, accuracy


@contextmanager
def seeded_generators(seed: int) -> Iterator[None]:
    """Seed Python's, NumPy's and torch's global generators; restore them afterwards.

    Flower samples clients with ``random`` and draws client-level DP noise from NumPy's global
    generator; a ``ServerApp`` run under this context repeats itself for the same ``seed``
    whichever engine runs it. Flower's own log is quietened to warnings meanwhile.
    """
    py_state, np_state = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    flwr_logger = logging.getLogger("flwr")
    level = flwr_logger.level
    flwr_logger.setLevel(logging.WARNING)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        flwr_logger.setLevel(level)


@contextmanager
def _seeded_globals(seed: int) -> Iterator[None]:
    """:func:`seeded_generators`, and Flower's task identity of a ServerApp in this process."""
    from flwr.common.constant import SUPERLINK_NODE_ID
    from flwr.supercore.task_identity import TaskIdentity

    # Flower stamps every message it builds with this process's task identity (a SuperLink
    # sets it for a ServerApp process; here the ServerApp runs in this one).
    identity = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, SUPERLINK_NODE_ID
    try:
        with seeded_generators(seed):
            yield
    finally:
        TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = identity


def run_federated(
    make_module: Callable[[], nn.Module],
    train: Dataset,
    test: Dataset,
    *,
    clients: int = 5,
    rounds: int = 10,
    clients_per_round: int | None = None,
    partition: str = "iid",
    local: LocalTraining | None = None,
    aggregator: str = "fedavg",
    secure_aggregation: SecureAggregation | None = None,
    privacy: Privacy | None = None,
    backdoor: Backdoor | None = None,
    dropouts: Sequence[Dropout] = (),
    seed: int = 0,
    on_round: Callable[[RoundRecord], None] | None = None,
    architecture: str = "",
) -> FederatedResult:
    """Train ``make_module``'s architecture federatedly on ``train``; evaluate on ``test``.

    Parameters
    ----------
    make_module
        Builds a fresh module (its initial weights are drawn under ``seed``).
    train, test
        Pooled training data (partitioned among the clients) and held-out data (server side).
    clients, rounds, clients_per_round
        Population, rounds, and clients sampled per round (default: all).
    partition
        ``iid``, ``dirichlet:ALPHA`` or ``by-class:K``.
    local
        Each client's local training (default :class:`LocalTraining`).
    aggregator
        ``fedavg``, ``fedmedian``, ``fedtrimmedavg`` or ``krum``.
    secure_aggregation
        SecAgg+ settings, or ``None`` for plain aggregation.
    privacy
        :class:`SampleLevelTarget`, :class:`~mlwarden.federated.server.ClientLevelDP` or
        ``None``.
    backdoor
        A malicious client, or ``None``.
    dropouts
        Clients that stop replying mid-run (:class:`~mlwarden.federated.grid.Dropout`).
    seed
        Seed of everything random.
    on_round
        Called with each :class:`RoundRecord` as it is measured.
    architecture
        Name recorded for the architecture.

    Raises
    ------
    ConfigError
        Bad counts, an unknown partition or aggregator, a δ too large for a client's data, or
        combinations that cannot work (robust aggregation needs to see single updates, so it
        cannot run under secure aggregation with DP; client-level DP over a robust aggregator).
    """
    local = local or LocalTraining()
    per_round = check_counts(clients, rounds, clients_per_round, secure_aggregation)
    parsed_partition = parse_partition(partition)
    if backdoor is not None and not 0 <= backdoor.partition_id < clients:
        raise ConfigError(f"backdoor client {backdoor.partition_id} is not one of 0..{clients - 1}")
    parts = partition_dataset(train, parsed_partition, clients, seed=seed)
    initial_weights = initial_global_weights(make_module, seed)

    sample_dp: dict[int, SampleLevelDP] = {}
    privacy_record: dict[str, Any] | None = None
    if isinstance(privacy, SampleLevelTarget):
        sample_dp, privacy_record = calibrate_sample_dp(privacy, parts, local, rounds)
    client_dp = privacy if isinstance(privacy, ClientLevelDP) else None

    poisoned: Dataset | None = None
    trigger: Any = None
    if backdoor is not None:
        from mlwarden.attacks.poisoning import BadNets

        trigger = BadNets(
            rate=backdoor.rate,
            target_class=backdoor.target_class,
            seed=seed,
            patch_size=backdoor.patch_size,
        )
        poisoned = trigger.poison(parts[backdoor.partition_id]).dataset
    boost = (backdoor.boost or float(per_round)) if backdoor is not None else 0.0
    honest_client = honest_clients(
        make_module, parts, local=local, seed=seed, sample_dp=sample_dp, client_dp=client_dp
    )

    def client_for(partition_id: int) -> FederatedClient:
        if backdoor is not None and partition_id == backdoor.partition_id and poisoned is not None:
            return ModelReplacementClient(
                make_module,
                poisoned,
                partition_id=partition_id,
                training=local,
                seed=seed,
                boost=boost,
            )
        return honest_client(partition_id)

    mods, clip_on_clients = client_mods(secure_aggregation, client_dp)

    backdoor_probe: tuple[np.ndarray, int] | None = None
    if trigger is not None and backdoor is not None:
        keep = test.y != backdoor.target_class
        backdoor_probe = (
            trigger.apply_trigger(test.x[keep], test.clip_range),
            backdoor.target_class,
        )
    curve = CurveRecorder(make_module(), test, on_round=on_round, backdoor_probe=backdoor_probe)
    server_app = federated_server_app(
        curve,
        initial_weights,
        aggregator=aggregator,
        clients=clients,
        clients_per_round=per_round,
        rounds=rounds,
        secure_aggregation=secure_aggregation,
        client_dp=client_dp,
        max_weight=largest_client_weight(parts, client_dp),
        n_malicious=1 if backdoor is not None else 0,
    )
    client_app = make_client_app(client_for, mods=mods)
    grid = LocalGrid(client_app, clients, dropouts=dropouts)
    if privacy is not None:
        warnings.warn(INSECURE_NOISE_WARNING, SecurityWarning, stacklevel=2)

    started = time.perf_counter()
    from flwr.app import Context, RecordDict
    from flwr.server.run_serverapp import run as run_serverapp

    with _seeded_globals(seed):
        run_serverapp(
            grid=grid,
            context=Context(
                run_id=grid.run.run_id, node_id=0, node_config={}, state=RecordDict(), run_config={}
            ),
            server_app_dir="",
            loaded_server_app=server_app,
        )
    seconds = time.perf_counter() - started
    if client_dp is not None:
        privacy_record = client_dp_record(client_dp, clients, per_round, rounds, clip_on_clients)
    record = training_record(
        engine="in-process (mlwarden LocalGrid over Flower's ServerApp/ClientApp)",
        train=train,
        test=test,
        parts=parts,
        curve=curve.curve,
        seconds=seconds,
        architecture=architecture,
        aggregator=aggregator,
        rounds=rounds,
        clients=clients,
        clients_per_round=per_round,
        local=local,
        partition=str(parsed_partition),
        secure_aggregation=secure_aggregation,
        privacy_record=privacy_record,
        seed=seed,
        extra={
            "dropouts": [asdict(d) for d in dropouts],
            "backdoor": (
                {**asdict(backdoor), "boost": boost, "attack": "model-replacement+badnets"}
                if backdoor is not None
                else None
            ),
        },
    )
    return result_from_weights(make_module, curve.curve, curve.weights, record, rounds=rounds)


def check_counts(
    clients: int,
    rounds: int,
    clients_per_round: int | None,
    secure_aggregation: SecureAggregation | None,
) -> int:
    """The clients per round, after checking the counts; both engines refuse the same values.

    Raises
    ------
    ConfigError
        A count that is not a positive whole number, more clients per round than clients, or
        SecAgg+ with fewer than 3 clients per round.
    """
    for name, value in (("--clients", clients), ("--rounds", rounds)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive whole number, got {value!r}")
    per_round = clients if clients_per_round is None else clients_per_round
    if not 1 <= per_round <= clients:
        raise ConfigError(
            f"--clients-per-round must lie in [1, {clients}], got {clients_per_round!r}"
        )
    if secure_aggregation is not None and per_round < 3:
        raise ConfigError("SecAgg+ needs at least 3 clients per round")
    return per_round


def initial_global_weights(make_module: Callable[[], nn.Module], seed: int) -> list[np.ndarray]:
    """The global model's starting weights: ``make_module()`` under ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        initial = make_module()
    return get_weights(initial)


def largest_client_weight(parts: Sequence[Dataset], client_dp: ClientLevelDP | None) -> float:
    """The largest weight a client reports (its sample count; 1 each when client DP averages
    uniformly): SecAgg+'s ``max_weight``, see :meth:`SecureAggregation.workflow`."""
    return 1.0 if client_dp is not None else float(max(len(p) for p in parts))


def honest_clients(
    make_module: Callable[[], nn.Module],
    parts: Sequence[Dataset],
    *,
    local: LocalTraining,
    seed: int,
    sample_dp: dict[int, SampleLevelDP],
    client_dp: ClientLevelDP | None,
) -> Callable[[int], FederatedClient]:
    """``client_for(i)``: the honest client training partition ``parts[i]``.

    Both engines build their clients with it: in process for every node, on a SuperNode for
    its own partition.
    """

    def client_for(partition_id: int) -> FederatedClient:
        if not 0 <= partition_id < len(parts):
            raise ConfigError(f"partition-id {partition_id} is not one of 0..{len(parts) - 1}")
        return FederatedClient(
            make_module,
            parts[partition_id],
            partition_id=partition_id,
            training=local,
            seed=seed,
            dp=sample_dp.get(partition_id),
            uniform_weight=client_dp is not None,
        )

    return client_for


def client_mods(
    secure_aggregation: SecureAggregation | None, client_dp: ClientLevelDP | None
) -> tuple[list[Callable[..., Any]], bool]:
    """The client mods (outermost first) and whether the clients clip their own updates.

    SecAgg+ needs ``secaggplus_mod``; client-level DP under SecAgg+ clips on the clients
    (``fixedclipping_mod``), since the server never sees a single update.
    """
    mods: list[Callable[..., Any]] = []
    if secure_aggregation is not None:
        from flwr.client.mod import secaggplus_mod

        mods.append(secaggplus_mod)
    clip_on_clients = client_dp is not None and secure_aggregation is not None
    if clip_on_clients:
        from flwr.client.mod import fixedclipping_mod

        mods.append(fixedclipping_mod)
    return mods, clip_on_clients


class CurveRecorder:
    """The server's evaluation: the global model on held-out data after every round.

    Used as the strategy's ``evaluate_fn``; keeps each :class:`RoundRecord` in :attr:`curve`
    and each round's global weights in :attr:`weights` (round 0 first).

    Parameters
    ----------
    evaluator
        A module of the federation's architecture, loaded with each round's weights.
    test
        Held-out data.
    on_round
        Called with each record as it is measured.
    backdoor_probe
        Triggered held-out inputs and the backdoor's target class, or ``None``.
    """

    def __init__(
        self,
        evaluator: nn.Module,
        test: Dataset,
        *,
        on_round: Callable[[RoundRecord], None] | None = None,
        backdoor_probe: tuple[np.ndarray, int] | None = None,
    ) -> None:
        self.evaluator = evaluator
        self.test = test
        self.on_round = on_round
        self.backdoor_probe = backdoor_probe
        self.curve: list[RoundRecord] = []
        self.weights: list[list[np.ndarray]] = []
        self._round_started = time.perf_counter()

    def __call__(
        self, server_round: int, weights: list[np.ndarray], config: dict[str, Any]
    ) -> tuple[float, dict[str, Any]]:
        """Evaluate ``weights`` (the global model after ``server_round``); record the round."""
        finished = time.perf_counter()
        set_weights(self.evaluator, weights)
        loss, accuracy = _evaluate(self.evaluator, self.test)
        success = None
        if self.backdoor_probe is not None:
            triggered, target = self.backdoor_probe
            with torch.no_grad():
                pred = self.evaluator(torch.from_numpy(triggered)).argmax(1).numpy()
            success = float((pred == target).mean())
        aggregated = server_round == 0 or any(
            not np.array_equal(w, p) for w, p in zip(weights, self.weights[-1], strict=True)
        )
        record = RoundRecord(
            round=server_round,
            aggregated=aggregated,
            test_accuracy=accuracy,
            test_loss=loss,
            seconds=round(finished - self._round_started, 4) if server_round else 0.0,
            backdoor_success=success,
        )
        self.curve.append(record)
        self.weights.append([np.array(w, copy=True) for w in weights])
        if self.on_round is not None:
            self.on_round(record)
        self._round_started = time.perf_counter()
        return loss, {"accuracy": accuracy}


def _fit_config(server_round: int) -> dict[str, Any]:
    return {ROUND_KEY: server_round}


def federated_server_app(
    curve: CurveRecorder,
    initial_weights: list[np.ndarray],
    *,
    aggregator: str,
    clients: int,
    clients_per_round: int,
    rounds: int,
    secure_aggregation: SecureAggregation | None,
    client_dp: ClientLevelDP | None,
    max_weight: float,
    n_malicious: int = 0,
    wait_for_nodes_s: float = 0.0,
) -> ServerApp:
    """The ``ServerApp`` both engines run: the strategy, its DP wrapper, SecAgg+ when asked.

    ``wait_for_nodes_s`` > 0 makes it wait (at most that long) until all ``clients`` nodes are
    connected before round 1, as it must on the deployment engine, where SuperNodes connect on
    their own schedule (see :func:`~mlwarden.federated.server.make_server_app`).
    """
    _, clip_on_clients = client_mods(secure_aggregation, client_dp)
    strategy = build_strategy(
        aggregator,
        n_clients=clients,
        clients_per_round=clients_per_round,
        initial_weights=initial_weights,
        evaluate_fn=curve,
        fit_config=_fit_config,
        client_dp=client_dp,
        clip_on_clients=clip_on_clients,
        n_malicious=n_malicious,
    )
    return make_server_app(
        strategy,
        rounds=rounds,
        secure_aggregation=secure_aggregation,
        clients_per_round=clients_per_round,
        max_weight=max_weight,
        min_nodes=clients if wait_for_nodes_s > 0 else 0,
        wait_for_nodes_s=wait_for_nodes_s,
    )


def result_from_weights(
    make_module: Callable[[], nn.Module],
    curve: list[RoundRecord],
    weights: list[list[np.ndarray]],
    record: dict[str, Any],
    *,
    rounds: int,
) -> FederatedResult:
    """The :class:`FederatedResult` of a run whose global weights were ``weights`` (round 0
    first).

    Raises
    ------
    MlwardenError
        The run stopped before its last round.
    """
    if len(curve) != rounds + 1 or len(weights) != rounds + 1:
        raise MlwardenError(
            f"federated run ended after {len(curve) - 1} of {rounds} rounds (see Flower's log)"
        )
    module = make_module()
    set_weights(module, weights[-1])
    module.eval()
    updates = [
        [after - before for before, after in zip(weights[r - 1], weights[r], strict=True)]
        for r in range(1, len(weights))
    ]
    return FederatedResult(module=module, curve=curve, record=record, round_updates=updates)


def training_record(
    *,
    engine: str,
    train: Dataset,
    test: Dataset,
    parts: Sequence[Dataset],
    curve: list[RoundRecord],
    seconds: float,
    architecture: str,
    aggregator: str,
    rounds: int,
    clients: int,
    clients_per_round: int,
    local: LocalTraining,
    partition: str,
    secure_aggregation: SecureAggregation | None,
    privacy_record: dict[str, Any] | None,
    seed: int,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The training record of a federated run (the ``training`` entry of the model sidecar)."""
    import flwr

    return {
        "recipe": "mlwarden fl train",
        "method": "federated-averaging" if aggregator == "fedavg" else aggregator,
        "aggregator": aggregator,
        "architecture": architecture,
        "engine": engine,
        "rounds": rounds,
        "clients": clients,
        "clients_per_round": clients_per_round,
        "local_training": asdict(local),
        "partition": partition,
        "partitions": [
            {
                "client": i,
                "n_samples": len(p),
                "sha256": p.digest(),
                "class_counts": np.bincount(p.y, minlength=p.n_classes).tolist(),
            }
            for i, p in enumerate(parts)
        ],
        "secure_aggregation": (
            {"enabled": True, "protocol": "SecAgg+", **asdict(secure_aggregation)}
            if secure_aggregation is not None
            else {"enabled": False}
        ),
        "privacy": privacy_record,
        **(extra or {}),
        "seed": seed,
        "dataset": train.name,
        "dataset_sha256": train.digest(),
        "validation_dataset": test.name,
        "validation_sha256": test.digest(),
        "curve": [r.to_dict() for r in curve],
        "test_accuracy": curve[-1].test_accuracy,
        "created_at": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "seconds": round(seconds, 3),
        "mlwarden_version": __version__,
        "torch_version": torch.__version__,
        "flwr_version": flwr.__version__,
    }


def calibrate_sample_dp(
    target: SampleLevelTarget, parts: Sequence[Dataset], local: LocalTraining, rounds: int
) -> tuple[dict[int, SampleLevelDP], dict[str, Any]]:
    """Each client's DP-SGD noise σ for ``target`` over all its steps, and the privacy record.

    Depends only on the partitions' sizes and the training schedule, so every engine (and
    every SuperNode) computes the same σ.

    Raises
    ------
    ConfigError
        δ too large for a client's partition.
    """
    from mlwarden.defenses.training.dp_accounting import (
        accountant_epsilons,
        check_budget,
        noise_multiplier_for,
        steps_per_epoch,
    )
    from mlwarden.defenses.training.dp_record import PrivacyRecord

    configs: dict[int, SampleLevelDP] = {}
    records: list[dict[str, Any]] = []
    for i, part in enumerate(parts):
        check_budget(target.epsilon, target.delta, len(part))
        per_epoch = steps_per_epoch(len(part), local.batch_size)
        steps = rounds * local.epochs * per_epoch
        sample_rate = 1.0 / per_epoch
        sigma = noise_multiplier_for(
            epsilon=target.epsilon, delta=target.delta, sample_rate=sample_rate, steps=steps
        )
        spent = accountant_epsilons(
            noise_multiplier=sigma, sample_rate=sample_rate, steps=steps, delta=target.delta
        )
        configs[i] = SampleLevelDP(
            noise_multiplier=sigma, max_grad_norm=target.max_grad_norm, delta=target.delta
        )
        records.append(
            {
                "client": i,
                **PrivacyRecord(
                    epsilon=target.epsilon,
                    delta=target.delta,
                    accountant="rdp",
                    noise_multiplier=sigma,
                    sample_rate=sample_rate,
                    steps=steps,
                    max_grad_norm=target.max_grad_norm,
                    epochs=rounds * local.epochs,
                    batch_size=local.batch_size,
                    dataset_sha256=part.digest(),
                    epsilon_per_epoch=(spent["rdp"],),
                    epsilon_rdp=spent["rdp"],
                    epsilon_prv=spent["prv"],
                    n_samples=len(part),
                    grad_sample_mode="hooks",
                ).to_dict(),
            }
        )
    return configs, {
        "level": "sample",
        "mechanism": "DP-SGD on every client (Opacus)",
        "epsilon": target.epsilon,
        "delta": target.delta,
        "epsilon_spent": max(r["epsilon_spent"] for r in records),
        "accountant": "rdp",
        "assumes": "every client trains in every round (an upper bound when clients are sampled)",
        "secure_mode": False,
        "clients": records,
    }


def client_dp_record(
    dp: ClientLevelDP, clients: int, per_round: int, rounds: int, clip_on_clients: bool
) -> dict[str, Any]:
    """The privacy record of client-level DP: ε spent after ``rounds`` releases (Flower's
    ``RdpAccountant``, no sampling amplification)."""
    from flwr.serverapp import (
        GaussianPrivacyEvent,
        NeighboringRelation,
        PrivacyConfig,
        RdpAccountant,
        SamplingMethod,
    )

    accountant = RdpAccountant(
        PrivacyConfig(
            target_delta=dp.delta,
            population_size=clients,
            neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
            sampling_method=SamplingMethod.NO_AMPLIFICATION,
        )
    )
    accountant.compose(
        GaussianPrivacyEvent(
            noise_multiplier=dp.noise_multiplier, sample_size=per_round, population_size=clients
        ),
        count=rounds,
    )
    spent = accountant.get_privacy_spent()
    return {
        "level": "client",
        "mechanism": (
            "Flower DifferentialPrivacyClientSideFixedClipping + fixedclipping_mod"
            if clip_on_clients
            else "Flower DifferentialPrivacyServerSideFixedClipping"
        ),
        "noise_multiplier": dp.noise_multiplier,
        "clipping_norm": dp.clipping_norm,
        "noise_stddev": dp.noise_multiplier * dp.clipping_norm / per_round,
        "delta": dp.delta,
        "epsilon_spent": float(spent.epsilon),
        "releases": int(spent.num_releases),
        "accountant": f"flwr {spent.accounting_method}",
        "sampling": "no amplification (every release counted in full)",
        "weighting": "uniform (each client reports one example)",
        "secure_mode": False,
    }
