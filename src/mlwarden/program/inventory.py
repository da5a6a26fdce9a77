"""The programme's inventory of systems and the history of their assessments.

The tables live in the governance registry's database (:class:`mlwarden.serve.db.Database`,
one URI: ``sqlite:///mlwarden.db`` by default, ``postgresql://...`` for teams), beside the
gateway's keys and the registry's artefacts, under the same table prefix with ``prog_`` added.

A system is its threat model (kept as validated YAML, so the inventory does not depend on the
file staying where it was), its owner and assessment cadence. Every ``mlwarden assess`` run
recorded against it keeps the report's SHA-256, its gate results, its key metrics and its open
high-severity findings; :meth:`Inventory.status` turns the latest run and the threat model into
what a security team acts on: overdue assessments, open high-severity findings, missing
controls for the top risks.
"""

from __future__ import annotations

import builtins
import calendar
import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml

from mlwarden.errors import ConfigError, DataError
from mlwarden.program.evidence import collect_evidence
from mlwarden.program.risk import Control, RiskAssessment, assess_risk
from mlwarden.program.threat_model import ThreatModel, threat_model_from_dict
from mlwarden.serve.db import Database

__all__ = [
    "HIGH_SEVERITIES",
    "AssessmentRun",
    "Inventory",
    "System",
    "SystemStatus",
    "add_months",
    "key_metrics",
]

#: Finding severities that count as open high-severity findings.
HIGH_SEVERITIES = frozenset({"high", "critical"})


def add_months(moment: datetime, months: int) -> datetime:
    """``moment`` plus ``months`` calendar months (the day clamped to the month's last day)."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def key_metrics(report: dict[str, Any]) -> dict[str, float]:
    """The metrics a programme tracks over time, from a ``report.json``.

    ``robust_accuracy`` is the worst-case robust accuracy at the largest ε the run measured
    (``robust_accuracy@EPS``), with that ε as ``robust_eps``; every other numeric summary metric
    is kept under its own name.
    """
    metrics = {
        k: float(v)
        for k, v in (report.get("summary", {}).get("metrics") or {}).items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    worst = {}
    for name, value in metrics.items():
        if name.startswith("robust_accuracy@"):
            try:
                worst[float(name.split("@", 1)[1])] = value
            except ValueError:
                continue
    if worst:
        eps = max(worst)
        metrics["robust_accuracy"], metrics["robust_eps"] = worst[eps], eps
    return metrics


@dataclass(frozen=True)
class System:
    """One system of the inventory."""

    name: str
    owner: str
    cadence_months: int
    threat_model: ThreatModel
    threat_model_path: str | None
    added_at: float

    @property
    def base_dir(self) -> Path:
        """Where the threat model's relative paths (models, gateway config) start."""
        return Path(self.threat_model_path).parent if self.threat_model_path else Path.cwd()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view."""
        tm = self.threat_model
        return {
            "name": self.name,
            "owner": self.owner,
            "cadence_months": self.cadence_months,
            "threat_model_path": self.threat_model_path,
            "exposure": tm.exposure,
            "models": [m.model_dump(mode="json") for m in tm.models],
            "datasets": [d.model_dump(mode="json") for d in tm.data],
            "policies": list(tm.policies),
            "added_at": _iso(self.added_at),
        }


@dataclass(frozen=True)
class AssessmentRun:
    """One recorded ``mlwarden assess`` run of a system."""

    run_id: str
    system: str
    assessed_at: datetime
    recorded_at: float
    report_path: str
    report_sha256: str
    model_sha256: str | None
    passed: bool
    gates: list[dict[str, Any]]
    metrics: dict[str, float]
    high_findings: list[dict[str, Any]]
    sections: list[str]

    def as_report(self) -> dict[str, Any]:
        """The parts of the report that evidence detection reads."""
        return {
            "created_at": self.assessed_at.isoformat(),
            "gates": self.gates,
            "summary": {"passed": self.passed},
            "sections": {name: {} for name in self.sections},
        }

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view."""
        return {
            "run_id": self.run_id,
            "system": self.system,
            "assessed_at": self.assessed_at.isoformat(),
            "recorded_at": _iso(self.recorded_at),
            "report_path": self.report_path,
            "report_sha256": self.report_sha256,
            "model_sha256": self.model_sha256,
            "passed": self.passed,
            "gates": self.gates,
            "metrics": self.metrics,
            "high_findings": self.high_findings,
            "sections": self.sections,
        }


@dataclass(frozen=True)
class SystemStatus:
    """What needs attention in one system."""

    system: System
    last_run: AssessmentRun | None
    due_at: datetime | None  # None: never assessed, due now
    overdue: bool
    risk: RiskAssessment

    @property
    def open_high_findings(self) -> list[dict[str, Any]]:
        """High and critical findings of the latest run."""
        return self.last_run.high_findings if self.last_run else []

    @property
    def missing_top_controls(self) -> list[Control]:
        """Missing controls for threats rated high or critical."""
        return self.risk.missing_for_top_risks()

    @property
    def needs_attention(self) -> bool:
        """Overdue, an open high-severity finding, or a missing control for a top risk."""
        return self.overdue or bool(self.open_high_findings) or bool(self.missing_top_controls)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view."""
        return {
            "system": self.system.name,
            "last_assessed": self.last_run.assessed_at.isoformat() if self.last_run else None,
            "due_at": self.due_at.isoformat() if self.due_at else None,
            "overdue": self.overdue,
            "open_high_findings": self.open_high_findings,
            "missing_top_controls": [c.to_dict() for c in self.missing_top_controls],
        }


def _iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, tz=timezone.utc).isoformat()


def _parse_time(text: Any, source: str) -> datetime:
    try:
        moment = datetime.fromisoformat(str(text))
    except ValueError:
        raise DataError(f"{source}: created_at {text!r} is not an ISO 8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _tables(prefix: str) -> tuple[sa.MetaData, sa.Table, sa.Table]:
    md = sa.MetaData()
    systems = sa.Table(
        f"{prefix}prog_systems",
        md,
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("cadence_months", sa.Integer, nullable=False),
        sa.Column("threat_model", sa.Text, nullable=False),
        sa.Column("threat_model_path", sa.Text, nullable=True),
        sa.Column("added_at", sa.Float, nullable=False),
    )
    runs = sa.Table(
        f"{prefix}prog_assessments",
        md,
        sa.Column("run_id", sa.String(36), primary_key=True),
        sa.Column("system", sa.String(64), nullable=False, index=True),
        sa.Column("assessed_at", sa.String(40), nullable=False),
        sa.Column("recorded_at", sa.Float, nullable=False),
        sa.Column("report_path", sa.Text, nullable=False),
        sa.Column("report_sha256", sa.String(64), nullable=False),
        sa.Column("model_sha256", sa.String(64), nullable=True),
        sa.Column("passed", sa.Boolean, nullable=False),
        sa.Column("gates", sa.Text, nullable=False),
        sa.Column("metrics", sa.Text, nullable=False),
        sa.Column("high_findings", sa.Text, nullable=False),
        sa.Column("sections", sa.Text, nullable=False),
    )
    return md, systems, runs


class Inventory:
    """Systems, their threat models and their assessment history, in one database.

    Parameters
    ----------
    url
        ``sqlite:///path`` or ``postgresql://...``: the governance registry's database.
    prefix
        The gateway's table prefix (``mlw_``); programme tables add ``prog_`` to it.
    """

    def __init__(self, url: str, *, prefix: str = "mlw_") -> None:
        self.db = Database(url, prefix=prefix)
        self.metadata, self.systems, self.runs = _tables(prefix)
        try:
            with self.db.writer.begin() as conn:
                if not self.db.is_sqlite:
                    conn.execute(
                        sa.text("SELECT pg_advisory_xact_lock(hashtext(:n))"),
                        {"n": self.systems.name},
                    )
                self.metadata.create_all(conn, checkfirst=True)
        except sa.exc.SQLAlchemyError as exc:
            raise ConfigError(f"database {self.db.safe_url}: {exc.__class__.__name__}") from exc

    def close(self) -> None:
        """Release the database connections."""
        self.db.dispose()

    def drop(self) -> None:
        """Drop the programme tables (tests on a shared PostgreSQL clean up with it)."""
        self.metadata.drop_all(self.db.writer, checkfirst=True)

    # -- systems --------------------------------------------------------------------------
    def add_system(
        self, tm: ThreatModel, *, path: str | Path | None = None, replace: bool = False
    ) -> System:
        """Add (or with ``replace``, update) the system ``tm`` describes.

        Raises
        ------
        ConfigError
            The system exists and ``replace`` is false.
        """
        row = {
            "name": tm.system,
            "owner": tm.owner,
            "cadence_months": tm.cadence_months,
            "threat_model": tm.to_yaml(),
            "threat_model_path": str(Path(path).resolve()) if path is not None else None,
            "added_at": time.time(),
        }
        with self.db.writer.begin() as conn:
            exists = conn.execute(
                sa.select(self.systems.c.name).where(self.systems.c.name == tm.system)
            ).first()
            if exists and not replace:
                raise ConfigError(
                    f"system {tm.system!r} is already in the inventory; pass --replace to update it"
                )
            if exists:
                conn.execute(
                    self.systems.update().where(self.systems.c.name == tm.system).values(**row)
                )
            else:
                conn.execute(self.systems.insert().values(**row))
        return self.get(tm.system)

    def get(self, name: str) -> System:
        """The system ``name``.

        Raises
        ------
        ConfigError
            No such system.
        """
        with self.db.reader.connect() as conn:
            row = conn.execute(sa.select(self.systems).where(self.systems.c.name == name)).first()
        if row is None:
            raise ConfigError(
                f"no system {name!r} in the inventory; add it with `mlwarden program add-system`"
            )
        return _system(row)

    def list(self) -> builtins.list[System]:
        """Every system, by name."""
        with self.db.reader.connect() as conn:
            rows = conn.execute(sa.select(self.systems).order_by(self.systems.c.name)).all()
        return [_system(r) for r in rows]

    # -- assessments ----------------------------------------------------------------------
    def record(self, report_path: str | Path, *, system: str) -> AssessmentRun:
        """Record an ``mlwarden assess`` report against ``system``.

        Raises
        ------
        ConfigError
            No such system.
        DataError
            The file is not an mlwarden ``report.json``, or this report is already recorded.
        """
        self.get(system)
        path = Path(report_path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise DataError(f"report {str(path)!r} cannot be read ({exc.strerror})") from exc
        try:
            report = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"report {str(path)!r} is not JSON: {exc}") from exc
        if not isinstance(report, dict) or report.get("schema") != "mlwarden.report":
            raise DataError(
                f"report {str(path)!r} is not an mlwarden assessment "
                "(schema must be 'mlwarden.report'); pass the report.json `mlwarden assess` wrote"
            )
        digest = hashlib.sha256(raw).hexdigest()
        findings = [
            {k: f.get(k) for k in ("id", "title", "severity", "check")}
            for f in report.get("findings") or []
            if f.get("severity") in HIGH_SEVERITIES
        ]
        gates = [
            {k: g.get(k) for k in ("metric", "threshold", "value", "passed", "source")}
            for g in report.get("gates") or []
        ]
        row = {
            "run_id": str(uuid.uuid4()),
            "system": system,
            "assessed_at": _parse_time(report.get("created_at"), str(path)).isoformat(),
            "recorded_at": time.time(),
            "report_path": str(path.resolve()),
            "report_sha256": digest,
            "model_sha256": (report.get("model") or {}).get("sha256"),
            "passed": bool((report.get("summary") or {}).get("passed")) and bool(gates),
            "gates": json.dumps(gates),
            "metrics": json.dumps(key_metrics(report)),
            "high_findings": json.dumps(findings),
            "sections": json.dumps(sorted(report.get("sections") or {})),
        }
        with self.db.writer.begin() as conn:
            dup = conn.execute(
                sa.select(self.runs.c.run_id).where(
                    (self.runs.c.system == system) & (self.runs.c.report_sha256 == digest)
                )
            ).first()
            if dup is not None:
                raise DataError(
                    f"report {str(path)!r} (sha256:{digest}) is already recorded for {system!r}"
                )
            conn.execute(self.runs.insert().values(**row))
        return _run(row)

    def history(self, system: str) -> builtins.list[AssessmentRun]:
        """The system's recorded runs, oldest assessment first."""
        with self.db.reader.connect() as conn:
            rows = conn.execute(sa.select(self.runs).where(self.runs.c.system == system)).all()
        return sorted(
            (_run(r._mapping) for r in rows), key=lambda r: (r.assessed_at, r.recorded_at)
        )

    # -- status ---------------------------------------------------------------------------
    def status_of(self, system: System, *, now: datetime | None = None) -> SystemStatus:
        """Overdue assessment, open findings and the evidence-marked risk of ``system``."""
        now = now or datetime.now(timezone.utc)
        runs = self.history(system.name)
        last = runs[-1] if runs else None
        due = add_months(last.assessed_at, system.cadence_months) if last else None
        evidence = collect_evidence(
            system.threat_model, base_dir=system.base_dir, report=last.as_report() if last else None
        )
        return SystemStatus(
            system=system,
            last_run=last,
            due_at=due,
            overdue=due is None or now > due,
            risk=assess_risk(system.threat_model, evidence),
        )

    def status(self, *, now: datetime | None = None) -> builtins.list[SystemStatus]:
        """:meth:`status_of` every system, by name."""
        return [self.status_of(s, now=now) for s in self.list()]


def _system(row: Any) -> System:
    m = row._mapping
    tm = threat_model_from_dict(
        yaml.safe_load(m["threat_model"]), source=f"inventory threat model of {m['name']!r}"
    )
    return System(
        name=m["name"],
        owner=m["owner"],
        cadence_months=int(m["cadence_months"]),
        threat_model=tm,
        threat_model_path=m["threat_model_path"],
        added_at=float(m["added_at"]),
    )


def _run(m: Any) -> AssessmentRun:
    return AssessmentRun(
        run_id=m["run_id"],
        system=m["system"],
        assessed_at=datetime.fromisoformat(m["assessed_at"]),
        recorded_at=float(m["recorded_at"]),
        report_path=m["report_path"],
        report_sha256=m["report_sha256"],
        model_sha256=m["model_sha256"],
        passed=bool(m["passed"]),
        gates=json.loads(m["gates"]),
        metrics=json.loads(m["metrics"]),
        high_findings=json.loads(m["high_findings"]),
        sections=json.loads(m["sections"]),
    )
