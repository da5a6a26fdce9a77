"""The assessment's extraction section: model theft per output policy, gated by resistance."""

from __future__ import annotations

from typing import Any

import pytest

from mlwarden.assess import AssessConfig, assess, load_config, parse_gate
from mlwarden.errors import ConfigError
from mlwarden.report.writers import render_html


def test_extraction_section_reports_fidelity_per_policy_and_gates_resistance(
    digits_cnn: Any, digits_test: Any
) -> None:
    config = AssessConfig(
        attacks=["fgsm"],
        epsilons=[0.05],
        max_samples=200,
        extraction={"budget": 250, "policies": ["label"]},
    ).with_gates([parse_gate("extraction_resistance@250=0.5"), parse_gate("clean_accuracy=0.5")])
    report = assess(digits_cnn, digits_test, config)
    section = report.sections["extraction"]
    assert section["query_data"] == "pool" and section["served_policy"] == "label"
    assert set(section["runs"]) == {"label"}
    run = section["runs"]["label"]
    assert [p["queries"] for p in run["points"]] == [250] and run["hard_labels"]
    fidelity = run["fidelity"]
    assert 0.1 < fidelity <= 1.0
    assert report.metrics["extraction_resistance@250"] == pytest.approx(1 - fidelity)
    assert report.metrics["extraction_fidelity[label]@250"] == pytest.approx(fidelity)
    [finding] = [f for f in report.findings if f.check == "extraction"]
    assert "ML05:2023" in finding.taxonomy.owasp and "AML.T0024.002" in finding.taxonomy.atlas
    gates = {g.metric: g for g in report.gates}
    # a surrogate trained on the digits copies the CNN well: resistance is low and the gate fails
    assert gates["extraction_resistance@250"].passed is (1 - fidelity >= 0.5)
    assert config.epsilons == [0.05]  # the budget of an extraction gate is not an ε
    html = render_html(report)
    assert "<h2>Model extraction</h2>" in html
    assert 'alt="surrogate fidelity versus queries" src="data:image/png;base64,' in html


def test_extraction_config_from_yaml_and_its_errors(write_yaml: Any) -> None:
    config = load_config(write_yaml({"extraction": {"budget": 500}}))
    assert config.extraction is not None and config.extraction["budget"] == 500
    assert config.extraction["policies"] == ["probabilities", "rounded", "label"]
    assert load_config(write_yaml({"extraction": True})).extraction["budget"] == 1000  # type: ignore[index]
    for bad, match in [
        ({"budget": 0}, "budget"),
        ({"policies": ["everything"]}, "everything"),
        ({"query_data": "imagenet"}, "query_data"),
        ({"budgett": 3}, "budgett"),
    ]:
        with pytest.raises(ConfigError, match=match):
            AssessConfig(extraction=bad)
    with pytest.raises(ConfigError, match="unknown gate metric"):
        parse_gate("extraction_resistance@abc=0.5")
