"""In-process federated runs: FedAvg, SecAgg+ (with a dropout), determinism, the record."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlwarden.data.builtin import DatasetSplits, load_builtin
from mlwarden.errors import ConfigError
from mlwarden.federated import (
    Dropout,
    FederatedClient,
    LocalTraining,
    SecureAggregation,
    get_weights,
    partition_dataset,
    run_federated,
)
from mlwarden.federated.client import ROUND_KEY
from mlwarden.models.zoo import digits_cnn

QUICK = LocalTraining(epochs=1)


@pytest.fixture(scope="module")
def digits() -> DatasetSplits:
    return load_builtin("digits")


def _weights(module: torch.nn.Module) -> list[np.ndarray]:
    return get_weights(module)


def test_same_seed_gives_the_same_global_model_and_another_seed_another(
    digits: DatasetSplits,
) -> None:
    def run(seed: int) -> list[np.ndarray]:
        result = run_federated(
            digits_cnn,
            digits.train,
            digits.test,
            clients=4,
            rounds=2,
            local=QUICK,
            partition="dirichlet:0.5",
            seed=seed,
        )
        return _weights(result.module)

    first, again, other = run(3), run(3), run(4)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def _expected_fedavg(
    digits: DatasetSplits, initial: list[np.ndarray], survivors: list[int], n_clients: int
) -> list[np.ndarray]:
    """FedAvg of the survivors' round-1 updates, computed by calling each client directly."""
    parts = partition_dataset(digits.train, "iid", n_clients, seed=0)
    outputs, counts = [], []
    for i in survivors:
        client = FederatedClient(digits_cnn, parts[i], partition_id=i, training=QUICK, seed=0)
        weights, n, _ = client.fit([w.copy() for w in initial], {ROUND_KEY: 1})
        outputs.append(weights)
        counts.append(n)
    total = sum(counts)
    return [
        sum(c * w[k] for c, w in zip(counts, outputs, strict=True)) / total
        for k in range(len(initial))
    ]


def test_plain_fedavg_round_is_the_weighted_mean_of_the_client_models(
    digits: DatasetSplits,
) -> None:
    result = run_federated(digits_cnn, digits.train, digits.test, clients=4, rounds=1, local=QUICK)
    initial = [a - u for a, u in zip(_weights(result.module), result.round_updates[0], strict=True)]
    expected = _expected_fedavg(digits, initial, [0, 1, 2, 3], 4)
    for got, want in zip(_weights(result.module), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_secagg_plus_aggregate_equals_the_plain_average_up_to_quantisation(
    digits: DatasetSplits,
) -> None:
    kwargs = dict(clients=4, rounds=2, local=QUICK, seed=1)
    plain = run_federated(digits_cnn, digits.train, digits.test, **kwargs)
    secure = run_federated(
        digits_cnn, digits.train, digits.test, secure_aggregation=SecureAggregation(), **kwargs
    )
    assert secure.record["secure_aggregation"]["enabled"] is True
    assert plain.record["secure_aggregation"] == {"enabled": False}
    # quantisation step: 2 * clipping_range / quantization_range = 16 / 2**22 ≈ 4e-6 per client
    for a, b in zip(_weights(plain.module), _weights(secure.module), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)
    assert not all(
        np.array_equal(a, b)
        for a, b in zip(_weights(plain.module), _weights(secure.module), strict=True)
    )  # SecAgg+ really ran: its quantisation leaves a trace


def test_secagg_plus_round_survives_a_client_dropping_after_sharing_keys(
    digits: DatasetSplits,
) -> None:
    # SecAgg+ sends 4 messages per round; node 2 answers setup and share-keys, then vanishes
    # before sending its masked update: the survivors must reveal its mask shares.
    result = run_federated(
        digits_cnn,
        digits.train,
        digits.test,
        clients=5,
        rounds=1,
        local=QUICK,
        secure_aggregation=SecureAggregation(num_shares=5, reconstruction_threshold=3),
        dropouts=[Dropout(partition_id=2, after_messages=2)],
    )
    assert [r.round for r in result.curve] == [0, 1]
    initial = [a - u for a, u in zip(_weights(result.module), result.round_updates[0], strict=True)]
    expected = _expected_fedavg(digits, initial, [0, 1, 3, 4], 5)
    for got, want in zip(_weights(result.module), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


def test_a_round_with_too_few_survivors_for_secagg_is_recorded_not_aggregated(
    digits: DatasetSplits,
) -> None:
    # three of five drop after sharing keys: two survivors cannot meet the threshold of 3, so
    # SecAgg+ fails the round and the run goes on (Flower would wait a day for the missing ones)
    result = run_federated(
        digits_cnn,
        digits.train.subset(np.arange(100)),
        digits.test,
        clients=5,
        rounds=2,
        local=QUICK,
        secure_aggregation=SecureAggregation(),
        dropouts=[Dropout(partition_id=i, after_messages=2) for i in range(3)],
    )
    assert [r.aggregated for r in result.curve] == [True, False, False]
    assert all(not np.any(u) for update in result.round_updates for u in update)


def test_the_record_names_partitions_rounds_and_secure_aggregation(
    digits: DatasetSplits,
) -> None:
    result = run_federated(
        digits_cnn,
        digits.train,
        digits.test,
        clients=3,
        rounds=1,
        local=QUICK,
        partition="by-class:4",
        architecture="digits-cnn",
    )
    record = result.record
    parts = partition_dataset(digits.train, "by-class:4", 3, seed=0)
    assert [p["sha256"] for p in record["partitions"]] == [p.digest() for p in parts]
    assert record["rounds"] == 1 and record["clients_per_round"] == 3
    assert record["partition"] == "by-class:4"
    assert record["privacy"] is None
    assert [row["round"] for row in record["curve"]] == [0, 1]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"clients": 0}, "--clients must be a positive whole number"),
        ({"rounds": 0}, "--rounds must be a positive whole number"),
        ({"clients_per_round": 9}, "--clients-per-round must lie in"),
        ({"aggregator": "mean"}, "unknown aggregator"),
        ({"clients": 2, "secure_aggregation": SecureAggregation()}, "SecAgg\\+ needs at least 3"),
    ],
)
def test_bad_settings_are_refused_with_the_reason(
    digits: DatasetSplits, kwargs: dict, fragment: str
) -> None:
    with pytest.raises(ConfigError, match=fragment):
        run_federated(digits_cnn, digits.train, digits.test, **{"rounds": 1, **kwargs})
