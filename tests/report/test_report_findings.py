"""Findings, severities, taxonomy and the report's JSON document."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from mlwarden.report import (
    ATLAS,
    NIST_AI_RMF,
    OWASP_ML,
    REPORT_SCHEMA_VERSION,
    Finding,
    GateResult,
    Report,
    Severity,
    Taxonomy,
)

# Severity ----------------------------------------------------------------------------------------


def test_severities_are_ordered_from_info_to_critical() -> None:
    assert [s.value for s in sorted(Severity, key=lambda s: s.rank)] == [
        "info",
        "low",
        "medium",
        "high",
        "critical",
    ]
    assert [s.rank for s in Severity] == [0, 1, 2, 3, 4]


def test_severity_compares_by_rank() -> None:
    assert Severity.LOW.rank < Severity.MEDIUM.rank < Severity.HIGH.rank < Severity.CRITICAL.rank
    assert max([Severity.HIGH, Severity.CRITICAL, Severity.INFO], key=lambda s: s.rank) is (
        Severity.CRITICAL
    )


def test_severity_values_are_their_json_spelling() -> None:
    assert Severity("medium") is Severity.MEDIUM
    assert json.dumps(Severity.HIGH.value) == '"high"'


# Taxonomy ----------------------------------------------------------------------------------------


def test_taxonomy_accepts_known_ids_and_resolves_them_atlas_first() -> None:
    taxonomy = Taxonomy(atlas=("AML.T0043",), owasp=("ML01:2023",), nist=("MEASURE 2.7",))
    refs = taxonomy.refs()
    assert [r.id for r in refs] == ["AML.T0043", "ML01:2023", "MEASURE 2.7"]
    assert [r.framework for r in refs] == ["MITRE ATLAS", "OWASP ML Top 10", "NIST AI RMF"]
    assert refs[0].url == "https://atlas.mitre.org/techniques/AML.T0043"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"atlas": ("AML.T9999",)},
        {"owasp": ("ML11:2023",)},
        {"nist": ("MEASURE 9.9",)},
        {"atlas": ("ML01:2023",)},  # an OWASP id in the ATLAS slot
    ],
)
def test_taxonomy_rejects_unknown_ids(kwargs: dict[str, tuple[str, ...]]) -> None:
    with pytest.raises(ValueError, match="unknown taxonomy id"):
        Taxonomy(**kwargs)


def test_taxonomy_to_dict_lists_ids_per_framework() -> None:
    taxonomy = Taxonomy(atlas=("AML.T0015",), nist=("MANAGE 1.3",))
    assert taxonomy.to_dict() == {
        "atlas": ["AML.T0015"],
        "owasp": [],
        "nist_ai_rmf": ["MANAGE 1.3"],
    }


def test_every_catalogue_entry_is_keyed_by_its_own_id() -> None:
    for table in (ATLAS, OWASP_ML, NIST_AI_RMF):
        for key, ref in table.items():
            assert key == ref.id
            assert ref.name and ref.url.startswith("https://")


# Finding and Report ------------------------------------------------------------------------------


def test_finding_to_dict_is_plain_json(make_finding: Callable[..., Finding]) -> None:
    finding = make_finding("evasion.pgd", Severity.HIGH, clean_accuracy=0.9)
    data = finding.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["severity"] == "high"
    assert data["taxonomy"]["atlas"][0] == "AML.T0043"
    assert set(data) == {
        "id",
        "check",
        "title",
        "summary",
        "severity",
        "metrics",
        "taxonomy",
        "recommendation",
        "details",
    }


def test_report_to_dict_has_the_documented_structure(make_report: Callable[..., Report]) -> None:
    gate = GateResult("clean_accuracy", 0.9, 0.95, True, "--fail-under")
    doc = make_report(gates=[gate]).to_dict()
    assert list(doc) == [
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
    ]
    assert doc["schema"] == "mlwarden.report"
    assert doc["schema_version"] == REPORT_SCHEMA_VERSION == "1.1"
    assert doc["tool"] == {"name": "mlwarden", "version": "0.0.test"}
    assert doc["duration_s"] == 1.235
    assert doc["summary"] == {
        "passed": True,
        "max_severity": "high",
        "findings_by_severity": {"info": 0, "low": 0, "medium": 1, "high": 1, "critical": 0},
        "metrics": {
            "clean_accuracy": 0.95,
            "robust_accuracy@0.05": 0.7,
            "robust_accuracy@0.1": 0.3,
        },
    }
    assert doc["gates"] == [
        {
            "metric": "clean_accuracy",
            "threshold": 0.9,
            "value": 0.95,
            "passed": True,
            "source": "--fail-under",
        }
    ]
    assert [f["id"] for f in doc["findings"]] == ["evasion.fgsm", "evasion.pgd"]
    assert json.loads(json.dumps(doc)) == doc


def test_a_report_passes_only_when_every_gate_passes(make_report: Callable[..., Report]) -> None:
    passing = GateResult("clean_accuracy", 0.9, 0.95, True, "config")
    failing = GateResult("robust_accuracy@0.1", 0.5, 0.3, False, "config")
    assert make_report().passed  # no gates
    assert make_report(gates=[passing]).passed
    assert not make_report(gates=[passing, failing]).passed


def test_max_severity_of_a_report_without_findings_is_info(
    make_report: Callable[..., Report],
) -> None:
    assert make_report(findings=[]).max_severity is Severity.INFO


def test_every_atlas_reference_names_the_technique_as_the_vendored_atlas_data_does() -> None:
    """Report tags must match ATLAS as shipped (program/data/ATLAS.yaml): a sub-technique is
    written ``Parent: Child``, each part the vendored name."""
    from pathlib import Path

    import yaml

    import mlwarden.program

    data = yaml.safe_load(
        (Path(mlwarden.program.__file__).parent / "data" / "ATLAS.yaml").read_text()
    )
    names: dict[str, str] = {}

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if str(node.get("id", "")).startswith("AML.") and "name" in node:
                names[str(node["id"])] = str(node["name"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(data)
    for tid, ref in ATLAS.items():
        parent = tid.rsplit(".", 1)[0] if tid.count(".") == 2 else None
        expected = names[tid] if parent is None else f"{names[parent]}: {names[tid]}"
        assert ref.name == expected, tid
