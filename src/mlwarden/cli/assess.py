"""``mlwarden assess``: red-team a model and write JSON, SARIF and HTML reports."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.markup import escape
from rich.table import Table

from mlwarden.cli._console import console, progress
from mlwarden.cli.options import LABEL_COLUMN, load_like
from mlwarden.errors import ConfigError

if TYPE_CHECKING:
    from mlwarden.program.inventory import Inventory

_T = TypeVar("_T")

__all__ = ["assess"]


def assess(
    model: str = typer.Option(
        ..., "--model", "-m", help="Model file (.pt2, .pt, .skops, .onnx) or zoo:NAME."
    ),
    data: str = typer.Option(
        ..., "--data", "-d", help="Data: builtin:digits, builtin:breast-cancer, .npz or .csv."
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Directory for report.json, report.sarif, report.html."
    ),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="Assessment YAML (see README)."
    ),
    fail_under: list[str] = typer.Option(
        [], "--fail-under", help="Gate METRIC=THRESHOLD, e.g. robust_accuracy@0.1=0.6 (repeatable)."
    ),
    label_column: str = LABEL_COLUMN,
    max_samples: int | None = typer.Option(
        None, "--max-samples", help="Override max_samples of the config."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Override the config's seed."),
    profile: str | None = typer.Option(
        None,
        "--profile",
        help="standard (AutoAttack-grade evasion suite, the default), quick (CI), or full "
        "(the standard suite and every other check that applies: certification, detectors, "
        "membership inference, extraction, poisoning with --train-data, a scan of the model "
        "file); replaces the config's profile or attack list.",
    ),
    require_signature: Path | None = typer.Option(
        None,
        "--require-signature",
        help="PEM public key: refuse a model (and --artifacts) whose signature does not verify.",
    ),
    artifacts: Path | None = typer.Option(
        None, "--artifacts", help="Folder the model ships in: adds a supply-chain section."
    ),
    advisories: Path | None = typer.Option(
        None, "--advisories", help="Local OSV advisories for the --artifacts dependency audit."
    ),
    model_name: str | None = typer.Option(
        None,
        "--model-name",
        help="The served model's name when --model is a gateway URL (http://HOST:PORT): the "
        "model is then assessed black-box over HTTP (HopSkipJump when it answers labels only).",
    ),
    api_key: str | None = typer.Option(
        None,
        "--api-key",
        envvar="MLWARDEN_API_KEY",
        help="API key for a gateway URL (or $MLWARDEN_API_KEY); never written anywhere.",
        show_default=False,
    ),
    train_data: str | None = typer.Option(
        None,
        "--train-data",
        help="Training data (same formats as --data): detectors are fitted on it, and it is "
        "inspected for poisoning (set poisoning: false in the config to skip); built-in data "
        "uses its train split for detectors.",
    ),
    system: str | None = typer.Option(
        None,
        "--system",
        help="Inventory system this run assesses: the report's digest, gate results and key "
        "metrics are recorded against it (see `mlwarden program`).",
    ),
    db: str = typer.Option(
        "sqlite:///mlwarden.db",
        "--db",
        envvar="MLWARDEN_DB",
        help="Programme inventory for --system: sqlite:///PATH or postgresql://USER@HOST/DB.",
    ),
    table_prefix: str = typer.Option(
        "mlw_", "--table-prefix", help="The inventory's table name prefix (with --system)."
    ),
) -> None:
    """Assess a model's robustness and write a report; exit 3 when a policy gate fails."""
    from mlwarden.assess import assess as run_assessment
    from mlwarden.assess import load_config, parse_gate
    from mlwarden.assess.runner import count_steps
    from mlwarden.data import load_dataset
    from mlwarden.models import load_model
    from mlwarden.report import write_reports
    from mlwarden.supplychain.signing import signature_verifier

    settings = load_config(config)
    overrides: dict[str, object] = {
        key: value
        for key, value in (("max_samples", max_samples), ("seed", seed), ("profile", profile))
        if value is not None
    }
    if overrides:
        if "profile" in overrides and settings.attacks is not None:
            overrides["attacks"] = None  # --profile replaces the config's attack list
        settings = settings.updated(**overrides)
    gates = [parse_gate(g) for g in fail_under]
    if gates:
        settings = settings.with_gates(gates)
    _check_out(out)
    if system is not None:  # an unknown system or database fails now, not after the attacks
        _with_inventory(db, table_prefix, lambda inventory: inventory.get(system))

    dataset = load_dataset(
        data,
        label_column=label_column,
        clip_range=tuple(settings.clip_range) if settings.clip_range else None,  # type: ignore[arg-type]
    )
    if model.startswith(("http://", "https://")):
        classifier = served_model(model, model_name, api_key)
    else:
        classifier = load_model(
            model,
            input_shape=dataset.input_shape,
            clip_range=dataset.clip_range,
            verify=None if require_signature is None else signature_verifier(require_signature),
        )
    supply_chain = None
    if artifacts is not None:
        from mlwarden.supplychain.findings import supply_chain_findings

        if not artifacts.exists():
            raise ConfigError(f"--artifacts {artifacts} does not exist")
        supply_chain = supply_chain_findings(
            artifacts, public_key=require_signature, advisories=advisories
        )
    if settings.clip_range is None and classifier.clip_range != dataset.clip_range:
        raise ConfigError(
            f"the model's valid input range {classifier.clip_range} differs from the data's "
            f"{dataset.clip_range}; set clip_range in the config"
        )
    artifact = _model_file(model)
    with progress() as bar:
        task = bar.add_task(
            "assessing",
            total=count_steps(
                classifier,
                settings,
                train_data_given=train_data is not None,
                data=dataset,
                artifact=artifact,
                artifacts_scanned=supply_chain is not None,
            ),
        )
        first = True

        def on_step(description: str) -> None:
            nonlocal first
            bar.update(task, description=description, advance=0 if first else 1)
            first = False

        clean_train = (
            # the model's training data: a built-in name means its train split
            load_like(train_data, dataset, label_column=label_column, split="train")
            if train_data is not None
            else None
        )
        report = run_assessment(
            classifier,
            dataset,
            settings,
            train_data=clean_train,
            on_step=on_step,
            extra_findings=supply_chain,
            artifact=artifact,
        )
        bar.update(task, description="done", completed=bar.tasks[0].total)
    if hasattr(classifier, "victim"):  # a served model: close its HTTP connections
        classifier.victim.close()
    paths = write_reports(report, out)
    _print_summary(report)
    console.print(
        f"Report: [bold]{paths['html']}[/]  (JSON: {paths['json']}, SARIF: {paths['sarif']})"
    )
    if system is not None:
        run = _with_inventory(
            db, table_prefix, lambda inventory: inventory.record(paths["json"], system=system)
        )
        console.print(
            f"recorded against system [bold]{escape(system)}[/] "
            f"(gates {'passed' if run.passed else 'failed'}, sha256:{run.report_sha256})"
        )
    if not report.passed:
        raise typer.Exit(code=3)


def _model_file(spec: str) -> Path | None:
    """The file a model spec loads from: the path itself, or a zoo model's cache entry."""
    if spec.startswith("zoo:"):
        from mlwarden.models.zoo import zoo_path

        path = zoo_path(spec.removeprefix("zoo:"))
    else:
        path = Path(spec)
    return path if path.is_file() else None


def _with_inventory(db: str, prefix: str, action: Callable[[Inventory], _T]) -> _T:
    """Open the programme inventory, apply ``action`` and close it whatever happens."""
    from mlwarden.program.inventory import Inventory

    inventory = Inventory(db, prefix=prefix)
    try:
        return action(inventory)
    finally:
        inventory.close()


def _check_out(out: Path) -> None:
    """Fail before the attacks run, not after, when the reports could not be written."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"--out {out}: cannot create a directory there, {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: {existing} is not writable")


def _print_summary(report: object) -> None:
    from mlwarden.report import Report

    assert isinstance(report, Report)
    section = report.sections["evasion"]
    table = Table(title=f"Accuracy under attack ({section['norm']})")
    table.add_column("attack")
    for eps in section["epsilons"]:
        table.add_column(f"ε={eps:g}", justify="right")
    table.add_row("clean", *[f"{section['clean_accuracy']:.1%}"] * len(section["epsilons"]))
    for name, rows in section["curves"].items():
        table.add_row(name, *[f"{r['robust_accuracy']:.1%}" for r in rows])
    table.add_row(
        "[bold]worst case[/]",
        *[f"[bold]{w['robust_accuracy']:.1%}[/]" for w in section["worst_case_robust_accuracy"]],
    )
    console.print(table)
    for reason in section["skipped"]:
        console.print(f"[yellow]skipped:[/] {reason}")
    for finding in report.findings:
        if finding.check == "masking":
            console.print(f"[bold red]masking:[/] {escape(finding.title)}")
    _print_defenses(report.sections)
    for gate in report.gates:
        value = "missing" if gate.value is None else f"{gate.value:.3f}"
        mark = "[green]pass[/]" if gate.passed else "[bold red]FAIL[/]"
        console.print(f"gate {gate.metric} ≥ {gate.threshold}: {value} {mark}")
        if gate.reason:
            console.print(f"  [red]{escape(gate.reason)}[/]")
    console.print(f"highest severity: {report.max_severity.value}")


def _print_defenses(sections: dict[str, object]) -> None:
    """One table each for certification and detection, when they ran."""
    certification = sections.get("certification")
    if isinstance(certification, dict):
        table = Table(title=f"Certified accuracy (L2, σ={certification['sigma']:g})")
        for row in certification["table"]:
            table.add_column(f"r={row['radius']:g}", justify="right")
        table.add_row(*[f"{row['certified_accuracy']:.1%}" for row in certification["table"]])
        console.print(table)
    detection = sections.get("detection")
    if isinstance(detection, dict):
        table = Table(title=f"Detectors at ε={detection['eps']:g}, {detection['fpr']:.0%} FPR")
        table.add_column("detector")
        for name in detection["attacks"]:
            table.add_column(f"{name} AUC / detected", justify="right")
        table.add_column("adaptive: undetected", justify="right")
        for row in detection["detectors"]:
            cells = []
            for name in detection["attacks"]:
                stats = row["attacks"][name]
                auc = "n/a" if stats["roc_auc"] is None else f"{stats['roc_auc']:.3f}"
                rate = (
                    "n/a" if stats["detection_rate"] is None else f"{stats['detection_rate']:.1%}"
                )
                cells.append(f"{auc} / {rate}")
            adaptive = row["adaptive"]
            verdict = "n/a" if adaptive is None else f"{adaptive['evasion_rate']:.1%}"
            if row["bypassed"]:
                verdict = f"[bold red]{verdict} bypassed[/]"
            table.add_row(row["name"], *cells, verdict)
        console.print(table)


def served_model(url: str, model_name: str | None, api_key: str | None, client: Any = None) -> Any:
    """A model behind ``mlwarden serve`` as a black-box classifier (every call a query)."""
    from mlwarden.attacks.extraction import HttpVictim, VictimClassifier

    if not model_name:
        raise ConfigError("--model-name is required when --model is a URL")
    return VictimClassifier(HttpVictim(url, model_name, api_key, client=client))
