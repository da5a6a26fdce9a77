"""The files ``mlwarden assess`` writes: report.json, report.sarif and report.html."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest

SEVERITIES = ("info", "low", "medium", "high", "critical")
SARIF_LEVELS = {"error", "warning", "note", "none"}
ATTACK_FINDINGS = {"evasion.fgsm", "evasion.pgd", "evasion.square"}


# report.json -----------------------------------------------------------------------------------


def test_json_names_its_schema_and_version(digits_assessment: Any) -> None:
    report = digits_assessment.report
    assert report["schema"] == "mlwarden.report"
    assert report["schema_version"] == "1.1"
    assert report["tool"]["name"] == "mlwarden"


def test_json_has_every_documented_top_level_field(digits_assessment: Any) -> None:
    documented = {
        "schema",
        "schema_version",
        "tool",
        "created_at",
        "duration_s",
        "model",
        "data",
        "config",
        "summary",
        "gates",
        "findings",
        "sections",
    }
    assert documented <= set(digits_assessment.report)


def test_json_summary_counts_findings_by_severity(digits_assessment: Any) -> None:
    report = digits_assessment.report
    summary = report["summary"]
    assert isinstance(summary["passed"], bool)
    assert set(summary["findings_by_severity"]) == set(SEVERITIES)
    assert sum(summary["findings_by_severity"].values()) == len(report["findings"])
    highest = max(SEVERITIES.index(f["severity"]) for f in report["findings"])
    assert summary["max_severity"] == SEVERITIES[highest]


def test_json_model_and_data_describe_what_was_assessed(digits_assessment: Any) -> None:
    report = digits_assessment.report
    assert report["model"]["name"] == "zoo:digits-cnn"
    assert report["model"]["white_box"] is True
    assert re.fullmatch(r"[0-9a-f]{64}", report["model"]["sha256"])
    assert report["data"]["kind"] == "image"
    assert report["data"]["n_samples_evaluated"] == 60
    assert re.fullmatch(r"[0-9a-f]{64}", report["data"]["sha256"])


def test_every_finding_has_a_known_severity_and_a_recommendation(digits_assessment: Any) -> None:
    findings = digits_assessment.report["findings"]
    assert findings
    for finding in findings:
        assert finding["severity"] in SEVERITIES
        assert finding["recommendation"].strip()
        assert finding["title"].strip() and finding["summary"].strip()


def test_attack_findings_map_to_atlas_and_owasp(digits_assessment: Any) -> None:
    findings = [f for f in digits_assessment.report["findings"] if f["id"] in ATTACK_FINDINGS]
    assert {f["id"] for f in findings} == {"evasion.fgsm", "evasion.pgd"}
    for finding in findings:
        assert "AML.T0043" in finding["taxonomy"]["atlas"]
        assert "ML01:2023" in finding["taxonomy"]["owasp"]
        assert finding["taxonomy"]["nist_ai_rmf"]


def test_json_has_a_robust_accuracy_metric_for_each_epsilon(digits_assessment: Any) -> None:
    report = digits_assessment.report
    metrics = report["summary"]["metrics"]
    assert report["config"]["epsilons"] == [0.05, 0.1]
    for eps in ("0.05", "0.1"):
        assert 0.0 <= metrics[f"robust_accuracy@{eps}"] <= 1.0
        for attack in ("fgsm", "pgd"):
            assert f"robust_accuracy[{attack}]@{eps}" in metrics
    assert "clean_accuracy" in metrics


def test_worst_case_is_no_better_than_any_single_attack(digits_assessment: Any) -> None:
    evasion = digits_assessment.report["sections"]["evasion"]
    worst = {w["eps"]: w["robust_accuracy"] for w in evasion["worst_case_robust_accuracy"]}
    assert set(worst) == set(evasion["epsilons"])
    for rows in evasion["curves"].values():
        for row in rows:
            assert worst[row["eps"]] <= row["robust_accuracy"]
    assert all(w <= evasion["clean_accuracy"] for w in worst.values())


# report.sarif ----------------------------------------------------------------------------------


def _check_sarif_structure(log: dict[str, Any]) -> None:
    """The parts of SARIF 2.1.0 code-scanning consumers rely on (no schema download)."""
    assert isinstance(log["$schema"], str) and "sarif" in log["$schema"]
    assert log["version"] == "2.1.0"
    assert isinstance(log["runs"], list) and log["runs"]
    for run in log["runs"]:
        driver = run["tool"]["driver"]
        assert isinstance(driver["name"], str) and driver["name"]
        rule_ids = [rule["id"] for rule in driver["rules"]]
        assert len(rule_ids) == len(set(rule_ids)), "rule ids must be unique"
        for rule in driver["rules"]:
            assert isinstance(rule["id"], str) and rule["id"]
            assert rule["shortDescription"]["text"]
            assert isinstance(rule["properties"]["tags"], list)
            float(rule["properties"]["security-severity"])
        assert isinstance(run["results"], list)
        for result in run["results"]:
            assert result["ruleId"] in rule_ids
            assert result["level"] in SARIF_LEVELS
            assert isinstance(result["message"]["text"], str) and result["message"]["text"]
            for location in result["locations"]:
                assert isinstance(location["physicalLocation"]["artifactLocation"]["uri"], str)


@pytest.fixture(scope="module")
def sarif(digits_assessment: Any) -> dict[str, Any]:
    return json.loads((digits_assessment.out / "report.sarif").read_text(encoding="utf-8"))


def test_sarif_is_structurally_valid_2_1_0(sarif: dict[str, Any]) -> None:
    _check_sarif_structure(sarif)


def test_sarif_has_one_result_per_finding(sarif: dict[str, Any], digits_assessment: Any) -> None:
    [run] = sarif["runs"]
    findings = digits_assessment.report["findings"]
    assert [r["ruleId"] for r in run["results"]] == [f["id"] for f in findings]


def test_sarif_levels_follow_severity(sarif: dict[str, Any]) -> None:
    expected = {
        "critical": "error",
        "high": "error",
        "medium": "warning",
        "low": "note",
        "info": "none",
    }
    for result in sarif["runs"][0]["results"]:
        assert result["level"] == expected[result["properties"]["severity"]]


def test_sarif_rules_carry_taxonomy_tags(sarif: dict[str, Any]) -> None:
    rules = {r["id"]: r for r in sarif["runs"][0]["tool"]["driver"]["rules"]}
    assert {"AML.T0043", "ML01:2023"} <= set(rules["evasion.pgd"]["properties"]["tags"])


def test_black_box_sarif_is_structurally_valid(gbm_default_attacks: Any) -> None:
    log = json.loads((gbm_default_attacks.out / "report.sarif").read_text(encoding="utf-8"))
    _check_sarif_structure(log)


# report.html -----------------------------------------------------------------------------------


def _html(out: Path) -> str:
    return (out / "report.html").read_text(encoding="utf-8")


def _assert_self_contained(html: str) -> None:
    assert not re.search(r"""\bsrc\s*=\s*["']?\s*(https?:)?//""", html, re.IGNORECASE)
    assert not re.search(r"<link\b[^>]*\bstylesheet", html, re.IGNORECASE)
    assert not re.search(r"@import", html, re.IGNORECASE)
    assert not re.search(r"url\(\s*[\"']?(https?:)?//", html, re.IGNORECASE)


def _embedded_pngs(html: str) -> dict[str, bytes]:
    """The inline PNG images by their alt text."""
    images = re.findall(r'<img alt="([^"]*)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    return {alt: base64.b64decode(data, validate=True) for alt, data in images}


def test_html_is_self_contained(digits_assessment: Any) -> None:
    _assert_self_contained(_html(digits_assessment.out))


def test_html_embeds_its_figures_as_png_data_uris(digits_assessment: Any) -> None:
    html = _html(digits_assessment.out)
    images = _embedded_pngs(html)
    assert len(images) == html.count("<img ")
    assert images
    assert all(png.startswith(b"\x89PNG\r\n\x1a\n") for png in images.values())


def test_html_draws_adversarial_examples_for_image_data(digits_assessment: Any) -> None:
    assert "adversarial examples" in _embedded_pngs(_html(digits_assessment.out))


def test_html_names_the_atlas_technique(digits_assessment: Any) -> None:
    assert "AML.T0043" in _html(digits_assessment.out)


def test_html_shows_the_gate_table_when_there_are_gates(digits_gated: Any) -> None:
    html = _html(digits_gated.out)
    assert "Policy gates" in html
    assert "<code>robust_accuracy@0.1</code>" in html
    assert "FAIL" in html


def test_html_has_no_gate_table_without_gates(digits_assessment: Any) -> None:
    assert "Policy gates" not in _html(digits_assessment.out)


def test_html_draws_no_examples_for_tabular_data(gbm_default_attacks: Any) -> None:
    """breast-cancer-gbm attacked by square (the only default attack it can take)."""
    assert gbm_default_attacks.report["data"]["kind"] == "tabular"
    html = _html(gbm_default_attacks.out)
    _assert_self_contained(html)
    images = _embedded_pngs(html)
    assert "accuracy versus epsilon" in images
    assert "adversarial examples" not in images
    assert gbm_default_attacks.report["sections"]["evasion"]["examples"] is None
