"""The client side: local training on one partition, wrapped as a Flower ``ClientApp``.

A client receives the global weights, trains ``LocalTraining.epochs`` epochs of SGD on its own
partition and returns the new weights with its sample count. What else happens is composed
around it, never switched by flags inside the training loop:

* sample-level differential privacy swaps the optimiser for Opacus DP-SGD
  (:class:`SampleLevelDP`, through :func:`mlwarden.defenses.training.dp.make_private`);
* secure aggregation and client-side clipping are Flower *mods* on the ``ClientApp``
  (``secaggplus_mod``, ``fixedclipping_mod``), chosen by the runner;
* a malicious client is another client class (:class:`ModelReplacementClient`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from flwr.app import Context
from flwr.client import Client, NumPyClient
from flwr.clientapp import ClientApp
from flwr.common.constant import PARTITION_ID_KEY
from torch import nn

from mlwarden.data.dataset import Dataset
from mlwarden.errors import ConfigError, SecurityWarning

__all__ = [
    "ROUND_KEY",
    "FederatedClient",
    "LocalTraining",
    "ModelReplacementClient",
    "SampleLevelDP",
    "get_weights",
    "make_client_app",
    "set_weights",
    "train_local",
]

ROUND_KEY = "server-round"
"""Fit-config key carrying the round number (seeds each round's shuffles and noise)."""


@dataclass(frozen=True)
class LocalTraining:
    """Each client's local optimisation per round: SGD with momentum on its partition."""

    epochs: int = 5  # 5 local epochs of 10 rounds: within 1 point of pooled training on digits
    batch_size: int = 32
    lr: float = 0.05
    momentum: float = 0.9

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"local {name} must be a positive whole number, got {value!r}")
        if not (self.lr > 0 and 0 <= self.momentum < 1):
            raise ConfigError(
                f"local lr must be > 0 and momentum in [0, 1), got lr={self.lr!r}, "
                f"momentum={self.momentum!r}"
            )


@dataclass(frozen=True)
class SampleLevelDP:
    """DP-SGD inside one client (Abadi et al., 2016), noise σ already calibrated by the runner.

    Attributes
    ----------
    noise_multiplier
        σ of this client's Gaussian noise (in units of ``max_grad_norm``).
    max_grad_norm
        C: every per-sample gradient is clipped to this L2 norm.
    delta
        δ the guarantee is stated at.
    """

    noise_multiplier: float
    max_grad_norm: float
    delta: float


def get_weights(module: nn.Module) -> list[np.ndarray]:
    """The module's state (parameters and buffers) as NumPy arrays, in ``state_dict`` order."""
    return [v.detach().cpu().numpy().copy() for v in module.state_dict().values()]


def set_weights(module: nn.Module, weights: Sequence[np.ndarray]) -> None:
    """Load arrays in ``state_dict`` order into ``module`` (shapes must match)."""
    keys = list(module.state_dict().keys())
    if len(keys) != len(weights):
        raise ConfigError(f"expected {len(keys)} weight arrays, got {len(weights)}")
    state = {k: torch.as_tensor(np.asarray(w)).clone() for k, w in zip(keys, weights, strict=True)}
    module.load_state_dict(state, strict=True)


def _seed_for(seed: int, partition_id: int, server_round: int) -> int:
    return int(np.random.SeedSequence([seed, partition_id, server_round]).generate_state(1)[0])


class FederatedClient(NumPyClient):
    """An honest client: load the global weights, train locally, return the new weights.

    Parameters
    ----------
    make_module
        Builds a fresh module of the federation's architecture.
    data
        This client's partition.
    partition_id
        Which partition (seeds the shuffles and the noise with ``seed`` and the round).
    training
        The local optimisation.
    seed
        The run's seed.
    dp
        Sample-level DP, or ``None``.
    uniform_weight
        Report one example instead of the partition size, so the server averages clients
        uniformly (client-level DP calibrates its noise to a uniform average).
    """

    def __init__(
        self,
        make_module: Callable[[], nn.Module],
        data: Dataset,
        *,
        partition_id: int,
        training: LocalTraining,
        seed: int,
        dp: SampleLevelDP | None = None,
        uniform_weight: bool = False,
    ) -> None:
        self.make_module = make_module
        self.data = data
        self.partition_id = partition_id
        self.training = training
        self.seed = seed
        self.dp = dp
        self.uniform_weight = uniform_weight

    def fit(
        self, parameters: list[np.ndarray], config: dict[str, Any]
    ) -> tuple[list[np.ndarray], int, dict[str, Any]]:
        """Train on the partition from ``parameters``; return new weights and sample count."""
        server_round = int(config.get(ROUND_KEY, 0))
        module = self.make_module()
        set_weights(module, parameters)
        seed = _seed_for(self.seed, self.partition_id, server_round)
        if self.dp is None:
            loss = train_local(module, self.data, self.training, seed=seed)
        else:
            loss = _train_local_dp(module, self.data, self.training, self.dp, seed=seed)
        weight = 1 if self.uniform_weight else len(self.data)
        return get_weights(module), weight, {"train_loss": float(loss)}


class ModelReplacementClient(FederatedClient):
    """A malicious client planting a backdoor by model replacement (Bagdasaryan et al., 2020).

    Bagdasaryan, Veit, Hua, Estrin and Shmatikov, "How To Backdoor Federated Learning",
    AISTATS 2020: the attacker trains on its data with triggered samples relabelled to the
    target class (here BadNets, :class:`~mlwarden.attacks.poisoning.BadNets`), then scales its
    update ``X - G`` by ``boost`` before sending ``G + boost (X - G)``. FedAvg divides the
    update by (roughly) the number of clients, so ``boost ≈ n_clients`` makes the average land
    on the attacker's model: the backdoor survives one round of averaging.

    Parameters
    ----------
    poisoned
        The attacker's training data with the trigger planted (poisoned copy of its partition).
    boost
        The scale γ of the update.
    """

    def __init__(
        self,
        make_module: Callable[[], nn.Module],
        data: Dataset,
        *,
        partition_id: int,
        training: LocalTraining,
        seed: int,
        boost: float,
    ) -> None:
        super().__init__(make_module, data, partition_id=partition_id, training=training, seed=seed)
        if not boost > 0:
            raise ConfigError(f"model-replacement boost must be > 0, got {boost!r}")
        self.boost = boost

    def fit(
        self, parameters: list[np.ndarray], config: dict[str, Any]
    ) -> tuple[list[np.ndarray], int, dict[str, Any]]:
        """Train on the poisoned data, then send the boosted update."""
        trained, n, metrics = super().fit(parameters, config)
        boosted = [
            (g + self.boost * (x - g)).astype(x.dtype, copy=False)
            if np.issubdtype(x.dtype, np.floating)
            else x
            for g, x in zip(parameters, trained, strict=True)
        ]
        return boosted, n, metrics


def train_local(module: nn.Module, data: Dataset, training: LocalTraining, *, seed: int) -> float:
    """``training.epochs`` epochs of seeded mini-batch SGD on ``data``; the last epoch's mean loss."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(np.ascontiguousarray(data.x))
    y = torch.from_numpy(np.ascontiguousarray(data.y))
    optimizer = torch.optim.SGD(module.parameters(), lr=training.lr, momentum=training.momentum)
    module.train()
    mean_loss = 0.0
    for _ in range(training.epochs):
        order = torch.randperm(len(x), generator=generator)
        total, count = 0.0, 0
        for start in range(0, len(x), training.batch_size):
            idx = order[start : start + training.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(module(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        mean_loss = total / max(count, 1)
    module.eval()
    return mean_loss


def _train_local_dp(
    module: nn.Module, data: Dataset, training: LocalTraining, dp: SampleLevelDP, *, seed: int
) -> float:
    from torch.utils.data import DataLoader, TensorDataset

    from mlwarden.defenses.training.dp import make_private

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(
        TensorDataset(torch.from_numpy(data.x), torch.from_numpy(data.y)),
        batch_size=training.batch_size,
        generator=generator,
    )
    optimizer = torch.optim.SGD(module.parameters(), lr=training.lr, momentum=training.momentum)
    with warnings.catch_warnings():
        # The runner warns once per run (SecurityWarning) that the noise is seeded.
        warnings.simplefilter("ignore", SecurityWarning)
        private = make_private(
            module,
            optimizer,
            loader,
            max_grad_norm=dp.max_grad_norm,
            target_delta=dp.delta,
            noise_multiplier=dp.noise_multiplier,
            grad_sample_mode="hooks",
            noise_generator=torch.Generator().manual_seed(seed + 1),
        )
    private.module.train()
    mean_loss = 0.0
    with warnings.catch_warnings():
        # Opacus's hooks on the first layer, whose input needs no gradient (harmless).
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        for _ in range(training.epochs):
            total, count = 0.0, 0
            for xb, yb in private.data_loader:  # an empty Poisson batch still adds noise
                private.optimizer.zero_grad(set_to_none=True)
                loss = private.criterion(private.module(xb), yb)
                loss.backward()
                private.optimizer.step()
                if len(yb):
                    total += float(loss.detach()) * len(yb)
                    count += len(yb)
            mean_loss = total / max(count, 1)
    private.to_standard_module()
    return mean_loss


def make_client_app(
    client_for: Callable[[int], NumPyClient], *, mods: Sequence[Callable[..., Any]] = ()
) -> ClientApp:
    """A Flower ``ClientApp`` whose node with ``partition-id = i`` runs ``client_for(i)``.

    ``mods`` are Flower client mods (``secaggplus_mod``, ``fixedclipping_mod``), outermost first.
    """

    def client_fn(context: Context) -> Client:
        partition = int(context.node_config[PARTITION_ID_KEY])
        return client_for(partition).to_client()

    return ClientApp(client_fn=client_fn, mods=list(mods))
