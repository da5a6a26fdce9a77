"""Utility and privacy: FL against pooled training, DP-SGD clients at ε = 5, client-level DP."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from mlwarden.data.builtin import DatasetSplits, load_builtin
from mlwarden.errors import SecurityWarning
from mlwarden.federated import (
    ClientLevelDP,
    FederatedClient,
    LocalTraining,
    SampleLevelTarget,
    get_weights,
    partition_dataset,
    run_federated,
    train_local,
)
from mlwarden.federated.client import ROUND_KEY
from mlwarden.federated.runner import FederatedResult
from mlwarden.models.zoo import digits_cnn, digits_dp_cnn

DEFAULT = LocalTraining()  # 5 local epochs of SGD (lr 0.05, momentum 0.9, batch 32)
ROUNDS = 10


@pytest.fixture(scope="module")
def digits() -> DatasetSplits:
    return load_builtin("digits")


def _accuracy(module: torch.nn.Module, digits: DatasetSplits) -> float:
    with torch.no_grad():
        pred = module(torch.from_numpy(digits.test.x)).argmax(1).numpy()
    return float((pred == digits.test.y).mean())


@pytest.fixture(scope="module")
def centralised(digits: DatasetSplits) -> float:
    """The same model and optimiser on the pooled data, as many epochs as FL's rounds × local."""
    torch.manual_seed(0)
    module = digits_cnn()
    pooled = LocalTraining(epochs=ROUNDS * DEFAULT.epochs)
    train_local(module, digits.train, pooled, seed=0)
    return _accuracy(module, digits)


@pytest.fixture(scope="module")
def iid_run(digits: DatasetSplits) -> FederatedResult:
    return run_federated(digits_cnn, digits.train, digits.test, clients=5, rounds=ROUNDS)


@pytest.mark.slow
def test_iid_fedavg_is_within_2_points_of_centralised_training(
    centralised: float, iid_run: FederatedResult
) -> None:
    assert centralised > 0.95
    assert iid_run.test_accuracy >= centralised - 0.02


@pytest.mark.slow
def test_dirichlet_half_fedavg_is_within_5_points_of_centralised_training(
    digits: DatasetSplits, centralised: float
) -> None:
    result = run_federated(
        digits_cnn, digits.train, digits.test, clients=5, rounds=ROUNDS, partition="dirichlet:0.5"
    )
    assert result.test_accuracy >= centralised - 0.05


@pytest.mark.slow
def test_sample_level_dp_at_epsilon_5_is_within_10_points_of_plain_fl(
    digits: DatasetSplits, iid_run: FederatedResult
) -> None:
    with pytest.warns(SecurityWarning, match="not cryptographically secure"):
        result = run_federated(
            digits_dp_cnn,
            digits.train,
            digits.test,
            clients=5,
            rounds=ROUNDS,
            local=LocalTraining(epochs=2, batch_size=64, lr=0.5),
            privacy=SampleLevelTarget(epsilon=5.0, delta=1e-5),
        )
    privacy = result.record["privacy"]
    assert privacy["level"] == "sample"
    assert all(c["epsilon_spent"] <= 5.0 + 1e-6 for c in privacy["clients"])
    assert all(c["noise_multiplier"] > 1.0 for c in privacy["clients"])
    assert result.test_accuracy >= iid_run.test_accuracy - 0.10


def test_client_level_dp_noise_has_the_documented_standard_deviation(
    digits: DatasetSplits,
) -> None:
    sigma, clip, clients = 0.001, 100.0, 4  # no update is clipped at C = 100
    local = LocalTraining(epochs=1)
    with pytest.warns(SecurityWarning):
        result = run_federated(
            digits_cnn,
            digits.train,
            digits.test,
            clients=clients,
            rounds=1,
            local=local,
            privacy=ClientLevelDP(noise_multiplier=sigma, clipping_norm=clip),
        )
    initial = [
        a - u for a, u in zip(get_weights(result.module), result.round_updates[0], strict=True)
    ]
    parts = partition_dataset(digits.train, "iid", clients, seed=0)
    models = [
        FederatedClient(digits_cnn, p, partition_id=i, training=local, seed=0).fit(
            [w.copy() for w in initial], {ROUND_KEY: 1}
        )[0]
        for i, p in enumerate(parts)
    ]
    uniform_mean = [np.mean([m[k] for m in models], axis=0) for k in range(len(initial))]
    noise = np.concatenate(
        [(g - u).ravel() for g, u in zip(get_weights(result.module), uniform_mean, strict=True)]
    )
    expected = sigma * clip / clients
    assert noise.std() == pytest.approx(expected, rel=0.03)
    assert abs(noise.mean()) < 4 * expected / np.sqrt(noise.size)


def test_client_level_epsilon_agrees_with_opacus_rdp_accountant(digits: DatasetSplits) -> None:
    from opacus.accountants import RDPAccountant

    from mlwarden.federated.runner import client_dp_record

    dp = ClientLevelDP(noise_multiplier=1.5, delta=1e-3)
    record = client_dp_record(dp, clients=5, per_round=5, rounds=10, clip_on_clients=False)
    opacus = RDPAccountant()
    opacus.history = [(1.5, 1.0, 10)]  # every client in every round: sampling rate 1
    expected = opacus.get_epsilon(delta=1e-3)
    assert record["epsilon_spent"] == pytest.approx(expected, rel=0.05)
    assert record["releases"] == 10


def test_sample_dp_runs_warn_that_seeded_noise_is_not_secure(digits: DatasetSplits) -> None:
    small = digits.train.subset(np.arange(60))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_federated(
            digits_cnn,
            small,
            digits.test,
            clients=3,
            rounds=1,
            local=LocalTraining(epochs=1, batch_size=8),
            privacy=SampleLevelTarget(epsilon=5.0, delta=1e-3),
        )
    assert any(issubclass(w.category, SecurityWarning) for w in caught)


def test_client_level_dp_under_secagg_clips_on_the_clients(digits: DatasetSplits) -> None:
    # SecAgg+ hides single updates from the server, so clipping moves to the clients
    # (fixedclipping_mod) and the server only adds the noise to the sum.
    from mlwarden.federated import SecureAggregation

    small = digits.train.subset(np.arange(90))
    kwargs: dict = dict(
        clients=3,
        rounds=1,
        local=LocalTraining(epochs=1, batch_size=8),
        secure_aggregation=SecureAggregation(),
    )
    plain = run_federated(digits_cnn, small, digits.test, **kwargs)
    with pytest.warns(SecurityWarning):
        result = run_federated(
            digits_cnn,
            small,
            digits.test,
            privacy=ClientLevelDP(noise_multiplier=1e-6, clipping_norm=0.01),
            **kwargs,
        )
    privacy = result.record["privacy"]
    assert "ClientSideFixedClipping" in privacy["mechanism"]

    def norm(r: FederatedResult) -> float:
        return float(np.linalg.norm(np.concatenate([u.ravel() for u in r.round_updates[0]])))

    # unclipped, the average update is over four times C = 0.01; clipped on every client before
    # the secure sum, the average is at most C (plus SecAgg+'s quantisation, ~1e-3)
    assert norm(plain) > 0.04
    assert norm(result) <= 0.01 + 2e-3
