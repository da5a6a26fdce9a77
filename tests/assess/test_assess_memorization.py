"""The memorisation section of ``assess``: config validation, findings, severity and taxonomy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlwarden.assess import AssessConfig
from mlwarden.assess.memorization import check_memorization, run_memorization
from mlwarden.attacks.privacy.memorization import CanarySpace, canaries_to_dict, plant_canaries
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
