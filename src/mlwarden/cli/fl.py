"""``mlwarden fl``: federated learning on Flower (FedAvg, SecAgg+, DP), in this process."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import typer

from mlwarden.cli._console import console
from mlwarden.cli.options import LABEL_COLUMN

__all__ = ["app", "train"]

app = typer.Typer(
    help="Federated learning on Flower: FedAvg over partitioned data, SecAgg+, differential privacy.",
    no_args_is_help=True,
)

_MODEL_HELP = (
    "Architecture trained from scratch: zoo:digits-cnn, zoo:digits-dp-cnn (for --dp sample:EPS) "
    "or zoo:breast-cancer-mlp."
)


@app.command("train")
def train(
    model: str = typer.Option("zoo:digits-cnn", "--model", "-m", help=_MODEL_HELP),
    data: str = typer.Option(
        ..., "--data", "-d", help="Pooled data split among the clients: builtin:NAME, .npz, .csv."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Path of the global model (.pt2)."),
    clients: int = typer.Option(5, "--clients", help="Number of clients (SuperNodes)."),
    rounds: int = typer.Option(10, "--rounds", help="Federated rounds."),
    clients_per_round: int | None = typer.Option(
        None, "--clients-per-round", help="Clients sampled per round (default: all)."
    ),
    partition: str = typer.Option(
        "iid", "--partition", help="iid, dirichlet:ALPHA (label skew) or by-class:K."
    ),
    secagg: bool = typer.Option(
        False, "--secagg/--no-secagg", help="Secure aggregation (Flower's SecAgg+)."
    ),
    dp: str = typer.Option(
        "none",
        "--dp",
        help="none, sample:EPS (DP-SGD on every client to ε) or client:NOISE (Flower's "
        "client-level DP with noise multiplier NOISE).",
    ),
    delta: float | None = typer.Option(
        None, "--delta", help="δ of the DP guarantee (sample: 1e-5, client: 1e-3 by default)."
    ),
    clipping_norm: float = typer.Option(
        1.0,
        "--clipping-norm",
        help="Clipping norm C (per sample for sample:, per update for client:).",
    ),
    aggregator: str = typer.Option(
        "fedavg", "--aggregator", help="fedavg, fedmedian, fedtrimmedavg or krum."
    ),
    local_epochs: int = typer.Option(5, "--local-epochs", help="Local epochs per round."),
    batch_size: int = typer.Option(32, "--batch-size", help="Local batch size."),
    lr: float = typer.Option(0.05, "--lr", help="Local SGD learning rate (momentum 0.9)."),
    seed: int = typer.Option(0, "--seed", help="Seed of partitions, shuffles and noise."),
    val_data: str | None = typer.Option(None, "--val-data", help="Held-out data for the curve."),
    label_column: str = LABEL_COLUMN,
) -> None:
    """Train a model federatedly and write the global model with its record and run report."""
    from dataclasses import replace

    from mlwarden.defenses.training.dp_harden import dp_architecture
    from mlwarden.defenses.training.harden import load_training_data
    from mlwarden.errors import SecurityWarning
    from mlwarden.federated import (
        ClientLevelDP,
        LocalTraining,
        RoundRecord,
        SampleLevelTarget,
        SecureAggregation,
        parse_partition,
        parse_privacy,
        run_federated,
    )
    from mlwarden.federated.output import check_out_path, write_federated_model

    check_out_path(out)
    parse_partition(partition)
    privacy = parse_privacy(dp, delta=delta)
    if isinstance(privacy, SampleLevelTarget):
        privacy = replace(privacy, max_grad_norm=clipping_norm)
    elif isinstance(privacy, ClientLevelDP):
        privacy = replace(privacy, clipping_norm=clipping_norm)
    local = LocalTraining(epochs=local_epochs, batch_size=batch_size, lr=lr)
    name, _ = dp_architecture(model, seed=seed)
    train_set, val = load_training_data(
        data, val_spec=val_data, label_column=label_column, seed=seed
    )

    def make_module() -> Any:
        return dp_architecture(model, seed=seed)[1]

    def on_round(record: RoundRecord) -> None:
        line = f"round {record.round}/{rounds}  held-out accuracy {record.test_accuracy:.1%}"
        if record.round:
            line += f"  ({record.seconds:.2f} s)"
        console.print(line, highlight=False)

    if privacy is not None:
        console.print(
            "[yellow]warning:[/] DP noise here is drawn from seeded generators: reproducible, "
            "not cryptographically secure; fine for experiments, not for a release",
            highlight=False,
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)  # printed above as a console line
        result = run_federated(
            make_module,
            train_set,
            val,
            clients=clients,
            rounds=rounds,
            clients_per_round=clients_per_round,
            partition=partition,
            local=local,
            aggregator=aggregator,
            secure_aggregation=SecureAggregation() if secagg else None,
            privacy=privacy,
            seed=seed,
            on_round=on_round,
            architecture=name,
        )
    suffix = "+secagg" if secagg else ""
    suffix += "" if privacy is None else f"+dp-{dp.replace(':', '')}"
    written = write_federated_model(result, out, like=train_set, name=f"{name}+fl{suffix}")
    record = result.record
    if record["privacy"]:
        console.print(
            f"privacy: {record['privacy']['level']}-level, ε spent "
            f"{record['privacy']['epsilon_spent']:.3f} at δ={record['privacy']['delta']:g}",
            highlight=False,
        )
    console.print(
        f"wrote [bold]{written.model_path}[/] (record in {written.model_path.name}.mlwarden.json)"
    )
    console.print(f"run report: {written.report_path} (plot {written.plot_path.name})")
