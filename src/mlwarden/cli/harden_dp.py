"""``mlwarden harden dp``: differentially private training (DP-SGD through Opacus)."""

from __future__ import annotations

import warnings
from pathlib import Path

import typer
from rich.table import Table

from mlwarden.cli._console import console, progress
from mlwarden.cli.governance import REGISTRY_OPTION, Recorder
from mlwarden.cli.options import LABEL_COLUMN
from mlwarden.defenses.training.dp import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_EPOCHS,
    DEFAULT_LR,
    DEFAULT_MAX_GRAD_NORM,
    DPEpoch,
)
from mlwarden.errors import SecurityWarning

__all__ = ["dp"]

_MODEL_HELP = (
    "Architecture to train from scratch with DP: zoo:digits-dp-cnn (GroupNorm + tanh, "
    "recommended), zoo:digits-cnn or zoo:breast-cancer-mlp."
)
_DATA_HELP = (
    "Private training data: builtin:NAME (trains on its train split, accuracy on its test "
    "split), .npz or .csv."
)


def dp(
    model: str = typer.Option("zoo:digits-dp-cnn", "--model", "-m", help=_MODEL_HELP),
    data: str = typer.Option(..., "--data", "-d", help=_DATA_HELP),
    epsilon: float = typer.Option(..., "--epsilon", help="Target privacy budget ε (> 0)."),
    delta: float = typer.Option(..., "--delta", help="Target δ; must be below 1/n."),
    out: Path = typer.Option(..., "--out", "-o", help="Path of the DP-trained model (.pt2)."),
    epochs: int = typer.Option(DEFAULT_EPOCHS, "--epochs", help="Training epochs."),
    max_grad_norm: float = typer.Option(
        DEFAULT_MAX_GRAD_NORM, "--max-grad-norm", help="Per-sample gradient clipping norm C."
    ),
    batch_size: int = typer.Option(
        DEFAULT_BATCH_SIZE, "--batch-size", help="Expected (Poisson) batch size."
    ),
    lr: float = typer.Option(DEFAULT_LR, "--lr", help="SGD learning rate (momentum 0.9)."),
    accountant: str = typer.Option(
        "rdp", "--accountant", help="rdp (Rényi DP) or prv (privacy random variables)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the weights, Poisson batches and noise."),
    val_data: str | None = typer.Option(None, "--val-data", help="Held-out data for accuracy."),
    label_column: str = LABEL_COLUMN,
    secure_mode: bool = typer.Option(
        False,
        "--secure-mode/--no-secure-mode",
        help="Opacus's secure mode: cryptographically secure noise (needs torchcsprng; the run "
        "cannot be reproduced from --seed). Off: seeded noise, not cryptographically secure.",
    ),
    registry: str | None = REGISTRY_OPTION,
) -> None:
    """Train a model with DP-SGD to (ε, δ)-differential privacy and write it with its record."""
    from mlwarden.defenses.training.dp import ACCOUNTANTS
    from mlwarden.defenses.training.dp_harden import harden_dp
    from mlwarden.defenses.training.harden import load_training_data
    from mlwarden.errors import ConfigError

    if accountant not in ACCOUNTANTS:  # before loading anything
        raise ConfigError(
            f"--accountant {accountant!r} is unknown; choose one of: {', '.join(ACCOUNTANTS)}"
        )
    recorder = Recorder(registry)
    train, val = load_training_data(data, val_spec=val_data, label_column=label_column, seed=seed)
    if not secure_mode:
        console.print(
            "[yellow]warning:[/] --no-secure-mode: Opacus's noise comes from PyTorch's seedable "
            "generator and is not cryptographically secure; use --secure-mode (needs "
            "torchcsprng) for a model you release",
            highlight=False,
        )
    with progress() as bar, warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)  # printed above as a console line
        task = bar.add_task(f"DP-SGD ε≤{epsilon:g}", total=epochs)

        def on_epoch(record: DPEpoch) -> None:
            parts = [
                f"epoch {record.epoch}/{epochs}",
                f"loss {record.train_loss:.4f}",
                f"ε spent {record.epsilon_spent:.3f}/{epsilon:g}",
            ]
            if record.test_accuracy is not None:
                parts.append(f"held-out accuracy {record.test_accuracy:.1%}")
            console.print("  ".join(parts), highlight=False)
            bar.update(task, advance=1)

        result = harden_dp(
            model,
            train,
            val,
            out=out,
            epsilon=epsilon,
            delta=delta,
            epochs=epochs,
            max_grad_norm=max_grad_norm,
            batch_size=batch_size,
            lr=lr,
            accountant=accountant,
            seed=seed,
            on_epoch=on_epoch,
            secure_mode=secure_mode,
        )
    record = result.training.record
    table = Table(title=f"DP-SGD privacy record ({result.metadata['name']})")
    table.add_column("field")
    table.add_column("value", justify="right")
    rows = [
        ("target ε / δ", f"{record.epsilon:g} / {record.delta:g}"),
        (f"ε spent ({record.accountant}, calibrating)", f"{record.epsilon_spent:.4f}"),
        ("ε by RDP accountant", f"{record.epsilon_rdp:.4f}"),
        ("ε by PRV accountant", f"{record.epsilon_prv:.4f}"),
        ("noise multiplier σ", f"{record.noise_multiplier:.4f}"),
        ("sample rate q", f"{record.sample_rate:.4g}"),
        ("steps", str(record.steps)),
        ("clipping norm C", f"{record.max_grad_norm:g}"),
        ("training samples", str(record.n_samples)),
        ("dataset sha256", record.dataset_sha256[:16] + "…"),
        ("secure mode", "on" if record.secure_mode else "off (noise not cryptographically secure)"),
    ]
    accuracy = result.metadata["training"].get("test_accuracy")
    if accuracy is not None:
        rows.append(("held-out accuracy", f"{accuracy:.1%}"))
    if record.converted_layers:
        rows.append(("converted layers", ", ".join(record.converted_layers)))
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    console.print(
        f"wrote [bold]{result.model_path}[/] (privacy record in "
        f"{result.model_path.name}.mlwarden.json)"
    )
    recorder.model(result.model_path, data_files=[data, val_data])
