"""DP-SGD for the character language model: the budget is spent as calibrated, runs are seeded,
the privacy unit is what the trainer receives and what the record states."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import torch

from mlwarden.attacks.privacy.memorization import CanarySpace, plant_canaries
from mlwarden.defenses.training import dp_lm
from mlwarden.defenses.training.dp_accounting import epsilon_spent
from mlwarden.defenses.training.dp_lm import DPLanguageModelResult, train_language_model_dp
from mlwarden.defenses.training.dp_record import PrivacyRecord
from mlwarden.errors import ConfigError, DataError, SecurityWarning
from mlwarden.models.text_lm import CharVocabulary

pytestmark = pytest.mark.filterwarnings("ignore::mlwarden.errors.SecurityWarning")

LINES = [f"line {i} of {i % 5} says {'abc'[i % 3]}" for i in range(120)]  # all distinct


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


def _train_capturing(
    monkeypatch: pytest.MonkeyPatch, lines: Sequence[str], **kwargs: Any
) -> tuple[DPLanguageModelResult, list[str]]:
    """Train, recording the lines the trainer tokenises into its DP data loader."""
    received: list[str] = []
    encode = dp_lm.encode_batch

    def spy(vocab: CharVocabulary, batch: Sequence[str]) -> torch.Tensor:
        received.extend(batch)
        return encode(vocab, batch)

    monkeypatch.setattr(dp_lm, "encode_batch", spy)
    result = train_language_model_dp(
        lines, epsilon=8.0, delta=1e-3, hidden_size=8, epochs=1, batch_size=16, **kwargs
    )
    return result, received


@pytest.fixture(scope="module")
def planted() -> tuple[list[str], str]:
    space = CanarySpace(length=3)
    lines, canaries = plant_canaries(LINES, space, (64,), seed=0)
    return lines, space.render(canaries[0].secret)


def test_distinct_line_unit_is_the_default_and_trains_a_64_times_canary_once(
    monkeypatch: pytest.MonkeyPatch, planted: tuple[list[str], str]
) -> None:
    lines, canary = planted
    assert lines.count(canary) == 64 and len(lines) == 184
    result, received = _train_capturing(monkeypatch, lines)  # no privacy_unit: the default
    assert received.count(canary) == 1
    assert sorted(received) == sorted(set(lines))  # every distinct line, once
    record = result.record
    assert record.privacy_unit == dp_lm.DEFAULT_PRIVACY_UNIT == "distinct-line"
    assert record.n_samples == 121  # what the DP loader saw: 120 lines and the canary once
    assert record.sample_rate == 1 / 8  # Opacus: q = 1 / ceil(121 / 16)
    assert record.duplicates_removed == 63
    assert "63 exact duplicate line(s) were merged" in record.notes[0]
    assert any("near-duplicates" in note for note in record.notes)
    saved = result.model.metadata
    assert saved["privacy"]["privacy_unit"] == "distinct-line"
    assert saved["privacy"]["duplicates_removed"] == 63
    assert saved["training"]["n_lines"] == 121 and saved["training"]["n_input_lines"] == 184


def test_line_unit_trains_every_copy_warns_and_says_group_privacy(
    monkeypatch: pytest.MonkeyPatch, planted: tuple[list[str], str]
) -> None:
    lines, canary = planted
    with pytest.warns(SecurityWarning, match="group level"):
        result, received = _train_capturing(monkeypatch, lines, privacy_unit="line")
    assert received.count(canary) == 64 and len(received) == 184
    record = result.record
    assert record.privacy_unit == "line" and record.duplicates_removed == 0
    assert record.n_samples == 184 and record.sample_rate == 1 / 12
    assert "the most repeated 64 times" in record.notes[0]
    assert "64·ε=512" in record.notes[0]


def test_a_bad_privacy_unit_is_named() -> None:
    with pytest.raises(ConfigError, match="privacy_unit must be one of distinct-line, line"):
        train_language_model_dp(LINES, epsilon=4.0, delta=1e-3, privacy_unit="word")  # type: ignore[arg-type]


def test_the_privacy_unit_round_trips_through_the_record(seed0: DPLanguageModelResult) -> None:
    written = seed0.record.to_dict()
    assert written["privacy_unit"] == "distinct-line" and written["duplicates_removed"] == 0
    assert PrivacyRecord.from_dict(written) == seed0.record
    older = {k: v for k, v in written.items() if k not in ("privacy_unit", "notes")}
    assert PrivacyRecord.from_dict(older).privacy_unit == "sample"  # the field's default
