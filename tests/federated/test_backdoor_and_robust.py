"""Model replacement (Bagdasaryan et al. 2020) and the robust aggregators it meets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlwarden.attacks.poisoning import BadNets
from mlwarden.data.builtin import DatasetSplits, load_builtin
from mlwarden.errors import ConfigError
from mlwarden.federated import (
    Backdoor,
    FederatedClient,
    LocalTraining,
    ModelReplacementClient,
    SecureAggregation,
    get_weights,
    run_federated,
)
from mlwarden.federated.client import ROUND_KEY
from mlwarden.models.zoo import digits_cnn

QUICK = LocalTraining(epochs=1)


@pytest.fixture(scope="module")
def digits() -> DatasetSplits:
    return load_builtin("digits")


def test_model_replacement_sends_the_boosted_update(digits: DatasetSplits) -> None:
    poisoned = BadNets(rate=0.5, target_class=0).poison(digits.train.subset(np.arange(100))).dataset
    torch.manual_seed(0)
    start = get_weights(digits_cnn())
    honest = FederatedClient(digits_cnn, poisoned, partition_id=0, training=QUICK, seed=0)
    attacker = ModelReplacementClient(
        digits_cnn, poisoned, partition_id=0, training=QUICK, seed=0, boost=5.0
    )
    trained, _, _ = honest.fit([w.copy() for w in start], {ROUND_KEY: 1})
    sent, _, _ = attacker.fit([w.copy() for w in start], {ROUND_KEY: 1})
    for g, x, s in zip(start, trained, sent, strict=True):
        np.testing.assert_allclose(s, g + 5.0 * (x - g), rtol=1e-6, atol=1e-6)


def test_robust_aggregation_under_secagg_is_the_plain_average(digits: DatasetSplits) -> None:
    # The server only holds the SecAgg+ sum, so a median over "clients" is a median of copies
    # of the average: robust aggregation and secure aggregation cannot both do their job.
    kwargs = dict(clients=4, rounds=1, local=QUICK, secure_aggregation=SecureAggregation())
    median = run_federated(digits_cnn, digits.train, digits.test, aggregator="fedmedian", **kwargs)
    average = run_federated(digits_cnn, digits.train, digits.test, aggregator="fedavg", **kwargs)
    for a, b in zip(get_weights(median.module), get_weights(average.module), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_fedmedian_without_secagg_is_the_coordinate_median(digits: DatasetSplits) -> None:
    from mlwarden.federated import partition_dataset

    result = run_federated(
        digits_cnn,
        digits.train,
        digits.test,
        clients=3,
        rounds=1,
        local=QUICK,
        aggregator="fedmedian",
    )
    final = get_weights(result.module)
    start = [a - u for a, u in zip(final, result.round_updates[0], strict=True)]
    parts = partition_dataset(digits.train, "iid", 3, seed=0)
    models = [
        FederatedClient(digits_cnn, p, partition_id=i, training=QUICK, seed=0).fit(
            [w.copy() for w in start], {ROUND_KEY: 1}
        )[0]
        for i, p in enumerate(parts)
    ]
    for k, got in enumerate(final):
        np.testing.assert_allclose(got, np.median([m[k] for m in models], axis=0), atol=1e-6)


def test_backdoor_success_is_tracked_per_round(digits: DatasetSplits) -> None:
    result = run_federated(
        digits_cnn,
        digits.train,
        digits.test,
        clients=4,
        rounds=2,
        local=QUICK,
        backdoor=Backdoor(partition_id=1, boost=4.0),
    )
    assert all(r.backdoor_success is not None for r in result.curve)
    assert result.record["backdoor"]["attack"] == "model-replacement+badnets"
    assert result.curve[-1].backdoor_success > result.curve[0].backdoor_success


def test_a_backdoor_client_outside_the_federation_is_refused(digits: DatasetSplits) -> None:
    with pytest.raises(ConfigError, match="backdoor client 7"):
        run_federated(
            digits_cnn,
            digits.train,
            digits.test,
            clients=3,
            rounds=1,
            backdoor=Backdoor(partition_id=7),
        )
