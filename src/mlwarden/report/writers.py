"""Render a :class:`~mlwarden.report.findings.Report` as JSON, SARIF 2.1.0 and HTML.

Writers only render what the report holds; every file is written atomically.
"""

from __future__ import annotations

import base64
import json
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import yaml

from mlwarden._io import atomic_write_text
from mlwarden.errors import ReportError
from mlwarden.report.findings import Report, Severity
from mlwarden.report.plots import (
    accuracy_vs_eps_png,
    adversarial_examples_png,
    certified_accuracy_png,
)

__all__ = ["render_html", "to_sarif", "write_html", "write_json", "write_reports", "write_sarif"]

_SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_SARIF_LEVEL = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
    Severity.INFO: "none",
}
_SECURITY_SEVERITY = {
    Severity.CRITICAL: "9.5",
    Severity.HIGH: "8.0",
    Severity.MEDIUM: "5.5",
    Severity.LOW: "3.0",
    Severity.INFO: "0.0",
}


def write_json(report: Report, path: str | Path) -> Path:
    """Write the report's JSON document (schema in docs/report-schema.md)."""
    return atomic_write_text(path, json.dumps(report.to_dict(), indent=2, sort_keys=False) + "\n")


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
                    "security-severity": _SECURITY_SEVERITY[finding.severity],
                },
            },
        )
        results.append(
            {
                "ruleId": finding.id,
                "level": _SARIF_LEVEL[finding.severity],
                "message": {"text": finding.summary},
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": str(location)}}}],
                "properties": {
                    "severity": finding.severity.value,
                    "metrics": finding.metrics,
                    "taxonomy": finding.taxonomy.to_dict(),
                },
            }
        )
    return {
        "$schema": _SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "mlwarden",
                        "version": report.tool_version,
                        "informationUri": "https://github.com/mlwarden/mlwarden",
                        "rules": list(rules.values()),
                    }
                },
                "results": results,
                "properties": {
                    "passed": report.passed,
                    "gates": [g.to_dict() for g in report.gates],
                },
            }
        ],
    }


def write_sarif(report: Report, path: str | Path) -> Path:
    """Write the SARIF 2.1.0 log for code-scanning dashboards."""
    return atomic_write_text(path, json.dumps(to_sarif(report), indent=2) + "\n")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def render_html(report: Report) -> str:
    """One self-contained HTML page: styles inline, figures as data URIs."""
    doc = report.to_dict()
    evasion = doc["sections"]["evasion"]
    template_text = (
        resources.files("mlwarden.report").joinpath("templates/report.html.j2").read_text("utf-8")
    )
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = env.from_string(template_text)
    findings = sorted(report.findings, key=lambda f: -f.severity.rank)
    return template.render(
        r=doc,
        ev=evasion,
        pct=lambda v: f"{v:.1%}",
        accuracy_plot=_b64(accuracy_vs_eps_png(evasion)),
        examples_plot=_b64(adversarial_examples_png(evasion["examples"]))
        if evasion.get("examples")
        else None,
        certification=doc["sections"].get("certification"),
        certification_plot=_b64(certified_accuracy_png(doc["sections"]["certification"]))
        if doc["sections"].get("certification")
        else None,
        detection=doc["sections"].get("detection"),
        privacy=doc["sections"].get("privacy"),
        **_privacy_plots(doc["sections"].get("privacy")),
        poisoning=doc["sections"].get("poisoning"),
        extraction=doc["sections"].get("extraction"),
        extraction_plot=_extraction_plot(doc["sections"].get("extraction")),
        findings=[
            {**f.to_dict(), "refs": [t.to_dict() for t in f.taxonomy.refs()]} for f in findings
        ],
        config_yaml=yaml.safe_dump(doc["config"], sort_keys=False),
    )


def _extraction_plot(section: dict[str, Any] | None) -> str | None:
    if not section:
        return None
    from mlwarden.attacks.extraction.plot import extraction_png

    return _b64(extraction_png(section["runs"], title="Model extraction: surrogate vs queries"))


def _privacy_plots(section: dict[str, Any] | None) -> dict[str, str | None]:
    """The privacy section's ROC and inversion figures, as base64 PNGs (``None`` when absent)."""
    from mlwarden.report.plots import inversion_grid_png, membership_roc_png

    plots: dict[str, str | None] = {"membership_plot": None, "inversion_plot": None}
    if not section:
        return plots
    if section.get("membership"):
        curves = {name: {**r["roc"], "auc": r["auc"]} for name, r in section["membership"].items()}
        plots["membership_plot"] = _b64(membership_roc_png(curves))
    inversion = section.get("inversion") or {}
    if "reconstructions" in inversion:
        plots["inversion_plot"] = _b64(
            inversion_grid_png(
                inversion["reconstructions"], inversion["class_means"], inversion["recovered"]
            )
        )
    return plots


def write_html(report: Report, path: str | Path) -> Path:
    """Write the self-contained HTML report."""
    return atomic_write_text(path, render_html(report))


def write_reports(report: Report, out_dir: str | Path) -> dict[str, Path]:
    """Write ``report.json``, ``report.sarif`` and ``report.html`` into ``out_dir``."""
    out = Path(out_dir)
    try:
        return {
            "json": write_json(report, out / "report.json"),
            "sarif": write_sarif(report, out / "report.sarif"),
            "html": write_html(report, out / "report.html"),
        }
    except OSError as exc:
        raise ReportError(f"cannot write the reports into {out}: {exc}") from exc
