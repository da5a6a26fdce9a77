"""A federated run described by values, so that it can travel as Flower's run config.

The in-process engine is handed Python objects (a module factory, datasets). On Flower's
deployment engine the ``ServerApp`` and every ``ClientApp`` run in processes of their own,
started by a SuperLink and SuperNodes, and all they receive is the run config (flat TOML
scalars). :class:`FederatedJob` is that run config, parsed strictly (pydantic, unknown keys and
wrong types refused): each process rebuilds the architecture (``model``), loads the data
(``data``; a SuperNode keeps its own partition of it) and the same settings the in-process
engine takes, through the same builders.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mlwarden.errors import ConfigError
from mlwarden.federated.client import LocalTraining
from mlwarden.federated.partition import parse_partition
from mlwarden.federated.runner import Privacy, SampleLevelTarget, parse_privacy
from mlwarden.federated.server import AGGREGATORS, ClientLevelDP, SecureAggregation

if TYPE_CHECKING:
    from torch import nn

    from mlwarden.data.dataset import Dataset

__all__ = ["FederatedJob"]


def _kebab(name: str) -> str:
    return name.replace("_", "-")


class FederatedJob(BaseModel):
    """One federated training run, as ``mlwarden fl train`` options and as Flower run config.

    Field names are the run config's keys with ``-`` for ``_`` (``local-epochs``); the Flower
    app's ``pyproject.toml`` declares every one with its default.

    Attributes
    ----------
    model
        ``zoo:NAME`` architecture trained from scratch (drawn under ``seed``).
    data
        Pooled data split among the clients (``builtin:NAME``, .npz, .csv); every SuperNode
        loads it and keeps partition ``partition-id`` of its node config.
    val_data
        Held-out data for the server's curve (empty: the data's test split or a held-out 10%).
    clients, rounds, clients_per_round
        Population, rounds, clients sampled per round (``0``: all).
    partition
        ``iid``, ``dirichlet:ALPHA`` or ``by-class:K``.
    local_epochs, batch_size, lr, momentum
        Each client's local SGD per round.
    aggregator
        ``fedavg``, ``fedmedian``, ``fedtrimmedavg`` or ``krum``.
    secagg
        SecAgg+ with mlwarden's default settings (:class:`SecureAggregation`).
    dp, delta, clipping_norm
        ``none``, ``sample:EPS`` or ``client:NOISE`` (:func:`parse_privacy`); δ (``0``: the
        level's default); the clipping norm C.
    max_weight
        SecAgg+'s bound on a client's reported weight (``0``: the largest partition's size).
    seed
        Seed of partitions, initial weights, shuffles, sampling and noise.
    result_dir
        Where the ``ServerApp`` writes each round's record and the global weights (a folder on
        the SuperLink's machine).
    wait_for_nodes_s
        How long the ``ServerApp`` waits for all ``clients`` SuperNodes before round 1.
    """

    model_config = ConfigDict(
        extra="forbid", strict=True, frozen=True, alias_generator=_kebab, populate_by_name=True
    )

    model: str = "zoo:digits-cnn"
    data: str = "builtin:digits"
    val_data: str = ""
    label_column: str = "label"
    clients: int = Field(5, ge=1)
    rounds: int = Field(10, ge=1)
    clients_per_round: int = Field(0, ge=0)
    partition: str = "iid"
    local_epochs: int = Field(5, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(0.05, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    aggregator: str = "fedavg"
    secagg: bool = False
    dp: str = "none"
    delta: float = Field(0.0, ge=0, lt=1)
    clipping_norm: float = Field(1.0, gt=0)
    max_weight: float = Field(0.0, ge=0)
    seed: int = Field(0, ge=0)
    result_dir: str = ""
    wait_for_nodes_s: float = Field(120.0, gt=0)

    @model_validator(mode="after")
    def _check_settings(self) -> FederatedJob:
        """Refuse what the engines would refuse, before any process starts."""
        parse_partition(self.partition)
        privacy = self.privacy()
        if self.aggregator not in AGGREGATORS:
            raise ConfigError(
                f"unknown aggregator {self.aggregator!r}; choose one of: {', '.join(AGGREGATORS)}"
            )
        if isinstance(privacy, ClientLevelDP) and self.aggregator != "fedavg":
            raise ConfigError(
                "client-level DP calibrates its noise to an average; it cannot wrap "
                f"{self.aggregator}"
            )
        return self

    @classmethod
    def from_run_config(cls, run_config: dict[str, Any]) -> FederatedJob:
        """Parse Flower's ``context.run_config`` (or a dict of field names, as the CLI has them).

        Raises
        ------
        ConfigError
            An unknown key, a value of the wrong type, or one out of range.
        """
        try:
            return cls.model_validate(dict(run_config))
        except ValidationError as err:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: "
                f"{e['msg'].removeprefix('Value error, ')}"
                for e in err.errors()
            )
            raise ConfigError(f"bad mlwarden run config: {problems}") from None

    def run_config(self) -> dict[str, str | int | float | bool]:
        """The run config (kebab-case keys) that :meth:`from_run_config` reads back."""
        return self.model_dump(by_alias=True)

    @property
    def per_round(self) -> int:
        """Clients sampled per round."""
        return self.clients_per_round or self.clients

    def architecture(self) -> str:
        """The architecture's name (``zoo:digits-cnn`` gives ``digits-cnn``)."""
        from mlwarden.defenses.training.dp_harden import dp_architecture

        return dp_architecture(self.model, seed=self.seed)[0]

    def make_module(self) -> nn.Module:
        """A fresh module of the architecture (the same initial weights for the same seed)."""
        from mlwarden.defenses.training.dp_harden import dp_architecture

        return dp_architecture(self.model, seed=self.seed)[1]

    def load_data(self) -> tuple[Dataset, Dataset]:
        """The pooled training data and the held-out data, as ``mlwarden harden`` loads them."""
        from mlwarden.defenses.training.harden import load_training_data

        return load_training_data(
            self.data,
            val_spec=self.val_data or None,
            label_column=self.label_column,
            seed=self.seed,
        )

    def local_training(self) -> LocalTraining:
        """Each client's local optimisation."""
        return LocalTraining(
            epochs=self.local_epochs, batch_size=self.batch_size, lr=self.lr, momentum=self.momentum
        )

    def privacy(self) -> Privacy | None:
        """The DP setting, its clipping norm set to ``clipping_norm``."""
        privacy = parse_privacy(self.dp, delta=self.delta or None)
        if isinstance(privacy, SampleLevelTarget):
            return replace(privacy, max_grad_norm=self.clipping_norm)
        if isinstance(privacy, ClientLevelDP):
            return replace(privacy, clipping_norm=self.clipping_norm)
        return None

    def secure_aggregation(self) -> SecureAggregation | None:
        """SecAgg+ settings, or ``None``."""
        return SecureAggregation() if self.secagg else None
