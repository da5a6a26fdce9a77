"""``mlwarden attack``: run one attack on its own and write its JSON result and figure.

Privacy attacks live here (``membership``, ``invert``, ``dp-audit``, still answering to the
hidden alias ``audit`` for one release); other attack families add
their commands to the same :data:`app`.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from mlwarden.cli._console import console
from mlwarden.cli.options import LABEL_COLUMN, load_like
from mlwarden.errors import ConfigError, SecurityWarning

__all__ = ["app"]

app = typer.Typer(
    help="Run one attack and write its result: membership inference, model inversion, DP audit, memorization.",
    no_args_is_help=True,
)

_MODEL_HELP = "Model file (.pt2, .pt, .skops, .onnx) or zoo:NAME."
_DATA_HELP = "Held-out data (non-members): builtin:NAME (its test split), .npz or .csv."
_TRAIN_HELP = "The model's training data (members); built-in data defaults to its train split."


def _write_json(out: Path, name: str, payload: dict[str, Any]) -> Path:
    from mlwarden._io import atomic_write_text

    return atomic_write_text(out / name, json.dumps(payload, indent=2) + "\n")


def _write_png(out: Path, name: str, data: bytes) -> Path:
    from mlwarden._io import atomic_write_with

    def write(tmp: Path) -> None:
        tmp.write_bytes(data)

    return atomic_write_with(out / name, write)


def _load(model: str, data: str, train_data: str | None, label_column: str) -> tuple[Any, Any, Any]:
    from mlwarden.assess.detection import resolve_train_data
    from mlwarden.data import load_dataset
    from mlwarden.models import load_model

    dataset = load_dataset(data, label_column=label_column)
    classifier = load_model(model, input_shape=dataset.input_shape, n_classes=dataset.n_classes)
    train = (
        # the members: a built-in name means its train split (the test split was taken before)
        load_like(train_data, dataset, label_column=label_column, split="train")
        if train_data is not None
        else None
    )
    if train is None and not dataset.name.startswith("builtin:"):
        raise ConfigError("pass --train-data: the model's training data (the members)")
    return classifier, dataset, resolve_train_data(dataset, train)


@app.command("membership")
def membership(
    model: str = typer.Option(..., "--model", "-m", help=_MODEL_HELP),
    data: str = typer.Option(..., "--data", "-d", help=_DATA_HELP),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Directory for membership.json and membership_roc.png."
    ),
    train_data: str | None = typer.Option(None, "--train-data", help=_TRAIN_HELP),
    shadows: int = typer.Option(
        0, "--shadows", help="LiRA shadow models (even; 0: loss attack only)."
    ),
    online: bool = typer.Option(False, "--online", help="Online LiRA (IN and OUT Gaussians)."),
    max_samples: int = typer.Option(
        500, "--max-samples", help="Members and non-members evaluated (each)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the sample draw and the shadows."),
    label_column: str = LABEL_COLUMN,
) -> None:
    """Membership inference: loss threshold (Yeom et al.) and optionally LiRA (Carlini et al.)."""
    from mlwarden.assess.privacy import shadow_recipe
    from mlwarden.attacks.privacy import LiRA, LossThresholdAttack
    from mlwarden.report.plots import membership_roc_png

    classifier, dataset, train = _load(model, data, train_data, label_column)
    n = min(len(train), len(dataset), max_samples)
    members, non_members = train.sample(n, seed), dataset.sample(n, seed + 1)
    results = [LossThresholdAttack().run(classifier, members, non_members)]
    if shadows:
        recipe = shadow_recipe(classifier)
        console.print(f"training {shadows} shadow models ({recipe.description})")
        lira = LiRA(
            make_model=recipe.make_model,
            n_shadows=shadows,
            epochs=recipe.epochs,
            lr=recipe.lr,
            batch_size=recipe.batch_size,
            online=online,
            seed=seed,
        ).run(classifier, members, non_members)
        lira.params["shadow_recipe"] = recipe.description
        results.append(lira)
    for r in results:
        m = r.metrics
        console.print(
            f"{r.attack}: AUC {m.auc:.3f}  balanced accuracy {m.balanced_accuracy:.1%}  "
            f"TPR@1%FPR {m.tpr_at_fpr[0.01]:.1%}  TPR@0.1%FPR {m.tpr_at_fpr[0.001]:.1%}"
            + ("" if m.measured(0.001) else f" (interpolated: {m.n_non_members} non-members)"),
            highlight=False,
        )
    payload = {
        "model": model,
        "members": train.name,
        "non_members": dataset.name,
        "results": {r.attack: r.to_dict() for r in results},
    }
    path = _write_json(out, "membership.json", payload)
    curves = {r.attack: {**r.to_dict()["roc"], "auc": r.metrics.auc} for r in results}
    _write_png(out, "membership_roc.png", membership_roc_png(curves))
    console.print(f"wrote [bold]{path}[/] and membership_roc.png")


@app.command("invert")
def invert(
    model: str = typer.Option(..., "--model", "-m", help=_MODEL_HELP),
    data: str = typer.Option(
        ...,
        "--data",
        "-d",
        help="Data the class means come from (its train split for builtin:NAME).",
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Directory for inversion.json and inversion.png."
    ),
    train_data: str | None = typer.Option(None, "--train-data", help=_TRAIN_HELP),
    steps: int = typer.Option(300, "--steps", help="Gradient-ascent steps."),
    tv_weight: float = typer.Option(0.05, "--tv-weight", help="Total-variation prior weight."),
    l2_weight: float = typer.Option(0.01, "--l2-weight", help="L2 prior weight."),
    label_column: str = LABEL_COLUMN,
) -> None:
    """Model inversion (MI-Face, Fredrikson et al. 2015): one reconstruction per class."""
    from mlwarden.attacks.privacy import MIFace
    from mlwarden.report.plots import inversion_grid_png

    classifier, _, train = _load(model, data, train_data, label_column)
    result = MIFace(steps=steps, tv_weight=tv_weight, l2_weight=l2_weight).run(classifier, train)
    metrics = result.metrics()
    console.print(
        f"recovered {metrics['inversion_recovery_rate']:.0%} of classes (chance "
        f"{1 / classifier.n_classes:.0%}); correlation with own class mean "
        f"{metrics['inversion_own_correlation']:.2f} vs others {metrics['inversion_other_correlation']:.2f}",
        highlight=False,
    )
    path = _write_json(
        out, "inversion.json", {"model": model, "data": train.name, **result.to_dict()}
    )
    _write_png(
        out,
        "inversion.png",
        inversion_grid_png(result.reconstructions, result.class_means, result.recovered),
    )
    console.print(f"wrote [bold]{path}[/] and inversion.png")


_ARCHES = ("mlp", "digits-cnn", "digits-dp-cnn")


def _architecture(arch: str, input_shape: tuple[int, ...], n_classes: int) -> Callable[[], Any]:
    from torch import nn

    if arch == "mlp":
        size = 1
        for d in input_shape:
            size *= d

        def make() -> nn.Module:
            return nn.Sequential(
                nn.Flatten(), nn.Linear(size, 256), nn.ReLU(), nn.Linear(256, n_classes)
            )

        return make
    if arch in ("digits-cnn", "digits-dp-cnn"):
        if input_shape != (1, 8, 8) or n_classes != 10:
            raise ConfigError(f"--arch {arch} needs 1x8x8 inputs and 10 classes (builtin:digits)")
        if arch == "digits-cnn":
            from mlwarden.models.zoo import digits_cnn

            return digits_cnn
        from mlwarden.models.zoo import digits_dp_cnn

        return digits_dp_cnn
    raise ConfigError(f"--arch must be one of {', '.join(_ARCHES)}, got {arch!r}")


@app.command("dp-audit")
def dp_audit(
    data: str = typer.Option(
        ..., "--data", "-d", help="Training data: builtin:NAME (train split), .npz or .csv."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Directory for audit.json."),
    epsilon: float | None = typer.Option(
        None, "--epsilon", help="Train with DP-SGD at this ε (omit: non-private)."
    ),
    delta: float = typer.Option(1e-5, "--delta", help="DP δ (also used in the bound)."),
    arch: str = typer.Option("mlp", "--arch", help=f"Architecture trained: {', '.join(_ARCHES)}."),
    epochs: int = typer.Option(40, "--epochs", help="Training epochs per run."),
    lr: float | None = typer.Option(
        None, "--lr", help="Learning rate (default: 1e-2 Adam, 1.0 DP-SGD)."
    ),
    batch_size: int = typer.Option(
        64, "--batch-size", help="Batch size (expected size for DP-SGD)."
    ),
    max_grad_norm: float = typer.Option(1.0, "--max-grad-norm", help="DP-SGD clipping norm."),
    canaries: int = typer.Option(300, "--canaries", help="Number of canaries."),
    canary: str = typer.Option("mislabel", "--canary", help="mislabel or ood."),
    runs: int = typer.Option(3, "--runs", help="Training runs (each with fresh canary coins)."),
    max_samples: int | None = typer.Option(
        700, "--max-samples", help="Training samples used (seeded draw)."
    ),
    confidence: float = typer.Option(0.95, "--confidence", help="Confidence of the lower bound."),
    seed: int = typer.Option(0, "--seed", help="Seed of canaries, coins and training."),
    label_column: str = typer.Option("label", "--label-column", help="Label column of CSV data."),
) -> None:
    """Empirical DP audit (Jagielski et al. 2020): a lower bound on ε from canaries."""
    import torch

    from mlwarden.attacks.privacy import run_audit
    from mlwarden.data import load_dataset
    from mlwarden.models.zoo import fit_torch

    train = load_dataset(data, split="train", label_column=label_column).sample(max_samples, seed)
    make = _architecture(arch, train.input_shape, train.n_classes)
    if canary not in ("mislabel", "ood"):
        raise ConfigError(f"--canary must be mislabel or ood, got {canary!r}")

    def train_fn(dataset: Any, run_seed: int) -> Any:
        torch.manual_seed(run_seed)
        if epsilon is None:
            return fit_torch(
                make(),
                dataset.x,
                dataset.y,
                seed=run_seed,
                epochs=epochs,
                batch_size=batch_size,
                lr=lr or 1e-2,
            )
        from mlwarden.defenses.training.dp import train_dp

        with warnings.catch_warnings():
            # audit runs are seeded experiments; the insecure-noise note is printed once below
            warnings.simplefilter("ignore", SecurityWarning)
            return train_dp(
                make(),
                dataset,
                epsilon=epsilon,
                delta=delta,
                epochs=epochs,
                max_grad_norm=max_grad_norm,
                batch_size=batch_size,
                lr=lr or 1.0,
                seed=run_seed,
            ).module

    if epsilon is not None:
        console.print(
            "[yellow]note:[/] DP-SGD runs seeded, with Opacus's secure_mode off (its noise is "
            "not cryptographically secure): right for an audit, not for a released model",
            highlight=False,
        )

    result = run_audit(
        train_fn,
        train,
        n_canaries=canaries,
        canary="ood" if canary == "ood" else "mislabel",
        n_runs=runs,
        delta=delta,
        confidence=confidence,
        claimed_epsilon=epsilon,
        seed=seed,
        on_run=lambda r: console.print(f"training run {r + 1}/{runs}"),
    )
    low, high = result.epsilon_ci
    console.print(
        f"ε lower bound {result.epsilon_lb:.2f} ({confidence:.0%} confidence, Clopper-Pearson; "
        f"range at {1 - 2 * (1 - confidence):.0%}: {low:.2f} .. {high:.2f}); "
        f"TPR {result.tpr:.1%}, FPR {result.fpr:.1%} on {result.n_in}+{result.n_out} held-out trials; "
        f"one-run bound (Steinke et al.) {result.epsilon_lb_one_run:.2f}"
        + (
            ""
            if epsilon is None
            else f"; claimed ε {epsilon:g}: {'consistent' if result.consistent else 'VIOLATED'}"
            f" (verdict on the bound {result.epsilon_lb_verdict:.2f})"
        ),
        highlight=False,
    )
    payload = {
        "data": train.name,
        "arch": arch,
        "epochs": epochs,
        "private": epsilon is not None,
        **result.to_dict(),
    }
    path = _write_json(out, "audit.json", payload)
    console.print(f"wrote [bold]{path}[/]")


# ``attack audit`` was this command's name; kept, hidden, for one release (issue 11)
app.command("audit", hidden=True)(dp_audit)


# model extraction (issue 7): the command lives in mlwarden.cli.extract
from mlwarden.cli.extract import extract as _extract  # noqa: E402

app.command("extract")(_extract)

# canary exposure of a text generator (issue 19): the command lives in mlwarden.cli.memorization
from mlwarden.cli.memorization import memorization as _memorization  # noqa: E402

app.command("memorization")(_memorization)

# Gradient leakage simulates a federated round: it lives with the fl commands (needs flwr).
from mlwarden.cli.fl import gradient_leakage as _gradient_leakage  # noqa: E402

app.command("gradient-leakage")(_gradient_leakage)
