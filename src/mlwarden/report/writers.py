"""Render a :class:`~mlwarden.report.findings.Report` as JSON, SARIF 2.1.0 and HTML.

The SARIF rendering lives in :mod:`mlwarden.report.sarif` (with the supply-chain logs' builders).

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
from mlwarden.report.findings import Report
from mlwarden.report.plots import (
    accuracy_vs_eps_png,
    adversarial_examples_png,
    certified_accuracy_png,
    extraction_png,
    inversion_grid_png,
    membership_roc_png,
)
from mlwarden.report.sarif import to_sarif, write_sarif

__all__ = ["render_html", "to_sarif", "write_html", "write_json", "write_reports", "write_sarif"]


def write_json(report: Report, path: str | Path) -> Path:
    """Write the report's JSON document (schema in docs/report-schema.md)."""
    return atomic_write_text(path, json.dumps(report.to_dict(), indent=2, sort_keys=False) + "\n")


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
        text_evasion=doc["sections"].get("text_evasion"),
        extraction_plot=_extraction_plot(doc["sections"].get("extraction")),
        findings=[
            {**f.to_dict(), "refs": [t.to_dict() for t in f.taxonomy.refs()]} for f in findings
        ],
        config_yaml=yaml.safe_dump(doc["config"], sort_keys=False),
    )


def _extraction_plot(section: dict[str, Any] | None) -> str | None:
    if not section:
        return None
    return _b64(extraction_png(section["runs"], title="Model extraction: surrogate vs queries"))


def _privacy_plots(section: dict[str, Any] | None) -> dict[str, str | None]:
    """The privacy section's ROC and inversion figures, as base64 PNGs (``None`` when absent)."""
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
