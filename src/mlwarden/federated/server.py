"""The server side: an aggregation strategy, composed with DP wrappers, in a Flower ``ServerApp``.

Behaviour is composed, as Flower means it to be:

* the aggregator is one of Flower's strategies (:data:`AGGREGATORS`: ``fedavg``, and the robust
  ``fedmedian``, ``fedtrimmedavg``, ``krum``);
* client-level DP wraps it (Flower's ``DifferentialPrivacyServerSideFixedClipping``, or
  ``DifferentialPrivacyClientSideFixedClipping`` when updates are masked by SecAgg+ and only the
  clients can clip them);
* secure aggregation replaces the fit workflow (Flower's ``SecAggPlusWorkflow``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.app import Context
from flwr.common import ndarrays_to_parameters
from flwr.server import LegacyContext, ServerConfig
from flwr.server.strategy import (
    DifferentialPrivacyClientSideFixedClipping,
    DifferentialPrivacyServerSideFixedClipping,
    FedAvg,
    FedMedian,
    FedTrimmedAvg,
    Krum,
    Strategy,
)
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.serverapp import Grid, ServerApp

from mlwarden.errors import ConfigError, MlwardenError

__all__ = [
    "AGGREGATORS",
    "ClientLevelDP",
    "SecureAggregation",
    "build_strategy",
    "make_server_app",
]

AGGREGATORS: tuple[str, ...] = ("fedavg", "fedmedian", "fedtrimmedavg", "krum")

EvaluateFn = Callable[[int, list[np.ndarray], dict[str, Any]], tuple[float, dict[str, Any]] | None]


@dataclass(frozen=True)
class SecureAggregation:
    """SecAgg+ settings (Bell et al., 2020, "Secure Single-Server Aggregation with (Poly)Logarithmic
    Overhead"), as Flower's ``SecAggPlusWorkflow`` takes them.

    Attributes
    ----------
    num_shares
        How many neighbours each client secret-shares its mask seeds with (``≥ 3``); all
        clients when at least the round's client count.
    reconstruction_threshold
        Shares needed to rebuild a dropped client's mask: the round survives up to
        ``num_shares - reconstruction_threshold`` dropouts among a client's neighbours, and
        fewer than this many colluding neighbours learn nothing.
    clipping_range
        Updates are clipped to ``[-clipping_range, clipping_range]`` before quantisation.
    quantization_range
        Integers the clipped values are quantised to (``[0, quantization_range)``).
    """

    num_shares: int = 5
    reconstruction_threshold: int = 3
    clipping_range: float = 8.0
    quantization_range: int = 2**22

    def __post_init__(self) -> None:
        if self.num_shares < 3 or not 2 <= self.reconstruction_threshold < self.num_shares:
            raise ConfigError(
                "SecAgg+ needs num_shares ≥ 3 and 2 ≤ reconstruction_threshold < num_shares, got "
                f"num_shares={self.num_shares}, reconstruction_threshold="
                f"{self.reconstruction_threshold}"
            )

    def workflow(self, n_clients: int, max_weight: float = 1000.0) -> SecAggPlusWorkflow:
        """Flower's SecAgg+ fit workflow for a round of ``n_clients`` clients.

        ``max_weight`` is the largest sample count a client reports: SecAgg+ scales each
        update by ``weight / max_weight`` before quantising, so a bound far above the real
        weights wastes the quantisation's precision (Flower's default is 1000).
        """
        shares = min(self.num_shares, n_clients)
        threshold = min(self.reconstruction_threshold, shares - 1)
        return SecAggPlusWorkflow(
            num_shares=shares,
            reconstruction_threshold=threshold,
            clipping_range=self.clipping_range,
            quantization_range=self.quantization_range,
            max_weight=max_weight,
        )


@dataclass(frozen=True)
class ClientLevelDP:
    """Client-level DP (McMahan et al., 2018, "Learning Differentially Private Recurrent
    Language Models"): each client's update is clipped to ``clipping_norm`` and the average
    gets Gaussian noise of standard deviation ``noise_multiplier * clipping_norm / m`` for ``m``
    sampled clients. One whole client's data is what the guarantee protects.
    """

    noise_multiplier: float
    clipping_norm: float = 1.0
    delta: float = 1e-3

    def __post_init__(self) -> None:
        if not self.noise_multiplier > 0:
            raise ConfigError(
                f"client-level DP needs a noise multiplier > 0, got {self.noise_multiplier!r}"
            )
        if not self.clipping_norm > 0:
            raise ConfigError(f"clipping norm must be > 0, got {self.clipping_norm!r}")
        if not 0 < self.delta < 1:
            raise ConfigError(f"client-level δ must lie in (0, 1), got {self.delta!r}")


def _mean_metrics(results: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    """The example-weighted mean of each numeric metric the clients report."""
    total = sum(n for n, _ in results) or 1
    keys = {k for _, m in results for k, v in m.items() if isinstance(v, int | float)}
    return {k: sum(n * float(m.get(k, 0.0)) for n, m in results) / total for k in sorted(keys)}


def build_strategy(
    aggregator: str,
    *,
    n_clients: int,
    clients_per_round: int,
    initial_weights: list[np.ndarray],
    evaluate_fn: EvaluateFn,
    fit_config: Callable[[int], dict[str, Any]],
    client_dp: ClientLevelDP | None = None,
    clip_on_clients: bool = False,
    n_malicious: int = 0,
    trim_fraction: float = 0.2,
) -> Strategy:
    """Flower's ``aggregator`` strategy, wrapped in client-level DP when asked.

    Parameters
    ----------
    aggregator
        One of :data:`AGGREGATORS`.
    n_clients, clients_per_round
        The population and how many clients train each round.
    initial_weights
        The global model's starting weights.
    evaluate_fn
        Centralised evaluation after every round (and before the first, round 0).
    fit_config
        The per-round config sent to the clients.
    client_dp
        Client-level DP, or ``None``.
    clip_on_clients
        Clip on the clients (``fixedclipping_mod``; the only option under SecAgg+, where the
        server never sees one update); otherwise the server clips.
    n_malicious
        Krum's assumed number of Byzantine clients.
    trim_fraction
        FedTrimmedAvg's cut at each end.

    Raises
    ------
    ConfigError
        An unknown aggregator, or client-level DP over a non-averaging aggregator.
    """
    fraction = clients_per_round / n_clients
    common: dict[str, Any] = {
        "fraction_fit": fraction,
        "fraction_evaluate": 0.0,
        # A round goes ahead with whichever clients are still connected (a dropped client is
        # gone for good): Flower's client manager would otherwise wait up to a day for the
        # missing ones. Too few for SecAgg+'s threshold, and SecAgg+ fails the round itself
        # (the global model stays as it was; the runner records the round as not aggregated).
        "min_fit_clients": 1,
        "min_evaluate_clients": 0,
        "min_available_clients": 1,
        "evaluate_fn": evaluate_fn,
        "on_fit_config_fn": fit_config,
        "initial_parameters": ndarrays_to_parameters(initial_weights),
        "accept_failures": True,
        "fit_metrics_aggregation_fn": _mean_metrics,
    }
    strategy: Strategy
    if aggregator == "fedavg":
        strategy = FedAvg(**common)
    elif aggregator == "fedmedian":
        strategy = FedMedian(**common)
    elif aggregator == "fedtrimmedavg":
        strategy = FedTrimmedAvg(**common, beta=trim_fraction)
    elif aggregator == "krum":
        strategy = Krum(**common, num_malicious_clients=n_malicious)
    else:
        raise ConfigError(
            f"unknown aggregator {aggregator!r}; choose one of: {', '.join(AGGREGATORS)}"
        )
    if client_dp is None:
        return strategy
    if aggregator != "fedavg":
        raise ConfigError(
            f"client-level DP calibrates its noise to an average; it cannot wrap {aggregator}"
        )
    wrapper = (
        DifferentialPrivacyClientSideFixedClipping
        if clip_on_clients
        else DifferentialPrivacyServerSideFixedClipping
    )
    return wrapper(
        strategy,
        noise_multiplier=client_dp.noise_multiplier,
        clipping_norm=client_dp.clipping_norm,
        num_sampled_clients=clients_per_round,
    )


def make_server_app(
    strategy: Strategy,
    *,
    rounds: int,
    secure_aggregation: SecureAggregation | None = None,
    clients_per_round: int = 0,
    max_weight: float = 1000.0,
    min_nodes: int = 0,
    wait_for_nodes_s: float = 0.0,
) -> ServerApp:
    """A Flower ``ServerApp`` running ``rounds`` rounds of ``strategy``, SecAgg+ when given.

    Parameters
    ----------
    strategy
        The aggregation strategy (from :func:`build_strategy`).
    rounds
        Federated rounds.
    secure_aggregation, clients_per_round, max_weight
        SecAgg+ settings, the round's client count, and the largest sample count a client
        reports (see :meth:`SecureAggregation.workflow`).
    min_nodes, wait_for_nodes_s
        Before round 1, wait up to ``wait_for_nodes_s`` seconds until ``min_nodes`` nodes are
        connected. On Flower's deployment engine SuperNodes connect on their own schedule, and
        the strategy (which goes ahead with whoever is connected, so that a dropped client does
        not stall a round) would otherwise start round 1 with the first node alone.

    Raises
    ------
    MlwardenError
        (when the app runs) Fewer than ``min_nodes`` nodes connected in time.
    """

    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        _wait_for_nodes(grid, min_nodes, wait_for_nodes_s)
        legacy = LegacyContext(
            context=context, config=ServerConfig(num_rounds=rounds), strategy=strategy
        )
        fit_workflow = (
            secure_aggregation.workflow(clients_per_round, max_weight)
            if secure_aggregation is not None
            else None
        )
        DefaultWorkflow(fit_workflow=fit_workflow)(grid, legacy)

    return app


def _wait_for_nodes(grid: Grid, min_nodes: int, timeout_s: float) -> None:
    """Return once ``grid`` has ``min_nodes`` nodes; poll every 0.2 s for ``timeout_s`` s."""
    deadline = time.monotonic() + timeout_s
    while True:
        connected = len(list(grid.get_node_ids()))
        if connected >= min_nodes:
            return
        if time.monotonic() >= deadline:
            raise MlwardenError(
                f"only {connected} of {min_nodes} nodes connected to the SuperLink within "
                f"{timeout_s:g} s; start every SuperNode (one per client) against this SuperLink"
            )
        time.sleep(0.2)
