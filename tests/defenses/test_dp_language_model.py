"""DP-SGD for the character language model: the budget is spent as calibrated, runs are seeded."""

from __future__ import annotations

import pytest

from mlwarden.defenses.training.dp_accounting import epsilon_spent
from mlwarden.defenses.training.dp_lm import DPLanguageModelResult, train_language_model_dp
from mlwarden.errors import ConfigError, DataError

pytestmark = pytest.mark.filterwarnings("ignore::mlwarden.errors.SecurityWarning")

LINES = [f"line {i % 7} of {i % 5} says {'abc'[i % 3]}" for i in range(120)]


def _train(seed: int = 0) -> DPLanguageModelResult:
    return train_language_model_dp(
        LINES, epsilon=4.0, delta=1e-3, hidden_size=16, epochs=2, batch_size=12, seed=seed
    )


@pytest.fixture(scope="module")
def seed0() -> DPLanguageModelResult:
    return _train(0)


def test_the_record_states_the_budget_the_accountant_spent(seed0: DPLanguageModelResult) -> None:
    result = seed0
    record = result.record
    assert record.epsilon == 4.0
    assert record.steps == 2 * 10  # q = 12/120: ten Poisson batches an epoch
    assert record.noise_multiplier > 0
    # the accountant, asked independently, spends at most the target, and nearly all of it
    spent = epsilon_spent(
        noise_multiplier=record.noise_multiplier,
        sample_rate=record.sample_rate,
        steps=record.steps,
        delta=record.delta,
        accountant="rdp",
    )
    assert spent == pytest.approx(record.epsilon_spent)
    assert 3.5 <= spent <= 4.0
    assert result.model.metadata["privacy"]["epsilon"] == 4.0
    assert len(result.losses) == 2


def test_same_seed_same_model(seed0: DPLanguageModelResult) -> None:
    a, b, c = seed0, _train(0), _train(1)
    probe = LINES[:10]
    assert a.model.mean_loss(probe) == b.model.mean_loss(probe)
    assert a.model.mean_loss(probe) != c.model.mean_loss(probe)


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ConfigError, match="delta"):
        train_language_model_dp(LINES, epsilon=4.0, delta=0.1)
    with pytest.raises(DataError, match="at least one"):
        train_language_model_dp([], epsilon=4.0, delta=1e-5)
    with pytest.raises(ConfigError, match="batch_size"):
        train_language_model_dp(LINES, epsilon=4.0, delta=1e-3, batch_size=500)
