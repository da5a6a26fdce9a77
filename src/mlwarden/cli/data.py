"""``mlwarden data``: plant poison in a copy of a dataset, and inspect a dataset for poison.

* ``mlwarden data poison``: BadNets, blend or label-flip poisoning of a copy of the data,
  written as ``.npz`` with a ``.truth.json`` ground-truth file beside it; text data gets the
  trigger-phrase backdoor, written as ``.jsonl``;
* ``mlwarden data inspect``: run the poisoned-data detectors and write ``report.json`` and
  ``report.html``; ``--remove`` writes a cleaned copy and ``--retrain`` measures a model
  retrained on it.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import typer

from mlwarden.cli._console import console, progress
from mlwarden.cli.governance import REGISTRY_OPTION, Recorder
from mlwarden.cli.options import LABEL_COLUMN, load_like
from mlwarden.errors import ConfigError

__all__ = ["app"]

app = typer.Typer(
    help="Red-team training data: plant backdoors or label flips in a copy, or inspect data for poison.",
    no_args_is_help=True,
)

_POISON_ATTACKS_HELP = "Poisoning attack: badnets, blend, label-flip, or trigger-phrase (text)."
_DATA_HELP = (
    "Data: builtin:NAME (its train split unless :test is given), .npz, .csv, or .jsonl text "
    "({text, label} a line)."
)


def _load(spec: str, label_column: str, **kwargs: Any) -> Any:
    from mlwarden.data import load_dataset

    if spec.endswith(".jsonl"):
        from mlwarden.attacks.poisoning import load_text_jsonl

        return load_text_jsonl(spec, n_classes=kwargs.get("n_classes"))
    return load_dataset(spec, split="train", label_column=label_column, **kwargs)


def _patch_position(text: str) -> str | list[int]:
    from mlwarden.attacks.poisoning import PATCH_POSITIONS

    if text in PATCH_POSITIONS:
        return text
    parts = text.split(",")
    try:
        return [int(p) for p in parts]
    except ValueError:
        raise ConfigError(
            f"--patch-position {text!r}: use one of {', '.join(PATCH_POSITIONS)} or ROW,COL"
        ) from None


def _pattern(text: str) -> str | np.ndarray:
    if text == "noise":
        return text
    path = Path(text)
    if path.suffix != ".npy" or not path.is_file():
        raise ConfigError(f"--pattern {text!r}: use 'noise' or an existing .npy file")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise ConfigError(f"--pattern {text}: not a numeric .npy array ({exc})") from None


@app.command("poison")
def poison(
    data: str = typer.Option(..., "--data", "-d", help=_DATA_HELP),
    attack: str = typer.Option(..., "--attack", "-a", help=_POISON_ATTACKS_HELP),
    rate: float = typer.Option(..., "--rate", help="Fraction of eligible samples to poison."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Poisoned copy (.npz; .jsonl for text); truth beside it."
    ),
    target_class: int | None = typer.Option(
        None,
        "--target-class",
        help="Backdoor label / targeted-flip label (backdoors default to 0).",
    ),
    patch_size: int = typer.Option(2, "--patch-size", help="BadNets: patch side in pixels."),
    patch_position: str = typer.Option(
        "bottom-right", "--patch-position", help="BadNets: a corner (bottom-right...) or ROW,COL."
    ),
    patch_value: float | None = typer.Option(
        None, "--patch-value", help="BadNets: patch pixel value (default: top of the range)."
    ),
    alpha: float = typer.Option(0.2, "--alpha", help="Blend: weight of the pattern."),
    pattern: str = typer.Option("noise", "--pattern", help="Blend: 'noise' or a .npy array."),
    mode: str = typer.Option("random", "--mode", help="Label flip: random or targeted."),
    source_class: int | None = typer.Option(
        None, "--source-class", help="Targeted label flip: only flip this class."
    ),
    trigger: str = typer.Option(
        "cf mn bb tq", "--trigger", help="Trigger phrase: the phrase inserted into texts."
    ),
    position: str = typer.Option(
        "random", "--position", help="Trigger phrase: random, start, middle or end."
    ),
    clean_label: bool = typer.Option(
        False, "--clean-label", help="Trigger phrase: poison only target-class texts."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the sample draw (and noise pattern)."),
    label_column: str = LABEL_COLUMN,
    registry: str | None = REGISTRY_OPTION,
) -> None:
    """Write a poisoned copy of the data and a ground-truth index file beside it."""
    from mlwarden.attacks.poisoning import get_poisoning_attack, save_poisoned

    recorder = Recorder(registry)

    try:
        cls = get_poisoning_attack(attack)
    except ConfigError as exc:
        raise ConfigError(f"--attack: {exc}") from None
    backdoor_class = 0 if target_class is None else target_class
    # Each attack's own options, read only for that attack (a bad --pattern fails only blend).
    own_options: dict[str, Any] = {
        "badnets": lambda: {
            "target_class": backdoor_class,
            "patch_size": patch_size,
            "patch_position": _patch_position(patch_position),
            "patch_value": patch_value,
        },
        "blend": lambda: {
            "target_class": backdoor_class,
            "alpha": alpha,
            "pattern": _pattern(pattern),
        },
        "label-flip": lambda: {
            "target_class": target_class,
            "mode": mode,
            "source_class": source_class,
        },
        "trigger-phrase": lambda: {
            "target_class": backdoor_class,
            "trigger": trigger,
            "position": position,
            "clean_label": clean_label,
        },
    }
    dataset = _load(data, label_column)
    attacker = cls(
        rate=rate, seed=seed, **own_options.get(attack, lambda: {"target_class": target_class})()
    )
    result = attacker.poison(dataset)
    source = {"spec": data, "name": dataset.name, "sha256": dataset.digest()}
    data_path, truth_path = save_poisoned(result, out, source=source)
    console.print(
        f"poisoned {len(result.indices)} of {len(dataset)} samples with {attack} "
        f"→ [bold]{data_path}[/] (truth: {truth_path})",
        highlight=False,
    )
    command = f"mlwarden data poison --attack {attack} --rate {rate:g} --seed {seed}"
    recorder.dataset(
        data_path,
        sources=[data],
        digests=[source["sha256"]],
        command=command,
        label_column=label_column,
    )


@app.command("inspect")
def inspect(
    data: str = typer.Option(..., "--data", "-d", help=_DATA_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="Directory for report.json and report.html."),
    model: str | None = typer.Option(
        None,
        "--model",
        "-m",
        help="A model trained on the data (PATH or zoo:NAME), or 'train' to train one; "
        "omit for the model-free checks only.",
    ),
    clean: str | None = typer.Option(
        None, "--clean", help="A curated clean holdout (holdout validation and STRIP)."
    ),
    truth: Path | None = typer.Option(
        None, "--truth", help="Ground-truth .truth.json: adds precision and recall."
    ),
    remove: bool = typer.Option(False, "--remove", help="Write cleaned.npz without the flags."),
    remove_by: str | None = typer.Option(
        None,
        "--remove-by",
        help="Comma-separated detectors whose flags are removed "
        "(default: activation-clustering,label-errors,duplicates).",
    ),
    retrain: bool = typer.Option(
        False, "--retrain", help="Retrain on the cleaned copy; report accuracy and attack success."
    ),
    test_data: str | None = typer.Option(
        None,
        "--test",
        help="Clean test data for --retrain (default: the built-in test split, else --clean).",
    ),
    layer: str = typer.Option(
        "features", "--layer", help="Representation: features (first linear input) or penultimate."
    ),
    epochs: int = typer.Option(30, "--epochs", help="Epochs when training (--model train)."),
    reclassify: bool = typer.Option(
        True,
        "--reclassify/--no-reclassify",
        help="Confirm activation clusters by exclusionary reclassification (one retraining).",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of training and detectors."),
    label_column: str = LABEL_COLUMN,
    registry: str | None = REGISTRY_OPTION,
) -> None:
    """Inspect training data for poison; write report.json and report.html."""
    from mlwarden.attacks.poisoning import load_truth
    from mlwarden.defenses.poisoning import (
        DEFAULT_REMOVE_BY,
        inspect_training_data,
        inspection_detector_names,
    )
    from mlwarden.defenses.poisoning.representations import LAYERS
    from mlwarden.defenses.poisoning.training import train_classifier
    from mlwarden.models import load_model
    from mlwarden.report.inspection_writers import (
        inspection_document,
        write_inspection_reports,
    )

    if layer not in LAYERS:
        raise ConfigError(f"--layer {layer!r}: choose {' or '.join(LAYERS)}")
    if epochs < 1:
        raise ConfigError(f"--epochs must be at least 1, got {epochs}")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory")
    started = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
    recorder = Recorder(registry)
    dataset = _load(data, label_column)
    if dataset.kind == "text":
        from mlwarden.cli.data_text import inspect_text

        doc = inspect_text(
            dataset, data_spec=data, out=out, model=model, clean=clean, truth=truth,
            remove=remove, remove_by=remove_by, retrain=retrain, test_data=test_data,
            reclassify=reclassify, seed=seed, started=started,
        )  # fmt: skip
        _print_summary(doc)
        console.print(f"Report: [bold]{out / 'report.html'}[/]  (JSON: {out / 'report.json'})")
        return
    names = tuple(n.strip() for n in remove_by.split(",")) if remove_by else DEFAULT_REMOVE_BY
    known = set(inspection_detector_names())
    unknown = sorted(set(names) - known)
    if unknown:
        raise ConfigError(
            f"--remove-by: unknown detector(s) {unknown}; choose from {sorted(known)}"
        )
    holdout = load_like(clean, dataset, label_column=label_column) if clean else None
    record = load_truth(truth, n_samples=len(dataset)) if truth else None
    mask = None
    if record is not None:
        mask = np.zeros(len(dataset), dtype=bool)
        mask[record["indices"]] = True

    def fit(train: Any) -> Any:
        return train_classifier(train, seed=seed, epochs=epochs)

    classifier = None
    with progress() as bar:
        task = bar.add_task("loading", total=None)

        def on_step(description: str) -> None:
            bar.update(task, description=description)

        if model == "train":
            on_step("training a model on the data")
            classifier = fit(dataset)
        elif model is not None:
            classifier = load_model(
                model, input_shape=dataset.input_shape, clip_range=dataset.clip_range
            )
        inspection = inspect_training_data(
            dataset,
            classifier=classifier,
            clean=holdout,
            truth=mask,
            retrain=fit if reclassify and classifier is not None else None,
            layer=layer,  # type: ignore[arg-type]
            seed=seed,
            on_step=on_step,
        )
        doc = inspection_document(
            inspection.to_dict(names),
            created_at=started,
            model=model,
            truth=str(truth) if truth else None,
        )
        removal = inspection.flagged_by(names)
        if remove or retrain:
            doc["cleaned"] = _write_cleaned(dataset, removal, out, names)
        if retrain:
            on_step("retraining on the cleaned data")
            doc["retrain"] = _retrain(
                dataset, removal, classifier, fit, record, test_data, data, holdout, label_column
            )
    paths = write_inspection_reports(doc, out)
    if doc["cleaned"]:
        command = f"mlwarden data inspect --remove-by {','.join(names)} --seed {seed}"
        recorder.dataset(
            Path(doc["cleaned"]["path"]),
            sources=[data],
            digests=[dataset.digest()],
            command=command,
            label_column=label_column,
        )
    _print_summary(doc)
    console.print(f"Report: [bold]{paths['html']}[/]  (JSON: {paths['json']})")


def _write_cleaned(
    dataset: Any, removal: np.ndarray, out: Path, names: tuple[str, ...]
) -> dict[str, Any]:
    from mlwarden._io import atomic_write_text, atomic_write_with

    kept = np.flatnonzero(~removal)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, x=dataset.x[kept], y=dataset.y[kept])

    path = atomic_write_with(out / "cleaned.npz", write)
    removed = [int(i) for i in np.flatnonzero(removal)]
    atomic_write_text(
        out / "cleaned.removed.json",
        json.dumps({"removed_by": list(names), "removed_indices": removed}, indent=2) + "\n",
    )
    return {"path": str(path), "n_removed": len(removed), "n_kept": len(kept)}


def _retrain(
    dataset: Any,
    removal: np.ndarray,
    classifier: Any,
    fit: Any,
    record: dict[str, Any] | None,
    test_spec: str | None,
    data_spec: str,
    holdout: Any,
    label_column: str,
) -> dict[str, Any]:
    from mlwarden.attacks.poisoning import TriggerAttack, attack_from_truth, evaluate_backdoor
    from mlwarden.data import load_dataset

    if test_spec is not None:
        test = load_like(test_spec, dataset, label_column=label_column)
    elif data_spec.startswith("builtin:"):
        name = data_spec.split(":")[1]
        test = load_dataset(f"builtin:{name}:test")
    elif holdout is not None:
        test = holdout
    else:
        raise ConfigError("--retrain needs clean test data: give --test or --clean")
    before = classifier if classifier is not None else fit(dataset)
    after = fit(dataset.subset(np.flatnonzero(~removal)))
    attack = attack_from_truth(record) if record is not None else None
    rows: dict[str, Any] = {}
    for name, model, n_train in (
        ("before", before, len(dataset)),
        ("after", after, int((~removal).sum())),
    ):
        if isinstance(attack, TriggerAttack):
            metrics = evaluate_backdoor(model, test, attack)
            rows[name] = {
                "clean_accuracy": metrics.clean_accuracy,
                "attack_success_rate": metrics.attack_success_rate,
                "n_train": n_train,
            }
        else:
            accuracy = float(np.mean(model.predict(test.x) == test.y))
            rows[name] = {
                "clean_accuracy": accuracy,
                "attack_success_rate": None,
                "n_train": n_train,
            }
    rows["test_data"] = test.name
    return rows


def _print_summary(doc: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"Poison detectors on {doc['data']['name']} ({doc['data']['n_samples']})")
    table.add_column("detector")
    table.add_column("flagged", justify="right")
    evaluation = doc.get("evaluation")
    if evaluation:
        table.add_column("precision", justify="right")
        table.add_column("recall", justify="right")
    rows = [(d["name"], d["n_flagged"]) for d in doc["detectors"]]
    if evaluation:
        rows.append(("removal-set", evaluation["detectors"]["removal-set"]["n_flagged"]))
    for name, flagged in rows:
        cells = [name, str(flagged)]
        if evaluation:
            stats = evaluation["detectors"][name]
            cells += [f"{stats['precision']:.3f}", f"{stats['recall']:.3f}"]
        table.add_row(*cells)
    console.print(table)
    for reason in doc["skipped"]:
        console.print(f"[yellow]skipped:[/] {reason}")
    if doc.get("cleaned"):
        console.print(
            f"cleaned copy: {doc['cleaned']['path']} ({doc['cleaned']['n_removed']} removed)"
        )
    retrain = doc.get("retrain")
    if retrain:
        for name in ("before", "after"):
            row = retrain[name]
            success = row["attack_success_rate"]
            console.print(
                f"{name}: clean accuracy {row['clean_accuracy']:.1%}"
                + ("" if success is None else f", attack success {success:.1%}")
                + (
                    ""
                    if row.get("trigger_flip_rate") is None
                    else f" (trigger flips {row['trigger_flip_rate']:.1%} of correctly "
                    "classified inputs)"
                ),
                highlight=False,
            )


def _scan_pii_command() -> None:
    """``mlwarden data scan-pii``: the governance scanner, registered under ``data`` too."""
    from mlwarden.cli.governance import scan_pii

    app.command(
        "scan-pii", help="Find personal data and credentials per field (drop/mask/tokenise)."
    )(scan_pii)


_scan_pii_command()
