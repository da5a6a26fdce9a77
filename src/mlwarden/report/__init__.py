"""Findings, the taxonomy they map to, and the JSON/SARIF/HTML writers.

The names are imported on first use (PEP 562): ``mlwarden.report.findings`` is needed by every
command, while the writers pull in matplotlib and torch, which ``mlwarden scan`` must not load.
"""

from __future__ import annotations

import importlib
import typing

if typing.TYPE_CHECKING:
    from mlwarden.report.findings import (
        REPORT_SCHEMA_VERSION,
        Finding,
        GateResult,
        Report,
        Severity,
    )
    from mlwarden.report.taxonomy import ATLAS, NIST_AI_RMF, OWASP_ML, Taxonomy
    from mlwarden.report.writers import write_html, write_json, write_reports, write_sarif

__all__ = [
    "ATLAS",
    "NIST_AI_RMF",
    "OWASP_ML",
    "REPORT_SCHEMA_VERSION",
    "Finding",
    "GateResult",
    "Report",
    "Severity",
    "Taxonomy",
    "write_html",
    "write_json",
    "write_reports",
    "write_sarif",
]

_HOMES = {
    **dict.fromkeys(
        ["REPORT_SCHEMA_VERSION", "Finding", "GateResult", "Report", "Severity"],
        "mlwarden.report.findings",
    ),
    **dict.fromkeys(["ATLAS", "NIST_AI_RMF", "OWASP_ML", "Taxonomy"], "mlwarden.report.taxonomy"),
    **dict.fromkeys(
        ["write_html", "write_json", "write_reports", "write_sarif"], "mlwarden.report.writers"
    ),
}


def __getattr__(name: str) -> typing.Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'mlwarden.report' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
