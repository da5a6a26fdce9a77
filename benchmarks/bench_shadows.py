"""LiRA shadow training: all shadows stacked in one ``torch.vmap`` pass against one at a time.

Figure (issue 4): ``speed-up`` = wall time of training ``K`` shadow models one after another
(``mlwarden.models.zoo.fit_torch``, the loop a LiRA implementation would write) ÷ wall time of
training the same ``K`` models stacked (``mlwarden.attacks.privacy._shadows.train_stacked``),
same recipe (Adam, cross-entropy, same epochs, batch size and data halves). Floor: ≥ 2 for
``K = 16`` digits MLPs (64 → 128 → 10) on a 600-sample pool.

How it is measured: each of ``--rounds`` rounds times one sequential and one stacked run back to
back (order alternating), and the round's speed-up is their ratio; the figure checked against the
floor is the median over rounds, so load changes on a shared machine hit both sides of a round.
The two sides train the same models up to float rounding; both reach the same training accuracy,
which is printed as a check.

Usage: ``python benchmarks/bench_shadows.py [--rounds N] [--shadows K] [--json PATH]``
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from mlwarden import __version__
from mlwarden._io import atomic_write_text
from mlwarden.attacks.privacy._shadows import train_stacked
from mlwarden.attacks.privacy.lira import complementary_keep
from mlwarden.data import load_builtin
from mlwarden.models.zoo import fit_torch

POOL = 600
EPOCHS = 20
BATCH = 64
LR = 1e-3
SPEEDUP_FLOOR = 2.0
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "shadows.json"


def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--shadows", type=int, default=16)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args(argv)
    train = load_builtin("digits").train.sample(POOL, seed=0)
    keep = complementary_keep(args.shadows, len(train), seed=0)

    def sequential() -> float:
        correct = 0.0
        for k, row in enumerate(keep):
            torch.manual_seed(k)
            model = fit_torch(
                mlp(), train.x[row], train.y[row], seed=k, epochs=EPOCHS, batch_size=BATCH, lr=LR
            )
            with torch.no_grad():
                correct += float(
                    (model(torch.from_numpy(train.x[row])).argmax(1).numpy() == train.y[row]).mean()
                )
        return correct / len(keep)

    def stacked() -> float:
        models = train_stacked(
            mlp, train.x, train.y, keep, epochs=EPOCHS, lr=LR, batch_size=BATCH, seed=0
        )
        pred = models.logits(torch.from_numpy(train.x)).argmax(-1).numpy()
        return float(((pred == train.y) & keep).sum() / keep.sum())

    stacked()  # warm-up
    rows = []
    for r in range(args.rounds):
        order = (sequential, stacked) if r % 2 == 0 else (stacked, sequential)
        times: dict[str, float] = {}
        accuracy: dict[str, float] = {}
        for fn in order:
            start = time.perf_counter()
            accuracy[fn.__name__] = fn()
            times[fn.__name__] = time.perf_counter() - start
        rows.append(
            {
                **{f"{k}_s": v for k, v in times.items()},
                **{f"{k}_train_accuracy": v for k, v in accuracy.items()},
                "speedup": times["sequential"] / times["stacked"],
            }
        )
    speedup = statistics.median(r["speedup"] for r in rows)
    table = Table(title=f"{args.shadows} shadow MLPs, {POOL}-sample pool, {EPOCHS} epochs")
    for col in ("round", "sequential s", "stacked s", "speed-up", "train acc seq / stacked"):
        table.add_column(col)
    for i, r in enumerate(rows):
        table.add_row(
            str(i),
            f"{r['sequential_s']:.2f}",
            f"{r['stacked_s']:.2f}",
            f"{r['speedup']:.2f}",
            f"{r['sequential_train_accuracy']:.3f} / {r['stacked_train_accuracy']:.3f}",
        )
    console = Console()
    console.print(table)
    passed = speedup >= SPEEDUP_FLOOR
    console.print(
        f"median speed-up {speedup:.2f} (floor ≥ {SPEEDUP_FLOOR}): {'ok' if passed else 'MISSED'}"
    )
    atomic_write_text(
        args.json,
        json.dumps(
            {
                "benchmark": "shadows",
                "mlwarden_version": __version__,
                "torch_version": torch.__version__,
                "platform": platform.platform(),
                "threads": torch.get_num_threads(),
                "shadows": args.shadows,
                "pool": POOL,
                "epochs": EPOCHS,
                "rounds": rows,
                "speedup_median": speedup,
                "speedup_floor": SPEEDUP_FLOOR,
                "passed": passed,
            },
            indent=2,
        )
        + "\n",
    )
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
