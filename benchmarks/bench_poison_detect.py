"""Poison-detection cost: each detector's time ÷ one forward pass over the training set.

Figures (issue 5), measured in this run on the digits training set (1,257 samples) poisoned
with a 2×2 BadNets patch at 5% (57 samples, target class 0) and a digits CNN trained on it:

* ``spectral signatures``: hidden activations + per-class SVD + ranking;
* ``activation clustering``: hidden activations + per-class PCA, 2-means and silhouette
  (without the exclusionary reclassification, which is one retraining of the model: its cost is
  reported as ``... + reclassification`` for information);
* ``STRIP fit``: fit (drawing the overlays) and calibration on the clean half of the test split
  plus scoring the whole training set, i.e. ``n_overlays`` (20) blended forward passes per
  sample, so its ratio is about 20 by construction;
* ``confident learning``: 5-fold cross-validated logistic-regression probabilities + the
  confident joint + prune by noise rate (model-free: the ratio compares it with the CNN's pass
  only as a yardstick).

How it is measured: each of ``--rounds`` rounds times ``BASELINE_PASSES`` forward passes over
the training set (batched as the detectors batch them, 512), then each detector once, then
the passes again; a round's ratio is the detector's time ÷ the mean of that round's passes.
The figures are the medians over rounds, so load spikes on the shared machine hit both sides
of a ratio. The detectors' precision and recall against the ground truth are reported too.

Floors (exit 1 when missed) are loose ceilings that catch an accidental quadratic loop or a
per-sample Python loop, not tuning targets: spectral ≤ 60, activation clustering ≤ 400,
STRIP ≤ 60, confident learning ≤ 600 forward passes.

torch runs on one thread by default (``--threads``), which keeps the ratios steady when other
processes share the cores.

Usage: ``python benchmarks/bench_poison_detect.py [--rounds N] [--threads N] [--json PATH]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from mlwarden import __version__
from mlwarden._io import atomic_write_text
from mlwarden.attacks.poisoning import BadNets, evaluate_backdoor
from mlwarden.data import load_builtin
from mlwarden.defenses.detectors import STRIP
from mlwarden.defenses.poisoning import (
    ActivationClustering,
    SpectralSignatures,
    hidden_activations,
    label_errors,
    precision_recall,
    train_classifier,
)

SEED = 0
BASELINE_PASSES = 5
DEFAULT_ROUNDS = 5
FLOORS = {
    "spectral signatures": 60.0,
    "activation clustering": 400.0,
    "STRIP fit": 60.0,
    "confident learning": 600.0,
}
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "poison_detect.json"


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Wall time of one call of ``fn`` in seconds, and what it returned."""
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    console = Console()

    splits = load_builtin("digits")
    attack = BadNets(rate=0.05, target_class=0, patch_size=2, seed=SEED)
    poison = attack.poison(splits.train)
    data, truth = poison.dataset, poison.mask
    model = train_classifier(data, seed=SEED)
    clean_half, holdout_half = splits.test.x[::2], splits.test.x[1::2]

    def forward_pass() -> np.ndarray:
        return model.predict_proba(data.x)

    def spectral() -> Any:
        features = hidden_activations(model, data.x)
        return SpectralSignatures().detect(features, data.y)

    def clustering() -> Any:
        features = hidden_activations(model, data.x)
        return ActivationClustering(seed=SEED).detect(features, data.y)

    def strip() -> Any:
        detector = STRIP(model, seed=SEED).fit(clean_half).calibrate(holdout_half, fpr=0.01)
        return detector.score(data.x) > detector.threshold_

    def confident_learning() -> Any:
        return label_errors(data, seed=SEED)

    def reclassified() -> Any:
        features = hidden_activations(model, data.x)
        return ActivationClustering(seed=SEED).detect(
            features,
            data.y,
            reclassify=lambda keep: train_classifier(
                data.subset(np.flatnonzero(keep)), seed=SEED
            ).predict(data.x),
        )

    detectors: dict[str, Callable[[], Any]] = {
        "spectral signatures": spectral,
        "activation clustering": clustering,
        "STRIP fit": strip,
        "confident learning": confident_learning,
    }
    for fn in (forward_pass, *detectors.values()):  # warm-up
        fn()
    ratios: dict[str, list[float]] = {name: [] for name in detectors}
    passes_ms: list[float] = []
    seconds: dict[str, list[float]] = {name: [] for name in detectors}
    outputs: dict[str, Any] = {}
    for _ in range(args.rounds):
        for name, fn in detectors.items():
            before = [timed(forward_pass)[0] for _ in range(BASELINE_PASSES)]
            elapsed, outputs[name] = timed(fn)
            after = [timed(forward_pass)[0] for _ in range(BASELINE_PASSES)]
            baseline = statistics.mean(before + after)
            passes_ms.extend(1000 * t for t in before + after)
            ratios[name].append(elapsed / baseline)
            seconds[name].append(elapsed)
    reclass_time, reclass_flags = timed(reclassified)
    reclass_ratio = reclass_time / statistics.median(passes_ms) * 1000

    quality = {
        "spectral signatures": precision_recall(outputs["spectral signatures"].flagged, truth),
        "activation clustering": precision_recall(outputs["activation clustering"].flagged, truth),
        "STRIP fit": precision_recall(outputs["STRIP fit"], truth),
        "confident learning": precision_recall(outputs["confident learning"].flagged, truth),
    }
    backdoor = evaluate_backdoor(model, splits.test, attack)

    table = Table(title=f"Poison detection ÷ one forward pass over {len(data)} training samples")
    for column in ("detector", "ratio (median)", "rounds min–max", "seconds", "floor", "P / R"):
        table.add_column(column, justify="left" if column == "detector" else "right")
    rows = []
    failed = False
    for name in detectors:
        median = statistics.median(ratios[name])
        ok = median <= FLOORS[name]
        failed |= not ok
        precision, recall = quality[name]
        rows.append(
            {
                "detector": name,
                "ratio_median": median,
                "ratio_min": min(ratios[name]),
                "ratio_max": max(ratios[name]),
                "seconds_median": statistics.median(seconds[name]),
                "floor": FLOORS[name],
                "passed": ok,
                "precision": precision,
                "recall": recall,
            }
        )
        table.add_row(
            name,
            f"{median:.1f}",
            f"{min(ratios[name]):.1f}–{max(ratios[name]):.1f}",
            f"{statistics.median(seconds[name]):.3f}",
            f"≤ {FLOORS[name]:g}" + ("" if ok else " [bold red]MISSED[/]"),
            f"{precision:.2f} / {recall:.2f}",
        )
    rc_precision, rc_recall = precision_recall(reclass_flags.flagged, truth)
    table.add_row(
        "activation clustering + reclassification (info)",
        f"{reclass_ratio:.0f}",
        "1 run",
        f"{reclass_time:.2f}",
        "",
        f"{rc_precision:.2f} / {rc_recall:.2f}",
    )
    console.print(table)
    console.print(
        f"one forward pass over the training set: median {statistics.median(passes_ms):.2f} ms; "
        f"backdoor: success {backdoor.attack_success_rate:.1%}, clean accuracy "
        f"{backdoor.clean_accuracy:.1%}"
    )
    result = {
        "benchmark": "poison_detect",
        "mlwarden_version": __version__,
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "rounds": args.rounds,
        "torch_threads": args.threads,
        "n_train": len(data),
        "n_poisoned": int(truth.sum()),
        "forward_pass_ms_median": statistics.median(passes_ms),
        "detectors": rows,
        "reclassification": {
            "ratio": reclass_ratio,
            "seconds": reclass_time,
            "precision": rc_precision,
            "recall": rc_recall,
        },
        "backdoor": backdoor.to_dict(),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
