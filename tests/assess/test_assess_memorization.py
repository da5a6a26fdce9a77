"""The memorisation section of ``assess``: config validation, findings, severity and taxonomy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlwarden.assess import AssessConfig
from mlwarden.assess.memorization import (
    check_memorization,
    memorization_finding,
    run_memorization,
)
from mlwarden.attacks.privacy.memorization import (
    CanaryExposure,
    CanarySpace,
    MemorizationResult,
    canaries_to_dict,
    plant_canaries,
)
from mlwarden.errors import ConfigError
from mlwarden.models.text_lm import CharVocabulary, fit_language_model
from mlwarden.report.findings import Severity


def test_config_section_validates_and_fills_defaults() -> None:
    config = AssessConfig(memorization={"model": "lm.pt", "canaries": "c.json"})
    assert config.memorization["method"] == "exact"
    assert config.memorization["beam_width"] == 8
    assert check_memorization(None) is None
    with pytest.raises(ConfigError, match="unknown setting"):
        AssessConfig(memorization={"model": "lm.pt", "canaries": "c.json", "beam": 3})
    with pytest.raises(ConfigError, match=r"memorization\.canaries"):
        AssessConfig(memorization={"model": "lm.pt"})
    with pytest.raises(ConfigError, match="method"):
        check_memorization({"model": "a", "canaries": "b", "method": "guess"})


def test_a_regurgitated_canary_is_a_high_finding_mapped_to_llm02(tmp_path: Path) -> None:
    space = CanarySpace(length=3)
    base = [f"a line about item {w}" for w in ("one", "two", "three", "four")] * 5
    lines, canaries = plant_canaries(base, space, (0, 40), seed=0)
    model = fit_language_model(
        lines,
        vocab=CharVocabulary.from_texts([*lines, space.alphabet]),
        hidden_size=32,
        epochs=12,
        batch_size=8,
        seed=0,
    )
    model.save(tmp_path / "lm.pt")
    (tmp_path / "c.json").write_text(json.dumps(canaries_to_dict(space, canaries)))
    settings = check_memorization({"model": "lm.pt", "canaries": "c.json", "beam_width": 2})
    assert settings is not None
    outcome = run_memorization(settings, base_dir=tmp_path)
    (finding,) = outcome.findings
    assert finding.severity is Severity.HIGH
    assert finding.metrics["canaries_regurgitated"] == 1.0
    assert finding.metrics["canary_exposure@40x"] == pytest.approx(space.bits)
    assert finding.metrics["memorization_resistance"] == pytest.approx(0.0)
    assert "LLM02:2025" in finding.taxonomy.owasp and "AML.T0057" in finding.taxonomy.atlas
    assert outcome.section["space"]["size"] == 1000


def _result(exposure: float) -> MemorizationResult:
    space = CanarySpace(length=3)
    canary = CanaryExposure(
        secret="123", repetitions=64, log_perplexity=5.0, rank=1, exposure=exposure,
        exposure_extrapolated=None, greedy="4 5 6", beam="4 5 6",
        greedy_regurgitated=False, beam_regurgitated=False,
    )  # fmt: skip
    return MemorizationResult(space, (canary,), method="exact", n_samples=0, beam_width=2)


def test_the_finding_states_the_dp_privacy_unit() -> None:
    result = _result(1.0)
    distinct = memorization_finding(
        result,
        private=True,
        privacy={"epsilon": 8.0, "privacy_unit": "distinct-line", "duplicates_removed": 63},
    )
    assert "DP-SGD at ε=8 per distinct line (63 exact duplicate line(s) merged" in distinct.summary
    assert distinct.details["privacy_unit"] == "distinct-line"
    assert not distinct.recommendation.startswith("This model's DP guarantee is per line")
    assert "--privacy-unit distinct-line" in distinct.recommendation
    # a record from before the unit was recorded came from the per-line trainer
    per_line = memorization_finding(result, private=True, privacy={"epsilon": 8.0})
    assert "per line: a line repeated k times is protected only at group level k" in (
        per_line.summary
    )
    assert per_line.recommendation.startswith("This model's DP guarantee is per line")
    plain = memorization_finding(result, private=False)
    assert "DP-SGD" not in plain.summary and "privacy_unit" not in plain.details
