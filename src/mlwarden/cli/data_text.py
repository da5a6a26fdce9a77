"""``mlwarden data inspect`` on text data: the text detectors, removal and retraining.

Called by :mod:`mlwarden.cli.data` when the data are texts; writes the same report (JSON and
HTML) as the array checks. ``--model train`` trains TF-IDF + logistic regression on the data;
a saved text model (``.skops`` or ``.pt2``) is loaded instead when given, and retraining uses
the same family.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mlwarden.cli._console import progress
from mlwarden.errors import ConfigError

__all__ = ["inspect_text"]


def _fit_family(classifier: Any, seed: int) -> Any:
    """A function training the classifier's family on texts, returning its ``predict``."""
    from mlwarden.models.text import TorchTextClassifier, fit_embedding_bag, fit_tfidf_logreg

    def fit(texts: list[str], labels: np.ndarray) -> Any:
        if isinstance(classifier, TorchTextClassifier):
            return fit_embedding_bag(texts, labels, seed=seed).predict
        return fit_tfidf_logreg(texts, labels, seed=seed).predict

    return fit


def _load(spec: str, n_classes: int) -> Any:
    """Text data named by ``spec``: ``.jsonl`` or ``builtin:NAME`` (its test split)."""
    from mlwarden.attacks.poisoning import load_text_jsonl
    from mlwarden.data import load_dataset

    if spec.endswith(".jsonl"):
        return load_text_jsonl(spec, n_classes=n_classes)
    dataset = load_dataset(spec)
    if dataset.kind != "text":
        raise ConfigError(f"{spec} is not text data")
    return dataset


def inspect_text(
    dataset: Any,
    *,
    data_spec: str,
    out: Path,
    model: str | None,
    clean: str | None,
    truth: Path | None,
    remove: bool,
    remove_by: str | None,
    retrain: bool,
    test_data: str | None,
    reclassify: bool,
    seed: int,
    started: str,
) -> dict[str, Any]:
    """Run :func:`~mlwarden.defenses.poisoning.inspect_text_data` and write the reports.

    Returns the report document (also written to ``out/report.json``).
    """
    from mlwarden.attacks.poisoning import load_truth
    from mlwarden.defenses.poisoning import inspect_text_data
    from mlwarden.defenses.poisoning.text_inspection import TEXT_DEFAULT_REMOVE_BY, TEXT_DETECTORS
    from mlwarden.models import load_model
    from mlwarden.models.text import fit_tfidf_logreg
    from mlwarden.report.inspection_writers import (
        inspection_document,
        write_inspection_reports,
    )

    names = tuple(n.strip() for n in remove_by.split(",")) if remove_by else TEXT_DEFAULT_REMOVE_BY
    unknown = sorted(set(names) - set(TEXT_DETECTORS))
    if unknown:
        raise ConfigError(
            f"--remove-by: unknown detector(s) {unknown} for text; choose from {list(TEXT_DETECTORS)}"
        )
    holdout = _load(clean, dataset.n_classes) if clean else None
    record = load_truth(truth, n_samples=len(dataset)) if truth else None
    mask = None
    if record is not None:
        mask = np.zeros(len(dataset), dtype=bool)
        mask[record["indices"]] = True
    with progress() as bar:
        task = bar.add_task("loading", total=None)

        def on_step(description: str) -> None:
            bar.update(task, description=description)

        classifier: Any = None
        if model == "train":
            on_step("training TF-IDF + logistic regression on the data")
            classifier = fit_tfidf_logreg(dataset.x, dataset.y, seed=seed)
        elif model is not None:
            classifier = load_model(model, n_classes=dataset.n_classes)
        fit = _fit_family(classifier, seed)
        inspection = inspect_text_data(
            dataset,
            classifier=classifier,
            clean=holdout,
            truth=mask,
            fit=fit if reclassify else None,
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
            doc["retrain"] = _retrain(dataset, removal, fit, record, test_data, data_spec, holdout)
    write_inspection_reports(doc, out)
    return doc


def _write_cleaned(
    dataset: Any, removal: np.ndarray, out: Path, names: tuple[str, ...]
) -> dict[str, Any]:
    from mlwarden._io import atomic_write_text

    kept = np.flatnonzero(~removal)
    lines = (
        json.dumps({"text": str(dataset.x[i]), "label": int(dataset.y[i])}, ensure_ascii=False)
        for i in kept
    )
    path = atomic_write_text(out / "cleaned.jsonl", "\n".join(lines) + "\n")
    removed = [int(i) for i in np.flatnonzero(removal)]
    atomic_write_text(
        out / "cleaned.removed.json",
        json.dumps({"removed_by": list(names), "removed_indices": removed}, indent=2) + "\n",
    )
    return {"path": str(path), "n_removed": len(removed), "n_kept": len(kept)}


def _retrain(
    dataset: Any,
    removal: np.ndarray,
    fit: Any,
    record: dict[str, Any] | None,
    test_spec: str | None,
    data_spec: str,
    holdout: Any,
) -> dict[str, Any]:
    from mlwarden.attacks.poisoning import TriggerAttack, attack_from_truth
    from mlwarden.data import load_dataset

    if test_spec is not None:
        test = _load(test_spec, dataset.n_classes)
    elif data_spec.startswith("builtin:"):
        test = load_dataset(f"builtin:{data_spec.split(':')[1]}:test")
    elif holdout is not None:
        test = holdout
    else:
        raise ConfigError("--retrain needs clean test data: give --test or --clean")
    attack = attack_from_truth(record) if record is not None else None
    texts = [str(t) for t in dataset.x]
    rows: dict[str, Any] = {}
    for name, keep in (("before", np.ones(len(dataset), bool)), ("after", ~removal)):
        kept = np.flatnonzero(keep)
        predict = fit([texts[i] for i in kept], dataset.y[kept])
        accuracy = float(np.mean(predict([str(t) for t in test.x]) == test.y))
        success = flips = None
        if isinstance(attack, TriggerAttack):
            others = test.y != attack.target_class
            triggered = attack.apply_trigger(test.x[others], test.clip_range)
            hit = predict([str(t) for t in triggered]) == attack.target_class
            correct = predict([str(t) for t in test.x[others]]) == test.y[others]
            success = float(np.mean(hit))
            flips = float(np.mean(hit[correct])) if correct.any() else None
        rows[name] = {
            "clean_accuracy": accuracy,
            "attack_success_rate": success,
            "trigger_flip_rate": flips,
            "n_train": len(kept),
        }
    rows["test_data"] = test.name
    return rows
