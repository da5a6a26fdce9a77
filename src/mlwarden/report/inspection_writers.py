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

__all__ = ["HTML_MAX_ROWS", "render_inspection_html", "write_inspection_reports"]

HTML_MAX_ROWS = 500
"""Suspicious samples listed in the HTML report (all of them are in the JSON)."""


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
