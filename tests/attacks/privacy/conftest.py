"""Fixtures for the privacy attacks: a small overfit MLP on digits and a DP-SGD one.

The overfit model trains on 200 digits (members) drawn from the whole digits set; 200 others
are its non-members. Shadows and audits retrain the same recipe, so it is kept short.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from mlwarden.attacks.privacy import LiRA, MembershipResult
from mlwarden.data import Dataset, load_builtin
from mlwarden.errors import SecurityWarning
from mlwarden.models import TorchClassifier
from mlwarden.models.zoo import fit_torch

DP_EPSILON = 3.0
DP_DELTA = 1e-5
OVERFIT_RECIPE = {"epochs": 60, "batch_size": 50, "lr": 3e-3}

# mlwarden warns that secure_mode is off (seeded runs need it off; tests/defenses checks that
# warning) and Opacus that RDP's best order is its largest; neither is actionable here.
DP_WARNINGS = (
    "ignore::mlwarden.errors.SecurityWarning",
    "ignore:Optimal order is the largest alpha:UserWarning",
    "ignore:Full backward hook is firing:UserWarning",
)


def mlp() -> nn.Module:
    """The target and shadow architecture: 64 -> 256 -> 10."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))


def train_overfit(data: Dataset, seed: int) -> nn.Module:
    """Train :func:`mlp` to (near) zero training loss with Adam."""
    torch.manual_seed(seed)
    return fit_torch(mlp(), data.x, data.y, seed=seed, **OVERFIT_RECIPE)


def train_memoriser(data: Dataset, seed: int) -> nn.Module:
    """A higher learning rate than :func:`train_overfit`: memorises mislabelled canaries."""
    torch.manual_seed(seed)
    return fit_torch(mlp(), data.x, data.y, seed=seed, epochs=40, batch_size=64, lr=1e-2)


def train_private(data: Dataset, seed: int) -> nn.Module:
    """Train :func:`mlp` with DP-SGD at ε=3, δ=1e-5 (``train_dp``)."""
    from mlwarden.defenses.training.dp import train_dp

    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)  # seeded runs: secure_mode off
        warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        result = train_dp(
            mlp(),
            data,
            epsilon=DP_EPSILON,
            delta=DP_DELTA,
            epochs=10,
            max_grad_norm=1.0,
            batch_size=256,
            lr=1.0,
            seed=seed,
        )
    assert result.record.epsilon <= DP_EPSILON + 1e-6
    return result.module


def wrap(module: nn.Module) -> TorchClassifier:
    return TorchClassifier(module, input_shape=(1, 8, 8), n_classes=10)


@dataclass(frozen=True)
class Target:
    classifier: TorchClassifier
    members: Dataset
    non_members: Dataset
    make_model: Callable[[], nn.Module]


@pytest.fixture(scope="session")
def digits_all() -> Dataset:
    splits = load_builtin("digits")
    return Dataset(
        name="digits-all",
        x=np.concatenate([splits.train.x, splits.test.x]),
        y=np.concatenate([splits.train.y, splits.test.y]),
        n_classes=10,
        kind="image",
    )


@pytest.fixture(scope="session")
def overfit_target(digits_all: Dataset) -> Target:
    order = np.random.default_rng(0).permutation(len(digits_all))
    members = digits_all.subset(np.sort(order[:200]), name="members")
    non_members = digits_all.subset(np.sort(order[200:400]), name="non-members")
    classifier = wrap(train_overfit(members, seed=0))
    return Target(classifier, members, non_members, mlp)


@pytest.fixture(scope="session")
def dp_target() -> Target:
    splits = load_builtin("digits")
    return Target(wrap(train_private(splits.train, seed=0)), splits.train, splits.test, mlp)


@pytest.fixture(scope="session")
def overfit_lira(overfit_target: Target) -> MembershipResult:
    """Offline LiRA with 8 shadows against :func:`overfit_target`."""
    t = overfit_target
    attack = LiRA(make_model=t.make_model, n_shadows=8, seed=0, **OVERFIT_RECIPE)
    return attack.run(t.classifier, t.members, t.non_members)


@pytest.fixture(scope="session")
def audit_data() -> Dataset:
    """700 digits: small enough to retrain several times per audit."""
    return load_builtin("digits").train.sample(700, seed=0)
