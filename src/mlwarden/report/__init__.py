"""Findings, the taxonomy they map to, and the JSON/SARIF/HTML writers."""

from mlwarden.report.findings import REPORT_SCHEMA_VERSION, Finding, GateResult, Report, Severity
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
