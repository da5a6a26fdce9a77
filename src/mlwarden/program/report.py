"""The programme report: one HTML page per system and a portfolio page, JSON beside them.

Pages are organised by the NIST AI RMF functions: **Map** (context and threat model, derived
ATLAS threats and their scores), **Measure** (assessment results and their trend over time, with
a plot of robust accuracy), **Manage** (the ranked control plan and its evidence), **Govern**
(owner, cadence, policies). Pages are self-contained: styles inline, the plot a data URI.
Writers render; every figure comes from :class:`~mlwarden.program.inventory.Inventory`.
"""

from __future__ import annotations

import base64
import io
import json
import os
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import markupsafe
import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates
import matplotlib.pyplot as plt

from mlwarden._io import atomic_write_text
from mlwarden.program.inventory import AssessmentRun, Inventory, SystemStatus

__all__ = ["robust_accuracy_trend_png", "system_document", "write_program_report"]

SCHEMA = "mlwarden.program-report/1"
_PNG_META = {"Software": None}


def robust_accuracy_trend_png(histories: dict[str, list[AssessmentRun]]) -> bytes | None:
    """Robust accuracy (worst case at the largest ε) of each system over time, or ``None``."""
    series = {
        name: [
            (r.assessed_at, r.metrics["robust_accuracy"])
            for r in runs
            if "robust_accuracy" in r.metrics
        ]
        for name, runs in histories.items()
    }
    series = {name: points for name, points in series.items() if points}
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    for name, points in sorted(series.items()):
        dates = mdates.date2num([p[0] for p in points])
        ax.plot(dates, [p[1] for p in points], marker="o", label=name)
    ax.xaxis_date()
    ax.set_ylim(0, 1)
    ax.set_ylabel("robust accuracy")
    ax.set_xlabel("assessed")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    fig.autofmt_xdate()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight", metadata=_PNG_META)
    plt.close(fig)
    return buffer.getvalue()


def system_document(status: SystemStatus, history: list[AssessmentRun]) -> dict[str, Any]:
    """One system's report data, by NIST AI RMF function."""
    system = status.system
    return {
        "schema": SCHEMA,
        "system": system.name,
        "map": {
            "description": system.threat_model.description,
            "threat_model": system.threat_model.model_dump(mode="json", by_alias=True),
            "threats": [t.to_dict() for t in status.risk.threats],
            "atlas_version": status.risk.atlas_version,
        },
        "measure": {
            "runs": [r.to_dict() for r in history],
            "last_assessed": status.to_dict()["last_assessed"],
            "open_high_findings": status.open_high_findings,
        },
        "manage": {
            "controls": [c.to_dict() for c in status.risk.controls],
            "missing_top_controls": [c.id for c in status.missing_top_controls],
            "evidence": {k: e.to_dict() for k, e in status.risk.evidence.items()},
        },
        "govern": {
            **system.to_dict(),
            "due_at": status.to_dict()["due_at"],
            "overdue": status.overdue,
        },
    }


def _env() -> jinja2.Environment:
    return jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)


def _read(name: str) -> str:
    return resources.files("mlwarden.program").joinpath(f"templates/{name}").read_text("utf-8")


def _template(name: str) -> jinja2.Template:
    template = _env().from_string(_read(name))
    template.globals["style"] = markupsafe.Markup(_read("_style.j2"))
    return template


def _report_links(history: list[AssessmentRun], page_dir: Path) -> dict[str, str]:
    """Run id → link from the system page to that run's ``report.html``, where it still exists."""
    links = {}
    for run in history:
        html = Path(run.report_path).with_name("report.html")
        if html.is_file():
            links[run.run_id] = Path(os.path.relpath(html, page_dir.resolve())).as_posix()
    return links


def write_program_report(
    inventory: Inventory, out_dir: str | Path, *, now: datetime | None = None
) -> dict[str, Path]:
    """Write ``index.html`` and ``program.json`` (portfolio) and ``systems/NAME.html|json``.

    Returns
    -------
    dict
        ``"index"``, ``"json"`` and ``"system:NAME"`` → written path.
    """
    now = now or datetime.now(timezone.utc)
    out = Path(out_dir)
    statuses = inventory.status(now=now)
    histories = {s.system.name: inventory.history(s.system.name) for s in statuses}
    written: dict[str, Path] = {}
    system_page = _template("system.html.j2")
    portfolio = []
    for status in statuses:
        name = status.system.name
        history = histories[name]
        doc = system_document(status, history)
        png = robust_accuracy_trend_png({name: history})
        html = system_page.render(
            d=doc,
            links=_report_links(history, out / "systems"),
            generated=now.isoformat(timespec="seconds"),
            trend=base64.b64encode(png).decode("ascii") if png else None,
        )
        written[f"system:{name}"] = atomic_write_text(out / "systems" / f"{name}.html", html)
        atomic_write_text(out / "systems" / f"{name}.json", json.dumps(doc, indent=2))
        top = status.risk.threats[0] if status.risk.threats else None
        portfolio.append(
            {
                **status.to_dict(),
                "owner": status.system.owner,
                "page": f"systems/{name}.html",
                "top_threat": top.to_dict() if top else None,
                "runs": len(history),
                "latest_metrics": history[-1].metrics if history else {},
                "controls_done": sum(c.status == "done" for c in status.risk.controls),
                "controls_total": len(status.risk.controls),
            }
        )
    png = robust_accuracy_trend_png(histories)
    document = {"schema": SCHEMA, "generated_at": now.isoformat(), "systems": portfolio}
    written["json"] = atomic_write_text(out / "program.json", json.dumps(document, indent=2))
    written["index"] = atomic_write_text(
        out / "index.html",
        _template("portfolio.html.j2").render(
            d=document,
            generated=now.isoformat(timespec="seconds"),
            trend=base64.b64encode(png).decode("ascii") if png else None,
        ),
    )
    return written
