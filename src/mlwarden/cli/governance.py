"""``mlwarden governance``: the data registry, lineage, audited access and retention.

The registry lives in the gateway's database (``--db``, default ``sqlite:///mlwarden.db``, or
``$MLWARDEN_DB``): ``mlwarden keys create`` makes the keys whose roles the dataset grants name,
and ``mlwarden audit verify --db`` the same URI checks every dataset access with the gateway's
own requests.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from mlwarden._io import atomic_write_text
from mlwarden.cli._console import console
from mlwarden.errors import ConfigError, DataError

if TYPE_CHECKING:
    from mlwarden.governance import Artifact, Registry, Run

__all__ = ["REGISTRY_OPTION", "Recorder", "app", "scan_pii"]

EXIT_CHANGED = 3

app = typer.Typer(
    help="Data governance: register datasets and models, lineage, audited access, retention.",
    no_args_is_help=True,
)
lineage_app = typer.Typer(help="Show and verify lineage.", no_args_is_help=True)
app.add_typer(lineage_app, name="lineage")

_DB_HELP = "Registry database: sqlite:///PATH or postgresql://USER@HOST/DB (the gateway's)."
_DB = typer.Option("sqlite:///mlwarden.db", "--db", envvar="MLWARDEN_DB", help=_DB_HELP)
_PREFIX = typer.Option("mlw_", "--table-prefix", help="The gateway's table name prefix.")


@contextmanager
def _registry(db: str, prefix: str) -> Iterator[Registry]:
    """The registry, closed (its connections released) when the command ends."""
    from mlwarden.governance import Registry

    registry = Registry(db, prefix=prefix)
    try:
        yield registry
    finally:
        registry.close()


REGISTRY_OPTION = typer.Option(
    None,
    "--registry",
    envvar="MLWARDEN_REGISTRY",
    help="Record the output and its lineage in this governance registry "
    "(sqlite:///PATH or postgresql://...); off unless given.",
)


class Recorder:
    """Records what a command made in the registry at ``url``; does nothing when it is ``None``.

    Made before the command works, so a bad registry URI fails before a long training run, and
    used once the output is written (:mod:`mlwarden.governance.provenance` says what is linked).
    """

    def __init__(self, url: str | None, *, prefix: str = "mlw_") -> None:
        self.url, self.prefix = url, prefix
        if url:
            with _registry(url, prefix):  # creates the tables; a bad URI is a ConfigError now
                pass

    def model(self, path: Path, *, data_files: list[str | None]) -> None:
        """Register the model at ``path``, linked to its sidecar's digests and ``data_files``."""
        if not self.url:
            return
        from mlwarden.governance.provenance import record_trained_model

        with _registry(self.url, self.prefix) as reg:
            artifact, run = record_trained_model(reg, path, data_files=data_files)
            _print_model(reg, artifact, run)

    def dataset(
        self, path: Path, *, sources: list[str], digests: list[str], command: str, label_column: str
    ) -> None:
        """Record ``path`` as made from the data specs ``sources`` (whose data ``digests`` these are)."""
        if not self.url:
            return
        from mlwarden import __version__
        from mlwarden.governance.provenance import input_digests, record_derived_dataset

        with _registry(self.url, self.prefix) as reg:
            artifact, run = record_derived_dataset(
                reg,
                path,
                inputs=[*input_digests(sources), *digests],
                command=command,
                version=f"mlwarden {__version__}",
                label_column=label_column,
            )
        if artifact is None:
            console.print(
                f"recorded transform {run.run_id} -> {escape(str(path))} (its source is not a "
                "registered dataset: register it with a data card to name it)"
            )
        else:
            console.print(
                f"registered dataset [bold]{escape(artifact.name)}[/] (card of its source), "
                f"transform {run.run_id}"
            )


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "never"
    return datetime.fromtimestamp(stamp, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _data_digest(path: Path, label_column: str) -> str | None:
    """The :meth:`Dataset.digest` model sidecars record, when mlwarden can load the file."""
    if path.suffix not in (".npz", ".csv"):
        return None
    from mlwarden.data import load_dataset

    try:
        return load_dataset(str(path), label_column=label_column).digest()
    except (DataError, ConfigError):
        return None


@app.command("register")
def register(
    data: Path = typer.Argument(..., help="The dataset's file or directory."),
    name: str = typer.Option(..., "--name", help="Registry name."),
    card: Path = typer.Option(
        ...,
        "--card",
        help="Data card (YAML/JSON): source, "
        "collection_method, licence, owner, purpose, sensitivity, retention.",
    ),
    label_column: str = typer.Option("label", "--label-column", help="CSV label column."),
    replace: bool = typer.Option(False, "--replace", help="Re-register an existing name."),
    db: str = _DB,
    table_prefix: str = _PREFIX,
) -> None:
    """Register a dataset with its data card and content digest."""
    from mlwarden.governance import load_card

    with _registry(db, table_prefix) as reg:
        artifact = reg.register_dataset(
            name,
            data,
            load_card(card),
            data_sha256=_data_digest(data, label_column),
            replace=replace,
        )
    console.print(f"registered dataset [bold]{escape(name)}[/] sha256:{artifact.file_sha256}")
    if artifact.data_sha256:
        console.print(f"  data digest (model sidecars): {artifact.data_sha256}")


@app.command("register-model")
def register_model(
    model: Path = typer.Argument(..., help="Model file; its .mlwarden.json sidecar is read."),
    name: str = typer.Option(..., "--name", help="Registry name."),
    replace: bool = typer.Option(False, "--replace", help="Re-register an existing name."),
    db: str = _DB,
    table_prefix: str = _PREFIX,
) -> None:
    """Register a model; its sidecar's training-data digests link it to registered datasets."""
    from mlwarden.models.loading import read_sidecar

    with _registry(db, table_prefix) as reg:
        artifact, run = reg.register_model(name, model, read_sidecar(model), replace=replace)
        _print_model(reg, artifact, run)


def _print_model(reg: Registry, artifact: Artifact, run: Run | None) -> None:
    console.print(
        f"registered model [bold]{escape(artifact.name)}[/] sha256:{artifact.file_sha256}"
    )
    if run is None:
        console.print("[yellow]its sidecar records no training data digest: no lineage link[/]")
    else:
        for digest in run.inputs:
            found = ", ".join(a.name for a in reg.by_digest(digest)) or "(not registered yet)"
            console.print(f"  trained on {digest[:16]}: {escape(found)}")


@app.command("transform")
def transform(
    inputs: list[str] = typer.Option(..., "--input", "-i", help="Input dataset (repeatable)."),
    outputs: list[str] = typer.Option(..., "--output", "-o", help="Output dataset (repeatable)."),
    command: str = typer.Option(..., "--command", help="The command that made the outputs."),
    version: str = typer.Option(..., "--version", help="The command's version."),
    db: str = _DB,
    table_prefix: str = _PREFIX,
) -> None:
    """Record a transformation between registered datasets (input digests -> output digests)."""
    with _registry(db, table_prefix) as reg:
        run = reg.record_transform(inputs, outputs, command, version)
    console.print(f"recorded transform {run.run_id}: {', '.join(inputs)} -> {', '.join(outputs)}")


@app.command("list")
def list_artifacts(db: str = _DB, table_prefix: str = _PREFIX) -> None:
    """List registered datasets and models."""
    table = Table("name", "kind", "sha256", "owner", "sensitivity", "expires", "status")
    with _registry(db, table_prefix) as reg:
        artifacts = reg.list()
    for a in artifacts:
        table.add_row(
            a.name,
            a.kind,
            a.file_sha256[:16],
            a.card.owner if a.card else "",
            a.card.sensitivity.value if a.card else "",
            _when(a.expires_at()) if a.card else "",
            a.status,
        )
    console.print(table)


@app.command("grant")
def grant(
    dataset: str = typer.Argument(..., help="Registered dataset."),
    role: str = typer.Option(..., "--role", help="Gateway role (mlwarden keys create --role)."),
    level: str = typer.Option("read", "--level", help="read, write or admin."),
    db: str = _DB,
    table_prefix: str = _PREFIX,
) -> None:
    """Grant a role read, write or admin access to a dataset (audited)."""
    with _registry(db, table_prefix) as reg:
        reg.grant(dataset, role, level)
    console.print(f"granted {escape(role)} {level} on {escape(dataset)}")


@app.command("open")
def open_command(
    dataset: str = typer.Argument(..., help="Registered dataset."),
    key_env: str = typer.Option(
        "MLWARDEN_API_KEY", "--key-env", help="Environment variable holding the API key."
    ),
    level: str = typer.Option("read", "--level", help="read, write or admin."),
    db: str = _DB,
    table_prefix: str = _PREFIX,
) -> None:
    """Check a key's grant on a dataset, audit it, and print the verified path (exit 2 if denied)."""
    from mlwarden.governance import open_dataset

    with _registry(db, table_prefix) as reg:
        handle = open_dataset(dataset, key=os.environ.get(key_env), registry=reg, level=level)
    typer.echo(str(handle.path))


@lineage_app.command("show")
def lineage_show(
    name: str = typer.Argument(..., help="A registered model or dataset."),
    html: Path | None = typer.Option(None, "--html", help="Also draw the graph in this HTML file."),
    db: str = _DB,
    table_prefix: str = _PREFIX,
) -> None:
    """Print where NAME came from and what was derived from it."""
    from mlwarden.governance.lineage import render_html, render_text

    with _registry(db, table_prefix) as reg:
        typer.echo(render_text(reg, name))
        if html is not None:
            atomic_write_text(html, render_html(reg, name))
            console.print(f"wrote {html}")


@lineage_app.command("verify")
def lineage_verify(db: str = _DB, table_prefix: str = _PREFIX) -> None:
    """Re-hash every registered file; exit 3 naming what changed or disappeared."""
    from mlwarden.governance import verify

    with _registry(db, table_prefix) as reg:
        result = verify(reg)
    for name in result.ok:
        console.print(f"[green]ok[/] {escape(name)}")
    for name, recorded, current in result.changed:
        console.print(f"[bold red]changed[/] {escape(name)}: {recorded[:16]} -> {current[:16]}")
    for name in result.missing:
        console.print(f"[bold red]missing[/] {escape(name)}")
    for name in result.skipped:
        console.print(f"[dim]skipped {escape(name)} (deleted or quarantined)[/]")
    if not result.passed:
        raise typer.Exit(code=EXIT_CHANGED)


@lineage_app.command("export")
def lineage_export(
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Write the events here (JSON lines); default: print them."
    ),
    namespace: str = typer.Option("mlwarden", "--namespace", help="OpenLineage job namespace."),
    db: str = _DB,
    table_prefix: str = _PREFIX,
) -> None:
    """Export artefacts and runs as OpenLineage events (Marquez, DataHub and others ingest them)."""
    from openlineage.client.serde import Serde
    from openlineage.client.transport import Transport

    from mlwarden.governance.openlineage_export import emit_openlineage, export_openlineage

    if out is not None:
        with _registry(db, table_prefix) as reg:
            count = export_openlineage(reg, out, namespace=namespace)
        console.print(f"wrote {count} OpenLineage events to {escape(str(out))}")
        return

    class _Stdout(Transport):  # type: ignore[misc]
        """One event per line on stdout (the console transport only logs)."""

        kind = "mlwarden-stdout"

        def emit(self, event: object) -> None:
            typer.echo(Serde.to_json(event))

    with _registry(db, table_prefix) as reg:
        emit_openlineage(reg, _Stdout(), namespace=namespace)


@app.command("retention")
def retention(
    apply: bool = typer.Option(False, "--apply/--dry-run", help="Delete, or only list (default)."),
    quarantine: Path | None = typer.Option(
        None, "--quarantine", help="Move expired data here instead of deleting it."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    db: str = _DB,
    table_prefix: str = _PREFIX,
) -> None:
    """List (--dry-run) or delete/quarantine (--apply) datasets past their retention period."""
    from mlwarden.governance import apply_retention, expired_datasets

    with _registry(db, table_prefix) as reg:
        items = apply_retention(reg, quarantine=quarantine) if apply else expired_datasets(reg)
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "dataset": i.dataset.name,
                        "expired_at": i.expired_at,
                        "action": i.action,
                        "where": i.where,
                        "models_trained_on_it": list(i.models),
                        "datasets_derived_from_it": list(i.derived),
                    }
                    for i in items
                ],
                indent=2,
            )
        )
        return
    if not items:
        console.print("no dataset is past its retention period")
    for i in items:
        models = ", ".join(i.models) or "none"
        derived = ", ".join(i.derived) or "none"
        console.print(
            f"{i.action}: {escape(i.dataset.name)} (expired {_when(i.expired_at)}); "
            f"models trained on it: {escape(models)}; datasets derived from it (kept): "
            f"{escape(derived)}"
        )


_SCAN_FORMATS = ("table", "json", "sarif")


def scan_pii(
    data: Path = typer.Argument(
        ..., help="CSV, JSON lines, .npz (string arrays), text, or a folder."
    ),
    output_format: str = typer.Option("table", "--format", "-f", help="table, json or sarif."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write json/sarif here."),
    fail_on: str | None = typer.Option(
        None, "--fail-on", help="Exit 3 when a finding is at least this severe (CI gate)."
    ),
    no_secrets: bool = typer.Option(False, "--no-secrets", help="Skip credential detection."),
    names: bool = typer.Option(
        False,
        "--names",
        help="Also report person names found in Faker-derived name lists (no NER model: names "
        "outside the lists are missed; see docs/governance.md).",
    ),
) -> None:
    """Find personal data and credentials per field; suggest drop, mask or tokenise."""
    from mlwarden import __version__
    from mlwarden.governance.pii import PiiScanner, scan_path
    from mlwarden.report.findings import Severity

    if output_format not in _SCAN_FORMATS:
        raise ConfigError(f"--format {output_format!r} must be one of {', '.join(_SCAN_FORMATS)}")
    try:
        gate = Severity(fail_on.lower()) if fail_on else None
    except ValueError:
        raise ConfigError(
            f"--fail-on {fail_on!r} must be one of {', '.join(s.value for s in Severity)}"
        ) from None
    result = scan_path(data, PiiScanner(secrets=not no_secrets, names=names))
    # what this scan could not have found: an empty result must not read as "no personal data"
    not_checked = [] if names else ["PERSON (names: pass --names; no NER model, see docs)"]
    if no_secrets:
        not_checked.append("credentials (--no-secrets)")
    if output_format == "table":
        table = Table("field", "entity", "count", "rows", "examples (masked)", "action")
        for f in result.findings:
            table.add_row(
                f.field,
                f.entity,
                str(f.count),
                str(f.rows),
                escape(", ".join(f.examples)),
                f.action,
            )
        console.print(table)
        for problem in result.unreadable:
            console.print(f"[yellow]not scanned:[/] {escape(problem)}")
        for entity in not_checked:
            console.print(f"[yellow]not checked:[/] {escape(entity)}")
        text = None
    elif output_format == "json":
        text = json.dumps(
            {
                **result.to_dict(),
                "not_checked": not_checked,
                "report_findings": [f.to_dict() for f in result.to_findings()],
            },
            indent=2,
        )
    else:
        text = json.dumps(result.to_sarif(__version__), indent=2)
    if text is not None:
        if output is not None:
            atomic_write_text(output, text + "\n")
            console.print(f"wrote {output}")
        else:
            typer.echo(text)
    worst = result.worst()
    if gate is not None and worst is not None and worst.rank >= gate.rank:
        raise typer.Exit(code=EXIT_CHANGED)


app.command("scan-pii")(scan_pii)
