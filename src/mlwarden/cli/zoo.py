"""``mlwarden zoo``: train and list the reference models."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from mlwarden.cli._console import console
from mlwarden.cli.governance import REGISTRY_OPTION, Recorder

__all__ = ["app"]

app = typer.Typer(
    help="Reference models trained deterministically on built-in data.", no_args_is_help=True
)


@app.command("list")
def list_models() -> None:
    """List the zoo's models."""
    from mlwarden.models.zoo import ZOO

    table = Table("name", "dataset", "format", "description")
    for entry in ZOO.values():
        table.add_row(entry.name, f"builtin:{entry.dataset}", entry.suffix, entry.description)
    console.print(table)


@app.command("train")
def train(
    name: str = typer.Argument(..., help="digits-cnn, breast-cancer-mlp or breast-cancer-gbm."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Model file, or a directory to write NAME.<suffix> into."
    ),
    seed: int = typer.Option(0, "--seed", help="Training seed."),
    registry: str | None = REGISTRY_OPTION,
) -> None:
    """Train a zoo model deterministically and write it in a safe format with its record."""
    from mlwarden.models.loading import read_sidecar
    from mlwarden.models.zoo import train_zoo_model

    recorder = Recorder(registry)
    with console.status(f"training {name}"):
        path = train_zoo_model(name, out, seed=seed)
    accuracy = read_sidecar(path)["training"]["test_accuracy"]
    console.print(f"wrote [bold]{path}[/] (test accuracy {accuracy:.1%})")
    recorder.model(path, data_files=[])
