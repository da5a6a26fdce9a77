"""Write a training-data inspection (``mlwarden data inspect``) as JSON and self-contained HTML.

The writers render the document :meth:`~mlwarden.defenses.poisoning.Inspection.to_dict`
produced (plus the retraining figures the CLI adds); they compute nothing.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from mlwarden._io import atomic_write_text

__all__ = [
    "HTML_MAX_ROWS",
    "INSPECTION_FORMAT",
    "inspection_document",
    "render_inspection_html",
    "write_inspection_reports",
]

HTML_MAX_ROWS = 500
"""Suspicious samples listed in the HTML report (all of them are in the JSON)."""

INSPECTION_FORMAT = "mlwarden.data-inspection/2"
"""The document's format name, the same for tensor and text data."""


def inspection_document(
    body: dict[str, Any], *, created_at: str, model: str | None, truth: str | None
) -> dict[str, Any]:
    """The report document: an inspection's ``to_dict`` with the run's header fields.

    ``cleaned`` and ``retrain`` start empty; the CLI fills them when it removes the flagged
    samples or retrains without them.
    """
    from mlwarden import __version__

    return {
        **body,
        "format": INSPECTION_FORMAT,
        "tool_version": __version__,
        "created_at": created_at,
        "model": model,
        "truth": truth,
        "cleaned": None,
        "retrain": None,
    }


def render_inspection_html(doc: dict[str, Any]) -> str:
    """The HTML report of an inspection document."""
    text = (
        resources.files("mlwarden.report")
        .joinpath("templates/data_inspect.html.j2")
        .read_text("utf-8")
    )
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(text).render(doc=doc, max_rows=HTML_MAX_ROWS)


def write_inspection_reports(doc: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write ``report.json`` and ``report.html`` into ``out_dir`` (atomically each)."""
    out = Path(out_dir)
    return {
        "json": atomic_write_text(out / "report.json", json.dumps(doc, indent=2) + "\n"),
        "html": atomic_write_text(out / "report.html", render_inspection_html(doc)),
    }
