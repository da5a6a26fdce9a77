"""Threat models, gateway configs and assessment reports built in each test's own folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlwarden.program.threat_model import template


def threat_model_dict(system: str = "fraud-scorer", **changes: Any) -> dict[str, Any]:
    """The ``init`` template of ``system`` with top-level keys replaced by ``changes``."""
    data: dict[str, Any] = yaml.safe_load(template(system, owner="risk-team"))
    data.update(changes)
    return data


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def assess_report(
    *,
    passed: bool = True,
    created_at: str = "2024-01-15T10:00:00+00:00",
    robust_accuracy: float = 0.6,
    severities: tuple[str, ...] = ("medium",),
    poisoning: bool = False,
) -> dict[str, Any]:
    """A synthetic ``report.json`` (schema 1.1) with one gate and the given findings."""
    sections: dict[str, Any] = {"evasion": {"epsilons": [0.05, 0.1]}}
    if poisoning:
        sections["poisoning"] = {"n_suspicious": 0}
    return {
        "schema": "mlwarden.report",
        "schema_version": "1.1",
        "tool": {"name": "mlwarden", "version": "0.2.0"},
        "created_at": created_at,
        "model": {"name": "fraud", "sha256": "ab" * 32},
        "data": {"name": "builtin:digits", "sha256": "cd" * 32},
        "summary": {
            "passed": passed,
            "max_severity": severities[0] if severities else "info",
            "metrics": {
                "clean_accuracy": 0.95,
                "robust_accuracy@0.05": robust_accuracy + 0.1,
                "robust_accuracy@0.1": robust_accuracy,
                "robust_accuracy[pgd]@0.1": robust_accuracy,
            },
        },
        "gates": [
            {
                "metric": "robust_accuracy@0.1",
                "threshold": 0.5,
                "value": robust_accuracy,
                "passed": passed,
                "source": "policy.yaml",
            }
        ],
        "findings": [
            {"id": f"evasion.f{i}", "title": f"finding {i}", "severity": sev, "check": "evasion"}
            for i, sev in enumerate(severities)
        ],
        "sections": sections,
    }


def write_report(path: Path, report: dict[str, Any]) -> Path:
    path.write_text(json.dumps(report), encoding="utf-8")
    return path


@pytest.fixture
def public_system(tmp_path: Path) -> Path:
    """A public scoring API trained on restricted personal data, with a model file on disk."""
    (tmp_path / "model.pt2").write_bytes(b"not really a model")
    data = threat_model_dict(
        exposure="public-api",
        models=[{"name": "fraud", "path": "model.pt2", "provenance": "in-house"}],
        data=[{"name": "transactions", "sensitivity": "restricted", "personal_data": True}],
        training_data=[{"name": "transactions", "origin": "user-contributed"}],
        deployment={"outputs": "probabilities", "gateway_config": "gateway.yaml"},
        impact={
            "integrity": "moderate",
            "privacy": "low",
            "intellectual_property": "high",
            "availability": "low",
        },
    )
    return write_yaml(tmp_path / "threat-model.yaml", data)
