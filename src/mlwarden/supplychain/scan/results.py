"""What a scan found: issues, one record per scanned file, and the report over all of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlwarden import __version__
from mlwarden.report.findings import Severity

__all__ = ["SCAN_SCHEMA_VERSION", "FileScan", "GlobalUse", "ScanIssue", "ScanReport"]

SCAN_SCHEMA_VERSION = "1.0"


@dataclass(frozen=True)
class ScanIssue:
    """One problem in one artifact.

    Attributes
    ----------
    rule
        Stable identifier, e.g. ``pickle.dangerous-global`` (SARIF ``ruleId``).
    severity
        How dangerous loading the artifact is because of this issue.
    path
        The file, with ``!member`` for each archive level (``model.pt!archive/data.pkl``)
        and ``#nested@OFFSET`` for a pickle embedded in another pickle.
    message
        One sentence a reader can act on.
    offset
        Byte offset inside the innermost stream (the pickle opcode), when known.
    details
        Rule-specific data (the global's name, the opcodes that call it, ...).
    """

    rule: str
    severity: Severity
    path: str
    message: str
    offset: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view."""
        return {
            "rule": self.rule,
            "severity": self.severity.value,
            "path": self.path,
            "message": self.message,
            "offset": self.offset,
            "details": self.details,
        }


@dataclass
class GlobalUse:
    """A global a pickle imports (``module.name``), how often, and which opcodes call it."""

    module: str
    name: str
    severity: Severity | None
    reason: str
    count: int = 0
    first_offset: int | None = None
    calls: set[str] = field(default_factory=set)

    @property
    def fullname(self) -> str:
        """``module.name``."""
        return f"{self.module}.{self.name}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view (``severity`` is null for allow-listed globals)."""
        return {
            "name": self.fullname,
            "severity": None if self.severity is None else self.severity.value,
            "reason": self.reason,
            "count": self.count,
            "first_offset": self.first_offset,
            "calls": sorted(self.calls),
        }


@dataclass
class FileScan:
    """The scan of one file (archive members are folded into their archive's record).

    Attributes
    ----------
    format
        ``pickle``, ``pytorch-zip``, ``pytorch-legacy``, ``joblib``, ``numpy``, ``npz``,
        ``safetensors``, ``onnx``, ``skops``, ``torch-export``, ``torchscript``, ``keras``,
        ``hdf5``, ``zip``, ...
    safe_by_construction
        The format cannot run code when loaded (its header was still checked).
    scanned
        False when the file could not be inspected (see ``notes``).
    """

    path: str
    format: str
    size_bytes: int
    safe_by_construction: bool = False
    scanned: bool = True
    issues: list[ScanIssue] = field(default_factory=list)
    globals: dict[str, GlobalUse] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def max_severity(self) -> Severity | None:
        """The most severe issue's severity, or None when there is none."""
        return max((i.severity for i in self.issues), key=lambda s: s.rank, default=None)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view."""
        worst = self.max_severity
        return {
            "path": self.path,
            "format": self.format,
            "size_bytes": self.size_bytes,
            "safe_by_construction": self.safe_by_construction,
            "scanned": self.scanned,
            "max_severity": None if worst is None else worst.value,
            "issues": [i.to_dict() for i in self.issues],
            "globals": [g.to_dict() for g in sorted(self.globals.values(), key=_global_order)],
            "notes": list(self.notes),
        }


def _global_order(use: GlobalUse) -> tuple[int, str]:
    return (-(use.severity.rank if use.severity else -1), use.fullname)


@dataclass
class ScanReport:
    """Every scanned file, the files passed over, and how long it took."""

    files: list[FileScan]
    skipped: list[str]
    duration_s: float

    @property
    def issues(self) -> list[ScanIssue]:
        """All issues, most severe first."""
        found = [i for f in self.files for i in f.issues]
        return sorted(found, key=lambda i: (-i.severity.rank, i.path))

    @property
    def max_severity(self) -> Severity | None:
        """The most severe issue's severity, or None when the scan is clean."""
        return max((i.severity for i in self.issues), key=lambda s: s.rank, default=None)

    @property
    def bytes_scanned(self) -> int:
        """Total size of the scanned files."""
        return sum(f.size_bytes for f in self.files)

    def at_or_above(self, severity: Severity) -> list[ScanIssue]:
        """The issues at least as severe as ``severity``."""
        return [i for i in self.issues if i.severity.rank >= severity.rank]

    def to_dict(self) -> dict[str, Any]:
        """The scan as a JSON document (``schema: mlwarden.scan``)."""
        worst = self.max_severity
        return {
            "schema": "mlwarden.scan",
            "schema_version": SCAN_SCHEMA_VERSION,
            "tool": {"name": "mlwarden", "version": __version__},
            "summary": {
                "files": len(self.files),
                "bytes": self.bytes_scanned,
                "duration_s": round(self.duration_s, 4),
                "max_severity": None if worst is None else worst.value,
                "issues_by_severity": {
                    s.value: sum(i.severity is s for i in self.issues) for s in Severity
                },
                "unscanned": [f.path for f in self.files if not f.scanned],
            },
            "files": [f.to_dict() for f in self.files],
            "skipped": list(self.skipped),
        }
