"""Federated learning: SecAgg+ cost per round, and what gradient leakage recovers (issue 16).

Figures, all measured in this run on ``builtin:digits`` with the digits CNN
(:func:`mlwarden.models.zoo.digits_cnn`), in-process (:class:`mlwarden.federated.LocalGrid`):

* ``secagg_ratio`` = a SecAgg+ round ÷ a plain FedAvg round, 5 clients, one local epoch each
  (both through Flower's workflows, same partitions and seed). **Floor: ≤ 3×.** A round's cost
  is its fastest of ``--rounds`` rounds after the first (load on a shared machine only adds
  time; round 1 pays PyTorch's warm-up); the median of the per-round ratios is printed beside.
* ``dropout``: a SecAgg+ run where client 2 disappears after sharing its keys in round 2
  completes all its rounds (its mask is rebuilt from the survivors' shares).
* gradient leakage (inverting gradients, Geiping et al. 2020; 1,000 steps, 2 restarts) on what
  the server sees in a FedSGD round: one client's plain update at batch 1, 4 and 8; the SecAgg+
  sum of 3, 5, 10 and 20 single-sample clients; one DP-SGD update (σ = 1, C = 1). Mean PSNR and SSIM
  per reconstructed sample, beside the blank guess (the mean training image).

Figures go to a table on stdout and to ``benchmarks/results/federated.json``; exit code 1 when
the floor is missed.

Usage: ``python benchmarks/bench_federated.py [--rounds N] [--json PATH]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

from mlwarden.attacks.privacy.gradient_leakage import GradientLeakage
from mlwarden.data.builtin import load_builtin
from mlwarden.errors import SecurityWarning
from mlwarden.federated import (
    Dropout,
    LocalTraining,
    SecureAggregation,
    run_federated,
)
from mlwarden.federated.leakage import leakage_experiment, server_view
from mlwarden.models.zoo import digits_cnn

FLOOR = 3.0
HERE = Path(__file__).resolve().parent


def round_times(secure: bool, rounds: int) -> list[float]:
    splits = load_builtin("digits")
    result = run_federated(
        digits_cnn,
        splits.train,
        splits.test,
        clients=5,
        rounds=rounds,
        local=LocalTraining(epochs=1),
        secure_aggregation=SecureAggregation() if secure else None,
    )
    return [r.seconds for r in result.curve[1:]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--json", type=Path, default=HERE / "results" / "federated.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", SecurityWarning)

    plain = round_times(False, args.rounds)[1:]
    secure = round_times(True, args.rounds)[1:]
    ratio = min(secure) / min(plain)
    median_ratio = statistics.median(s / p for s, p in zip(secure, plain, strict=True))
    splits = load_builtin("digits")
    dropped = run_federated(
        digits_cnn,
        splits.train,
        splits.test,
        clients=5,
        rounds=3,
        local=LocalTraining(epochs=1),
        secure_aggregation=SecureAggregation(),
        dropouts=[Dropout(partition_id=2, after_messages=4 + 2)],
    )
    print("SecAgg+ cost, 5 clients, 1 local epoch (fastest round after the first)")
    print(f"  plain round   {min(plain) * 1e3:8.1f} ms")
    print(f"  SecAgg+ round {min(secure) * 1e3:8.1f} ms")
    print(
        f"  ratio         {ratio:8.2f}×  (median per-round {median_ratio:.2f}×; floor ≤ {FLOOR}×)"
    )
    print(
        f"  dropout run: {len(dropped.curve) - 1}/3 rounds, final accuracy "
        f"{dropped.test_accuracy:.3f}"
    )

    attack = GradientLeakage(iterations=1000, restarts=2)
    blank = splits.train.x.mean(0)
    cases = [
        ("plain", 1, 1),
        ("plain", 4, 1),
        ("plain", 8, 1),
        ("secagg", 1, 3),
        ("secagg", 1, 5),
        ("secagg", 1, 10),
        ("secagg", 1, 20),
        ("dp", 1, 1),
    ]
    leakage = []
    print("\nGradient leakage (inverting gradients) on what the server sees, FedSGD round")
    print(
        f"  {'view':<8}{'clients':>8}{'batch':>6}{'PSNR dB':>9}{'blank dB':>9}{'SSIM':>7}  labels  seconds"
    )
    for view, batch, clients in cases:
        started = time.perf_counter()
        observed = server_view(
            digits_cnn,
            splits.train,
            view=view,
            batch_size=batch,
            clients=clients,  # type: ignore[arg-type]
        )
        _, scores = leakage_experiment(observed, attack, batch_size=batch, blank=blank)
        seconds = time.perf_counter() - started
        scores.pop("originals")
        row = {"view": view, "batch": batch, "clients": clients, "seconds": seconds, **scores}
        leakage.append(row)
        print(
            f"  {view:<8}{clients:>8}{batch:>6}{scores['mean_psnr_db']:9.1f}"
            f"{scores['mean_blank_psnr_db']:9.1f}{scores['mean_ssim']:7.3f}  "
            f"{'yes' if scores.get('labels_recovered') else 'no ':<6}  {seconds:7.1f}"
        )

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "plain_round_seconds": plain,
                "secagg_round_seconds": secure,
                "secagg_ratio": ratio,
                "secagg_median_ratio": median_ratio,
                "floor": FLOOR,
                "dropout_rounds_completed": len(dropped.curve) - 1,
                "leakage": leakage,
            },
            indent=2,
        )
    )
    if ratio > FLOOR:
        print(f"FLOOR MISSED: SecAgg+ round {ratio:.2f}× plain > {FLOOR}×", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
