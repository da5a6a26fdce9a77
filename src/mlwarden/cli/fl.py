"""``mlwarden fl``: federated learning on Flower (FedAvg, SecAgg+, DP), in this process or on
Flower's deployment engine (a SuperLink and SuperNodes on 127.0.0.1)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import typer

from mlwarden.cli._console import console
from mlwarden.cli.governance import REGISTRY_OPTION, Recorder
from mlwarden.cli.options import LABEL_COLUMN

__all__ = ["ENGINES", "app", "gradient_leakage", "train"]

ENGINES = ("in-process", "deployment")
"""``--engine`` values: Flower's apps in this process, or Flower's deployment engine."""

app = typer.Typer(
    help="Federated learning on Flower: FedAvg over partitioned data, SecAgg+, differential privacy.",
    no_args_is_help=True,
)

_MODEL_HELP = (
    "Architecture trained from scratch: zoo:digits-cnn, zoo:digits-dp-cnn (for --dp sample:EPS) "
    "or zoo:breast-cancer-mlp."
)


def _require_flwr() -> None:
    import importlib.util

    from mlwarden.errors import ConfigError

    if importlib.util.find_spec("flwr") is None:
        raise ConfigError("federated learning needs Flower: pip install 'mlwarden[fl]'")


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
    engine: str = typer.Option(
        "in-process",
        "--engine",
        help="in-process (Flower's apps in this process) or deployment (a Flower SuperLink and "
        "one SuperNode per client, each a process on 127.0.0.1, the app submitted with flwr run).",
    ),
    label_column: str = LABEL_COLUMN,
    registry: str | None = REGISTRY_OPTION,
) -> None:
    """Train a model federatedly and write the global model with its record and run report."""
    from dataclasses import replace

    from mlwarden.defenses.training.dp_harden import dp_architecture
    from mlwarden.defenses.training.harden import load_training_data
    from mlwarden.errors import ConfigError, SecurityWarning
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

    _require_flwr()
    if engine not in ENGINES:
        raise ConfigError(f"--engine {engine!r} is unknown; choose one of: {', '.join(ENGINES)}")
    check_out_path(out)
    recorder = Recorder(registry)  # a bad registry URI fails before any training
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
        if not record.aggregated:
            line += "  [yellow]not aggregated: too few clients answered[/]"
        console.print(line, highlight=False)

    if privacy is not None:
        console.print(
            "[yellow]warning:[/] DP noise here is drawn from seeded generators: reproducible, "
            "not cryptographically secure; fine for experiments, not for a release",
            highlight=False,
        )
    if engine == "deployment":
        from mlwarden.federated.deployment import run_deployment
        from mlwarden.federated.job import FederatedJob
        from mlwarden.federated.runner import check_counts

        # the in-process engine's refusals, word for word, before any process starts
        check_counts(clients, rounds, clients_per_round, SecureAggregation() if secagg else None)
        job = FederatedJob.from_run_config(
            {
                "model": model,
                "data": data,
                "val_data": val_data or "",
                "label_column": label_column,
                "clients": clients,
                "rounds": rounds,
                "clients_per_round": clients_per_round or 0,
                "partition": partition,
                "local_epochs": local_epochs,
                "batch_size": batch_size,
                "lr": lr,
                "aggregator": aggregator,
                "secagg": secagg,
                "dp": dp,
                "delta": delta or 0.0,
                "clipping_norm": clipping_norm,
                "seed": seed,
            }
        )
        console.print(
            f"deployment engine: a SuperLink and {clients} SuperNodes on 127.0.0.1 "
            "(Flower processes; the first round waits for all of them)",
            highlight=False,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SecurityWarning)  # printed above as a console line
            result = run_deployment(job, on_round=on_round)
    else:
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
    recorder.model(written.model_path, data_files=[data, val_data])


def gradient_leakage(
    model: str = typer.Option("zoo:digits-cnn", "--model", "-m", help=_MODEL_HELP),
    data: str = typer.Option(
        "builtin:digits", "--data", "-d", help="Where the clients' samples come from."
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Folder for the result JSON and picture grid."
    ),
    view: str = typer.Option(
        "plain",
        "--view",
        help="What the server sees: plain (one client's update), secagg (the SecAgg+ sum of "
        "--clients updates) or dp (one DP-SGD update, noise --noise).",
    ),
    batch_size: int = typer.Option(1, "--batch-size", help="Samples per client update."),
    clients: int = typer.Option(5, "--clients", help="Clients in the SecAgg+ sum (view secagg)."),
    noise: float = typer.Option(1.0, "--noise", help="DP-SGD noise multiplier σ (view dp)."),
    method: str = typer.Option(
        "inverting",
        "--method",
        help="inverting (Geiping et al. 2020) or dlg (DLG with iDLG labels).",
    ),
    iterations: int = typer.Option(1000, "--iterations", help="Optimisation steps per restart."),
    restarts: int = typer.Option(2, "--restarts", help="Random restarts (best one kept)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the samples, model and restarts."),
) -> None:
    """Reconstruct a client's training inputs from what a federated server sees (DLG/iDLG,
    inverting gradients); write PSNR/SSIM per sample and a picture grid."""
    import json

    import numpy as np

    from mlwarden._io import atomic_write_bytes, atomic_write_text
    from mlwarden.attacks.privacy.gradient_leakage import GradientLeakage
    from mlwarden.data import load_dataset
    from mlwarden.defenses.training.dp_harden import dp_architecture
    from mlwarden.errors import ConfigError
    from mlwarden.federated.leakage import leakage_experiment, server_view
    from mlwarden.report.plots import gradient_leakage_png

    _require_flwr()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder")
    attack = GradientLeakage(
        method=method,  # type: ignore[arg-type]
        iterations=iterations,
        restarts=restarts,
        lr=1.0 if method == "dlg" else 0.1,
        tv_weight=0.0 if method == "dlg" else 1e-4,
        seed=seed,
    )
    attack._validate()
    name, _ = dp_architecture(model, seed=seed)
    dataset = load_dataset(data, split="train")

    def make_module() -> Any:
        return dp_architecture(model, seed=seed)[1]

    observed = server_view(
        make_module,
        dataset,
        view=view,  # type: ignore[arg-type]
        batch_size=batch_size,
        clients=clients,
        noise_multiplier=noise,
        seed=seed,
    )
    result, scores = leakage_experiment(
        observed, attack, batch_size=batch_size, blank=dataset.x.mean(0)
    )
    originals = scores.pop("originals")
    if "pairing" in scores and observed.view != "secagg" and len(originals) == batch_size:
        shown = result.reconstructions[np.asarray(scores["pairing"])]
    else:
        shown = result.reconstructions
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "attack": "gradient-leakage",
        "model": name,
        "data": dataset.name,
        "view": view,
        "clients_in_update": observed.clients,
        "labels": result.labels.tolist(),
        "labels_inferred": result.labels_inferred,
        "gradient_loss": result.gradient_loss,
        "params": result.params,
        **({"noise_multiplier": noise} if view == "dp" else {}),
        **scores,
    }
    json_path = atomic_write_text(out / "gradient-leakage.json", json.dumps(payload, indent=2))
    title = f"Gradient leakage ({method}) from a {view} update, batch {batch_size}"
    png = gradient_leakage_png(originals, shown, scores["psnr_db"], title=title)
    png_path = atomic_write_bytes(out / "gradient-leakage.png", png)
    console.print(
        f"{view} update, batch {batch_size}: mean PSNR {scores['mean_psnr_db']:.1f} dB "
        f"(blank guess {scores['mean_blank_psnr_db']:.1f} dB), mean SSIM {scores['mean_ssim']:.3f}, "
        f"labels {'recovered' if scores.get('labels_recovered') else 'not recovered'}",
        highlight=False,
    )
    console.print(f"wrote {json_path} and {png_path}")
