"""Command-line options shared by several command modules, defined once.

Typer reads an option's declaration from the parameter's default, and one declaration can serve
any number of commands, so a flag's name, default and help text live here and the commands say
``label_column: str = LABEL_COLUMN``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

__all__ = [
    "BATCH_SIZE",
    "EPOCHS",
    "EVAL_SAMPLES",
    "LABEL_COLUMN",
    "LR",
    "VAL_DATA",
    "load_like",
]

LABEL_COLUMN: Any = typer.Option("label", "--label-column", help="Label column of CSV data.")
EPOCHS: Any = typer.Option(20, "--epochs", help="Training epochs.")
LR: Any = typer.Option(1e-3, "--lr", help="Adam learning rate.")
BATCH_SIZE: Any = typer.Option(64, "--batch-size", help="Samples per step.")
EVAL_SAMPLES: Any = typer.Option(500, "--eval-samples", help="Held-out samples in the curve.")
VAL_DATA: Any = typer.Option(None, "--val-data", help="Held-out data for the curve.")


def load_like(spec: str | Path, like: Any, *, label_column: str, split: str = "test") -> Any:
    """Load the dataset ``spec`` as a companion of ``like``: same classes and value range.

    For the second data set of a command (training data beside test data, a clean holdout).
    """
    from mlwarden.data import load_dataset

    return load_dataset(
        str(spec),
        split=split,
        label_column=label_column,
        n_classes=like.n_classes,
        clip_range=like.clip_range,
    )
