"""``mlwarden harden``: make a model more robust and write it back in a safe format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mlwarden.cli._console import console
from mlwarden.cli.governance import REGISTRY_OPTION, Recorder
from mlwarden.cli.options import BATCH_SIZE, EPOCHS, EVAL_SAMPLES, LABEL_COLUMN, LR, VAL_DATA

__all__ = ["app"]

app = typer.Typer(
    help="Harden a model: adversarial training, Gaussian-noise training for randomized smoothing, or DP-SGD.",
    no_args_is_help=True,
)

_MODEL_HELP = "Model to harden: zoo:NAME or a PyTorch file (.pt2)."
_DATA_HELP = "Training data: builtin:NAME (trains on its train split, curve on its test split), .npz or .csv."


def _run(
    model: str,
    data: str,
    val_data: str | None,
    label_column: str,
    trainer: Any,
    out: Path,
    registry: str | None,
) -> None:
    from mlwarden.defenses.training.harden import harden_model, load_training_data

    recorder = Recorder(registry)

    train, val = load_training_data(
        data, val_spec=val_data, label_column=label_column, seed=trainer.seed
    )

    def on_epoch(record: Any) -> None:
        parts = [f"epoch {record.epoch}/{trainer.epochs}", f"loss {record.train_loss:.4f}"]
        for key in ("clean_accuracy", "robust_accuracy", "noisy_accuracy"):
            value = getattr(record, key)
            if value is not None:
                parts.append(f"{key.replace('_', ' ')} {value:.1%}")
        console.print("  ".join(parts), highlight=False)

    result = harden_model(model, train, val, trainer, out=out, on_epoch=on_epoch)
    curve = result.record["curve"]
    before, after = curve[0], curve[-1]
    for key in ("clean_accuracy", "robust_accuracy", "noisy_accuracy"):
        if key in after:
            console.print(
                f"{key.replace('_', ' ')}: {before.get(key, float('nan')):.1%} → {after[key]:.1%}",
                highlight=False,
            )
    console.print(
        f"wrote [bold]{result.model_path}[/] (record in {result.model_path.name}.mlwarden.json)"
    )
    console.print(f"run report: {result.report_path} (plot {result.plot_path.name})")
    recorder.model(result.model_path, data_files=[data, val_data])


def _is_text_data(data: str) -> bool:
    from mlwarden.data.text import TEXT_DATASETS

    return data.startswith("builtin:") and data.split(":")[1] in TEXT_DATASETS


def _harden_text(
    model: str, data: str, eps: float, out: Path, eval_samples: int, seed: int
) -> None:
    from mlwarden.defenses.training.text_adversarial import harden_text_model

    record = harden_text_model(model, data, eps=eps, out=out, eval_samples=eval_samples, seed=seed)
    before, after = record["before"], record["after"]
    for key in before:
        console.print(
            f"{key.replace('_', ' ')}: {before[key]:.1%} → {after[key]:.1%}", highlight=False
        )
    console.print(f"wrote [bold]{out}[/] (record in {out.name}.mlwarden.json)")


@app.command("adversarial")
def adversarial(
    model: str = typer.Option(..., "--model", "-m", help=_MODEL_HELP),
    data: str = typer.Option(..., "--data", "-d", help=_DATA_HELP),
    eps: float = typer.Option(..., "--eps", help="Perturbation budget ε in input units."),
    out: Path = typer.Option(..., "--out", "-o", help="Path of the hardened model (.pt2)."),
    norm: str = typer.Option("linf", "--norm", help="linf or l2."),
    method: str = typer.Option(
        "pgd", "--method", help="pgd (Madry et al.) or trades (Zhang et al.)."
    ),
    epochs: int = EPOCHS,
    warmup_epochs: float = typer.Option(
        5, "--warmup-epochs", help="Epochs over which ε rises linearly from 0 (0: none)."
    ),
    steps: int = typer.Option(7, "--steps", help="PGD steps per training batch."),
    trades_beta: float = typer.Option(6.0, "--trades-beta", help="TRADES robustness weight β."),
    lr: float = LR,
    batch_size: int = BATCH_SIZE,
    eval_samples: int = EVAL_SAMPLES,
    seed: int = typer.Option(0, "--seed", help="Seed of shuffles and random starts."),
    val_data: str | None = VAL_DATA,
    label_column: str = LABEL_COLUMN,
    registry: str | None = REGISTRY_OPTION,
) -> None:
    """Adversarially train a model (PGD or TRADES) and write it with its record and curve.

    For a text model (.skops or .pt2 saved by mlwarden) on text data, --eps is the share of
    words the synonym attack may change, and training is synonym augmentation plus rounds of
    the attack (defenses/training/text_adversarial.py).
    """
    if _is_text_data(data):
        _harden_text(model, data, eps, out, eval_samples, seed)
        return
    from mlwarden.defenses.training import AdversarialTrainer

    trainer = AdversarialTrainer(
        eps=eps,
        norm=norm,
        method=method,
        steps=steps,
        trades_beta=trades_beta,
        warmup_epochs=warmup_epochs,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        eval_samples=eval_samples,
        seed=seed,
    )
    _run(model, data, val_data, label_column, trainer, out, registry)


@app.command("smoothing")
def smoothing(
    model: str = typer.Option(..., "--model", "-m", help=_MODEL_HELP),
    data: str = typer.Option(..., "--data", "-d", help=_DATA_HELP),
    sigma: float = typer.Option(
        ..., "--sigma", help="Noise σ, the σ the model will be smoothed with."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Path of the noise-trained model (.pt2)."),
    epochs: int = EPOCHS,
    lr: float = LR,
    batch_size: int = BATCH_SIZE,
    eval_samples: int = EVAL_SAMPLES,
    seed: int = typer.Option(0, "--seed", help="Seed of shuffles and noise."),
    val_data: str | None = VAL_DATA,
    label_column: str = LABEL_COLUMN,
    registry: str | None = REGISTRY_OPTION,
) -> None:
    """Train a model under Gaussian noise σ for randomized smoothing; assess then certifies it."""
    from mlwarden.defenses.training import GaussianNoiseTrainer

    trainer = GaussianNoiseTrainer(
        sigma=sigma,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        eval_samples=eval_samples,
        seed=seed,
    )
    _run(model, data, val_data, label_column, trainer, out, registry)


# DP-SGD lives in its own module (it needs the optional Opacus dependency at run time only).
from mlwarden.cli.harden_dp import dp as _dp  # noqa: E402

app.command("dp")(_dp)
