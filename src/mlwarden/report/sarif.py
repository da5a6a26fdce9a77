"""SARIF 2.1.0, written once: the assessment report's log and the builders every log uses.

:func:`to_sarif` renders a :class:`~mlwarden.report.findings.Report`; the supply-chain logs
(:mod:`mlwarden.supplychain.sarif`) build theirs from :func:`sarif_log` and the level and
security-severity tables here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlwarden._io import atomic_write_text
from mlwarden.report.findings import Report, Severity

__all__ = [
    "SARIF_LEVEL",
    "SARIF_SCHEMA",
    "SECURITY_SEVERITY",
    "sarif_log",
    "to_sarif",
    "write_sarif",
    "write_sarif_document",
]

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_LEVEL = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
    Severity.INFO: "none",
}
SECURITY_SEVERITY = {
    Severity.CRITICAL: "9.5",
    Severity.HIGH: "8.0",
    Severity.MEDIUM: "5.5",
    Severity.LOW: "3.0",
    Severity.INFO: "0.0",
}


def sarif_log(
    rules: dict[str, dict[str, Any]],
    results: list[dict[str, Any]],
    *,
    version: str,
    properties: dict[str, Any],
) -> dict[str, Any]:
    """One SARIF 2.1.0 log with one run of the ``mlwarden`` tool.

    Parameters
    ----------
    rules
        Rule id to its SARIF rule object (listed in insertion order).
    results
        The run's SARIF results.
    version
        The tool version recorded in the log.
    properties
        The run's ``properties`` bag.
    """
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "mlwarden",
                        "version": version,
                        "informationUri": "https://github.com/mlwarden/mlwarden",
                        "rules": list(rules.values()),
                    }
                },
                "results": results,
                "properties": properties,
            }
        ],
    }


def to_sarif(report: Report) -> dict[str, Any]:
    """The report as a SARIF 2.1.0 log: one rule per finding id, one result per finding."""
    rules: dict[str, dict[str, Any]] = {}
    results = []
    location = report.model.get("path") or report.model.get("name", "model")
    for finding in report.findings:
        tags = ["security", "machine-learning", *finding.taxonomy.atlas, *finding.taxonomy.owasp]
        rules.setdefault(
            finding.id,
            {
                "id": finding.id,
                "name": finding.title,
                "shortDescription": {"text": finding.title},
                "help": {"text": finding.recommendation},
                "helpUri": next(
                    (r.url for r in finding.taxonomy.refs()), "https://atlas.mitre.org"
                ),
                "properties": {
                    "tags": tags,
                    "security-severity": SECURITY_SEVERITY[finding.severity],
                },
            },
        )
        results.append(
            {
                "ruleId": finding.id,
                "level": SARIF_LEVEL[finding.severity],
                "message": {"text": finding.summary},
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": str(location)}}}],
                "properties": {
                    "severity": finding.severity.value,
                    "metrics": finding.metrics,
                    "taxonomy": finding.taxonomy.to_dict(),
                },
            }
        )
    return sarif_log(
        rules,
        results,
        version=report.tool_version,
        properties={"passed": report.passed, "gates": [g.to_dict() for g in report.gates]},
    )


def write_sarif_document(document: dict[str, Any], path: str | Path) -> Path:
    """Write a SARIF document atomically."""
    return atomic_write_text(path, json.dumps(document, indent=2) + "\n")


def write_sarif(report: Report, path: str | Path) -> Path:
    """Write the report's SARIF 2.1.0 log for code-scanning dashboards."""
    return write_sarif_document(to_sarif(report), path)
