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


@app.command("run")
def run(
    systems: list[str] = typer.Option(
        [],
        "--systems",
        help="Assess these systems (repeatable, or comma-separated); default: every due one.",
    ),
    out: Path = typer.Option(
        Path("program-runs"), "--out", help="Reports go to OUT/SYSTEM/<UTC time of the run>/."
    ),
    workers: int = typer.Option(
        2, "--workers", help="Worker processes of the local Dask cluster (one thread each)."
    ),
    scheduler: str | None = typer.Option(
        None,
        "--scheduler",
        help="Run on an existing Dask cluster, e.g. tcp://HOST:8786 (its workers need mlwarden "
        "and the threat models' files; see docs/program.md).",
    ),
    serial: bool = typer.Option(
        False, "--serial", help="Run the assessments one by one in this process, without Dask."
    ),
    db: str = _DB,
    table_prefix: str = _PREFIX,
    as_json: bool = typer.Option(False, "--json", help="Print JSON results instead of a table."),
) -> None:
    """Assess every due system (or those named) on Dask and record each report.

    Exit 3 when a system's assessment failed to run or failed its gates; the other systems
    are assessed and recorded all the same.
    """
    from datetime import datetime, timezone

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from mlwarden.errors import ConfigError
    from mlwarden.program.sweep import (
        SweepResult,
        dask_client,
        due_systems,
        run_sweep,
        task_for,
    )

    if serial and scheduler is not None:
        raise ConfigError("--serial and --scheduler exclude each other; give one")
    names = [n.strip() for item in systems for n in item.split(",") if n.strip()]
    inventory = _inventory(db, table_prefix)
    try:
        chosen = due_systems(inventory, names or None)
        if not chosen:
            console.print("no system is due for assessment")
            return
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        tasks = [task_for(s, out, stamp=stamp) for s in chosen]  # every plan checked first
        with Progress(
            TextColumn("{task.fields[system]}", style="bold"),
            BarColumn(bar_width=12),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            transient=as_json,
        ) as bar:
            rows = {
                t.system: bar.add_task("queued", total=1, system=escape(t.system)) for t in tasks
            }

            def started(system: str) -> None:  # serially: running now; on Dask: queued there
                bar.update(rows[system], description="running" if serial else "submitted")

            def done(result: SweepResult) -> None:
                if not result.ok:
                    text = f"[bold red]error[/]: {escape(result.error or '')}"
                elif result.passed:
                    text = "[green]passed[/], recorded"
                else:
                    text = "[bold red]gates failed[/], recorded"
                bar.update(rows[result.system], description=text, completed=1)

            if serial:
                results = run_sweep(tasks, inventory=inventory, on_start=started, on_done=done)
            else:
                with dask_client(scheduler, n_workers=workers) as client:
                    results = run_sweep(
                        tasks, client=client, inventory=inventory, on_start=started, on_done=done
                    )
    finally:
        inventory.close()
    if as_json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        table = Table(title="programme run")
        for column in ("system", "result", "robust accuracy", "report"):
            table.add_column(column)
        for r in results:
            verdict = (
                f"[bold red]error[/]: {escape(r.error or '')}"
                if not r.ok
                else ("[green]passed[/]" if r.passed else "[bold red]gates failed[/]")
            )
            robust = r.metrics.get("robust_accuracy")
            table.add_row(
                escape(r.system),
                verdict,
                "-" if robust is None else f"{robust:.3f}",
                escape(r.report_path or "-"),
            )
        console.print(table)
    if any(not r.ok or not r.passed for r in results):
        raise typer.Exit(EXIT_ATTENTION)
