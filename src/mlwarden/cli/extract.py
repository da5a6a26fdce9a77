"""``mlwarden attack extract``: steal a model through its prediction API (or a local copy)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import typer

from mlwarden.cli._console import console
from mlwarden.errors import ConfigError

__all__ = ["extract", "run_extract"]

_TARGET_HELP = (
    "What to attack: the gateway's base URL (http://HOST:PORT, with --model-name) or a local "
    "model (zoo:NAME or a model file, answered through --policy)."
)
_QUERY_HELP = (
    "Query inputs: builtin:NAME (its train split as an unlabeled pool; evaluation on its test "
    "split), random (uniform noise in the valid range), or an .npz/.csv file (unlabeled pool)."
)


def _load_query_data(spec: str, input_shape: tuple[int, ...]) -> tuple[str, np.ndarray | None]:
    from mlwarden.data.readers import load_dataset

    if spec == "random":
        return "random", None
    if spec.startswith("builtin:"):
        name = spec.split(":")[1]
        pool = load_dataset(f"builtin:{name}:train").x
    else:
        pool = load_dataset(spec).x
    if tuple(pool.shape[1:]) != tuple(input_shape):
        raise ConfigError(
            f"--query-data {spec}: samples have shape {tuple(pool.shape[1:])} but the target "
            f"expects {tuple(input_shape)}"
        )
    return "pool", pool


def _eval_spec(query_data: str, eval_data: str | None) -> str:
    if eval_data:
        return eval_data
    if query_data.startswith("builtin:"):
        return f"builtin:{query_data.split(':')[1]}:test"
    raise ConfigError(
        f"--query-data {query_data} has no held-out split; pass --eval-data (e.g. "
        "builtin:digits:test) to measure fidelity and accuracy"
    )


def run_extract(
    *,
    target: str,
    budget: int,
    out: Path,
    api_key: str | None = None,
    model_name: str | None = None,
    query_data: str = "builtin:digits",
    eval_data: str | None = None,
    eval_model: str | None = None,
    policy: str = "probabilities",
    decimals: int = 2,
    top_k: int = 1,
    pool_limit: int | None = None,
    seed: int = 0,
    batch_size: int = 32,
    max_retry_wait_s: float = 30.0,
    save_surrogate: bool = False,
    client: Any = None,
) -> dict[str, Any]:
    """Run the extraction attack and write ``out/extraction.json`` and ``out/extraction.png``.

    Returns the JSON document. ``client`` (an ``httpx.Client``) is for tests.
    """
    from mlwarden._io import atomic_write_bytes, atomic_write_text
    from mlwarden.attacks.extraction import HttpVictim, KnockoffExtraction, LocalVictim
    from mlwarden.attacks.extraction.victim import Victim
    from mlwarden.data.readers import load_dataset
    from mlwarden.models import load_model
    from mlwarden.report.plots import extraction_png

    if budget < 1:
        raise ConfigError(f"--budget must be a positive integer, got {budget}")
    victim: Victim
    oracle = None
    if target.startswith(("http://", "https://")):
        if not model_name:
            raise ConfigError("--model-name is required when --target is a URL")
        victim = HttpVictim(
            target,
            model_name,
            api_key,
            batch_size=batch_size,
            max_retry_wait_s=max_retry_wait_s,
            client=client,
        )
        label = model_name
    else:
        classifier = load_model(target)
        victim = LocalVictim(classifier, policy=policy, decimals=decimals, k=top_k)
        oracle = classifier
        label = policy
    if eval_model:
        oracle = load_model(eval_model)
    kind, pool = _load_query_data(query_data, tuple(victim.input_shape))
    evaluation = load_dataset(_eval_spec(query_data, eval_data))
    attack = KnockoffExtraction(
        budget=budget, query_data=kind, pool_limit=pool_limit, seed=seed, query_batch_size=250
    )
    with victim:
        result = attack.run(
            victim,
            x_eval=evaluation.x,
            y_eval=evaluation.y,
            eval_labels=oracle,
            pool=pool,
            query_data_name=query_data,
        )
    document = result.to_dict()
    document["eval_data"] = evaluation.name
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "extraction.json", json.dumps(document, indent=2, sort_keys=True))
    atomic_write_bytes(out / "extraction.png", extraction_png({label: document}))
    if save_surrogate and result.surrogate is not None:
        from mlwarden.models.zoo import save_torch_model

        save_torch_model(
            result.surrogate,
            out / "surrogate.pt2",
            input_shape=tuple(victim.input_shape),
            metadata={
                "name": "surrogate",
                "input_shape": list(victim.input_shape),
                "n_classes": victim.n_classes,
                "clip_range": list(victim.clip_range),
                "extraction": {k: document[k] for k in ("victim", "queries", "fidelity")},
            },
        )
    return document


def extract(
    target: str = typer.Option(..., "--target", "-t", help=_TARGET_HELP),
    budget: int = typer.Option(..., "--budget", "-b", help="Queries to send at most."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for extraction.json and .png."),
    api_key: str | None = typer.Option(
        None,
        "--api-key",
        envvar="MLWARDEN_API_KEY",
        help="API key for a URL target (or $MLWARDEN_API_KEY); never written anywhere.",
        show_default=False,
    ),
    model_name: str | None = typer.Option(
        None, "--model-name", help="The served model's name (URL targets)."
    ),
    query_data: str = typer.Option("builtin:digits", "--query-data", help=_QUERY_HELP),
    eval_data: str | None = typer.Option(
        None, "--eval-data", help="Held-out data for fidelity/accuracy (default: the test split)."
    ),
    eval_model: str | None = typer.Option(
        None,
        "--eval-model",
        help="The evaluator's copy of the victim for fidelity (default: the local target, or "
        "the URL target queried once after the attack, outside the budget).",
    ),
    policy: str = typer.Option(
        "probabilities",
        "--policy",
        help="Output policy simulated for a local target: probabilities, rounded, top_k, label.",
    ),
    decimals: int = typer.Option(2, "--decimals", help="Decimals of --policy rounded."),
    top_k: int = typer.Option(1, "--top-k", help="k of --policy top_k."),
    pool_limit: int | None = typer.Option(
        None,
        "--pool-limit",
        help="Use at most this many pool samples, then Jacobian augmentation (Papernot et al.).",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of query draws and surrogate training."),
    batch_size: int = typer.Option(32, "--batch-size", help="Inputs per HTTP request."),
    max_retry_wait: float = typer.Option(
        30.0,
        "--max-retry-wait",
        help="Longest Retry-After (s) to wait for; longer ends the attack.",
    ),
    save_surrogate: bool = typer.Option(
        False, "--save-surrogate", help="Also write the surrogate as surrogate.pt2."
    ),
) -> None:
    """Train a surrogate from queries (Knockoff Nets) and report fidelity against the budget."""
    document = run_extract(
        target=target,
        budget=budget,
        out=out,
        api_key=api_key,
        model_name=model_name,
        query_data=query_data,
        eval_data=eval_data,
        eval_model=eval_model,
        policy=policy,
        decimals=decimals,
        top_k=top_k,
        pool_limit=pool_limit,
        seed=seed,
        batch_size=batch_size,
        max_retry_wait_s=max_retry_wait,
        save_surrogate=save_surrogate,
    )
    for point in document["points"]:
        fid = "n/a" if point["fidelity"] is None else f"{point['fidelity']:.1%}"
        acc = "n/a" if point["accuracy"] is None else f"{point['accuracy']:.1%}"
        console.print(f"{point['queries']:>7} queries  fidelity {fid}  accuracy {acc}")
    if document["stopped"]:
        console.print(
            f"[yellow]the target stopped answering after {document['queries']} queries "
            f"({document['stopped']})[/]"
        )
    if document["first_alert_at"]:
        console.print(
            f"[yellow]the gateway raised {document['n_alerts']} alert(s), the first after "
            f"{document['first_alert_at']} queries[/]"
        )
    console.print(f"wrote [bold]{out / 'extraction.json'}[/] and {out / 'extraction.png'}")
