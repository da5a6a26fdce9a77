"""``mlwarden threat-model`` and ``mlwarden program``: the ML security programme.

``threat-model init|check|show`` write, validate and score one system's threat model;
``program add-system|record|status|report`` keep the inventory of systems and their assessment
history in the governance registry's database (``--db``, default ``sqlite:///mlwarden.db``, or
``$MLWARDEN_DB``) and report on it by NIST AI RMF function.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from mlwarden.cli._console import console

if TYPE_CHECKING:
    from mlwarden.program.inventory import Inventory

__all__ = ["EXIT_ATTENTION", "app", "threat_model_app"]

#: ``program status --check`` exits with this when a system needs attention.
EXIT_ATTENTION = 3

app = typer.Typer(
    help="The ML security programme: inventory, assessment history, status and reports.",
    no_args_is_help=True,
)
threat_model_app = typer.Typer(
    help="Write, validate and score a system's threat model.", no_args_is_help=True
)

_DB = typer.Option(
    "sqlite:///mlwarden.db",
    "--db",
    envvar="MLWARDEN_DB",
    help="Inventory database: sqlite:///PATH or postgresql://USER@HOST/DB (the registry's).",
)
_PREFIX = typer.Option("mlw_", "--table-prefix", help="The gateway's table name prefix.")
_RATING_STYLE = {"critical": "bold white on red", "high": "red", "medium": "yellow", "low": "green"}
_STATUS_STYLE = {"done": "green", "missing": "bold red", "manual": "dim"}


def _inventory(db: str, prefix: str) -> Inventory:
    from mlwarden.program.inventory import Inventory

    return Inventory(db, prefix=prefix)


# -- threat-model ---------------------------------------------------------------------------
@threat_model_app.command("init")
def init(
    system: str = typer.Argument(..., help="System name (letters, digits, '.', '_', '-')."),
    out: Path | None = typer.Option(
        None, "--out", help="File to write (default SYSTEM.threat-model.yaml)."
    ),
    owner: str = typer.Option("unassigned", "--owner", help="Accountable team or person."),
) -> None:
    """Write a threat-model YAML for SYSTEM to fill in (never overwrites one)."""
    from mlwarden.program.threat_model import write_template

    path = write_template(out or Path(f"{system}.threat-model.yaml"), system, owner=owner)
    console.print(
        f"wrote [bold]{escape(str(path))}[/]: fill it in, then `mlwarden threat-model show {escape(str(path))}`"
    )


@threat_model_app.command("check")
def check(path: Path = typer.Argument(..., help="Threat-model YAML.")) -> None:
    """Validate a threat model; exit 2 naming every bad value."""
    from mlwarden.program.threat_model import load_threat_model

    tm = load_threat_model(path)
    console.print(f"[green]valid[/]: threat model of [bold]{escape(tm.system)}[/]")


@threat_model_app.command("show")
def show(
    path: Path = typer.Argument(..., help="Threat-model YAML."),
    report: Path | None = typer.Option(
        None, "--report", help="A report.json of the system, as evidence."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Derive ATLAS threats, score them and print the ranked control plan with its evidence."""
    from mlwarden.errors import DataError
    from mlwarden.program.evidence import collect_evidence
    from mlwarden.program.risk import assess_risk
    from mlwarden.program.threat_model import load_threat_model

    tm = load_threat_model(path)
    doc = None
    if report is not None:
        try:
            doc = json.loads(report.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"report {str(report)!r} cannot be read as JSON ({exc})") from exc
    risk = assess_risk(tm, collect_evidence(tm, base_dir=path.resolve().parent, report=doc))
    if as_json:
        print(json.dumps(risk.to_dict(), indent=2))
        return
    threats = Table(title=f"threats to {tm.system} (ATLAS {risk.atlas_version})")
    for column in ("threat", "ATLAS", "L", "I", "score"):
        threats.add_column(column)
    for t in risk.threats:
        threats.add_row(
            escape(t.title)
            + "\n[dim]"
            + escape("; ".join(t.likelihood_reasons + t.impact_reasons))
            + "[/]",
            "\n".join(i for i, _ in t.techniques),
            str(t.likelihood),
            str(t.impact),
            f"[{_RATING_STYLE[t.rating]}]{t.score} {t.rating}[/]",
        )
    console.print(threats)
    plan = Table(title="control plan")
    for column in ("priority", "control", "implemented by", "status"):
        plan.add_column(column)
    for c in risk.controls:
        plan.add_row(
            str(c.priority),
            f"{c.id} {escape(c.title)}",
            escape(c.implemented_by),
            f"[{_STATUS_STYLE[c.status]}]{c.status}[/]\n[dim]{escape(c.evidence)}[/]",
        )
    console.print(plan)


# -- program --------------------------------------------------------------------------------
@app.command("add-system")
def add_system(
    threat_model: Path = typer.Argument(..., help="The system's threat-model YAML."),
    replace: bool = typer.Option(False, "--replace", help="Update a system already listed."),
    db: str = _DB,
    table_prefix: str = _PREFIX,
) -> None:
    """Add a system (its threat model, owner, models, datasets, cadence) to the inventory."""
    from mlwarden.program.threat_model import load_threat_model

    tm = load_threat_model(threat_model)
    system = _inventory(db, table_prefix).add_system(tm, path=threat_model, replace=replace)
    console.print(
        f"added system [bold]{escape(system.name)}[/] (owner {escape(system.owner)}, "
        f"assessed every {system.cadence_months} months)"
    )


@app.command("record")
def record(
    report: Path = typer.Argument(..., help="A report.json written by `mlwarden assess`."),
    system: str = typer.Option(..., "--system", help="The inventory system it assessed."),
    db: str = _DB,
    table_prefix: str = _PREFIX,
) -> None:
    """Record an assessment against its system (report digest, gate results, key metrics)."""
    run = _inventory(db, table_prefix).record(report, system=system)
    verdict = "[green]passed[/]" if run.passed else "[bold red]failed[/]"
    console.print(
        f"recorded assessment of [bold]{escape(system)}[/] ({run.assessed_at.date()}): gates "
        f"{verdict}, sha256:{run.report_sha256}"
    )


@app.command("status")
def status(
    db: str = _DB,
    table_prefix: str = _PREFIX,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    check_: bool = typer.Option(
        False, "--check", help=f"Exit {EXIT_ATTENTION} when any system needs attention."
    ),
) -> None:
    """Overdue assessments, open high-severity findings, missing controls for top risks."""
    statuses = _inventory(db, table_prefix).status()
    if as_json:
        print(json.dumps([s.to_dict() for s in statuses], indent=2))
    elif not statuses:
        console.print(
            "no systems yet: `mlwarden threat-model init NAME`, then `mlwarden program add-system`"
        )
    else:
        table = Table(title="ML security programme")
        for column in ("system", "next assessment", "open high findings", "missing for top risks"):
            table.add_column(column)
        for s in statuses:
            due = "never assessed" if s.due_at is None else str(s.due_at.date())
            table.add_row(
                escape(s.system.name),
                f"[bold red]{due} (overdue)[/]" if s.overdue else due,
                "\n".join(escape(f"{f['severity']}: {f['id']}") for f in s.open_high_findings)
                or "-",
                "\n".join(escape(f"{c.id} {c.title}") for c in s.missing_top_controls) or "-",
            )
        console.print(table)
    if check_ and any(s.needs_attention for s in statuses):
        raise typer.Exit(EXIT_ATTENTION)


@app.command("report")
def report_cmd(
    out: Path = typer.Option(Path("program-report"), "--out", help="Folder to write."),
    db: str = _DB,
    table_prefix: str = _PREFIX,
) -> None:
    """Write one HTML page per system and a portfolio page (NIST AI RMF), JSON beside them."""
    from mlwarden.program.report import write_program_report

    written = write_program_report(_inventory(db, table_prefix), out)
    console.print(
        f"wrote [bold]{escape(str(written['index']))}[/] and {len(written) - 2} system page(s)"
    )
