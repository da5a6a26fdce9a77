"""Findings and the report that holds them: what writers render, never recompute."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from mlwarden.report.taxonomy import Taxonomy

__all__ = ["REPORT_SCHEMA_VERSION", "Finding", "GateResult", "Report", "Severity"]

REPORT_SCHEMA_VERSION = "1.1"  # 1.1: data.sha256 covers shape and dtype


class Severity(str, enum.Enum):
    """How urgent a finding is, from ``info`` (nothing to fix) to ``critical``."""

    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """0 for info up to 4 for critical."""
        return list(Severity).index(self)


@dataclass(frozen=True)
class Finding:
    """One result of one check.

    Attributes
    ----------
    id
        Stable rule identifier, e.g. ``evasion.pgd`` (SARIF ``ruleId``).
    check
        The check that produced it (``evasion``, ...).
    title, summary
        One line, and a few sentences a reader can act on.
    severity
        See :class:`Severity`.
    metrics
        Named measurements, e.g. ``{"robust_accuracy@0.05": 0.61}``.
    taxonomy
        ATLAS / OWASP / NIST AI RMF mapping.
    recommendation
        The control that would reduce the risk.
    details
        Check-specific data a writer may render (curves, parameters).
    """

    id: str
    check: str
    title: str
    summary: str
    severity: Severity
    metrics: dict[str, float]
    taxonomy: Taxonomy
    recommendation: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view."""
        return {
            "id": self.id,
            "check": self.check,
            "title": self.title,
            "summary": self.summary,
            "severity": self.severity.value,
            "metrics": dict(self.metrics),
            "taxonomy": self.taxonomy.to_dict(),
            "recommendation": self.recommendation,
            "details": self.details,
        }


@dataclass(frozen=True)
class GateResult:
    """A policy gate: ``metric`` must be at least ``threshold``."""

    metric: str
    threshold: float
    value: float | None
    passed: bool
    source: str
    reason: str | None = None
    """Why the gate failed although the value meets the threshold (it failed closed)."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view."""
        return {
            "metric": self.metric,
            "threshold": self.threshold,
            "value": self.value,
            "passed": self.passed,
            "source": self.source,
            **({"reason": self.reason} if self.reason else {}),
        }


@dataclass
class Report:
    """Everything an assessment found, plus the context needed to reproduce it."""

    model: dict[str, Any]
    data: dict[str, Any]
    config: dict[str, Any]
    findings: list[Finding]
    gates: list[GateResult]
    metrics: dict[str, float]
    sections: dict[str, Any]
    created_at: str
    duration_s: float
    tool_version: str

    @property
    def passed(self) -> bool:
        """Whether every policy gate passed."""
        return all(g.passed for g in self.gates)

    @property
    def max_severity(self) -> Severity:
        """The most severe finding's severity (``info`` when there are none)."""
        return max((f.severity for f in self.findings), key=lambda s: s.rank, default=Severity.INFO)

    def to_dict(self) -> dict[str, Any]:
        """The report as the documented JSON document (see docs/report-schema.md)."""
        return {
            "schema": "mlwarden.report",
            "schema_version": REPORT_SCHEMA_VERSION,
            "tool": {"name": "mlwarden", "version": self.tool_version},
            "created_at": self.created_at,
            "duration_s": round(self.duration_s, 3),
            "model": self.model,
            "data": self.data,
            "config": self.config,
            "summary": {
                "passed": self.passed,
                "max_severity": self.max_severity.value,
                "findings_by_severity": {
                    s.value: sum(f.severity is s for f in self.findings) for s in Severity
                },
                "metrics": self.metrics,
            },
            "gates": [g.to_dict() for g in self.gates],
            "findings": [f.to_dict() for f in self.findings],
            "sections": self.sections,
        }
