"""Federated accuracy on digits against pooled training, and the cost of DP (issue 16).

All on ``builtin:digits`` (1,257 training, 540 held-out samples), 5 clients, 10 rounds, seed 0:

* pooled: the digits CNN trained on all the data with the clients' optimiser (SGD, lr 0.05,
  momentum 0.9, batch 32) for as many epochs as FL's rounds × local epochs (50);
* FedAvg, IID and Dirichlet(0.5) partitions, 5 local epochs per round (the defaults);
* sample-level DP at ε = 5, δ = 1e-5 per client (DP-SGD on every client, the DP digits CNN,
  2 local epochs, batch 64, lr 0.5).

Floors (the tests in tests/federated/test_federated_privacy_and_accuracy.py check them): IID
within 2 points of pooled, Dirichlet 0.5 within 5, DP within 10 of IID FedAvg.

Usage: ``python benchmarks/fl_accuracy.py``
"""

from __future__ import annotations

import os
import time
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

from mlwarden.data.builtin import load_builtin
from mlwarden.federated import (
    LocalTraining,
    SampleLevelTarget,
    run_federated,
    train_local,
)
from mlwarden.models.zoo import digits_cnn, digits_dp_cnn


def main() -> int:
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    digits = load_builtin("digits")
    torch.manual_seed(0)
    pooled = digits_cnn()
    started = time.perf_counter()
    train_local(pooled, digits.train, LocalTraining(epochs=50), seed=0)
    with torch.no_grad():
        pred = pooled(torch.from_numpy(digits.test.x)).argmax(1).numpy()
    pooled_acc = float((pred == digits.test.y).mean())
    print(f"pooled training        {pooled_acc:.4f}  ({time.perf_counter() - started:.0f} s)")
    runs = {
        "FedAvg IID": dict(make=digits_cnn, partition="iid"),
        "FedAvg Dirichlet 0.5": dict(make=digits_cnn, partition="dirichlet:0.5"),
        "DP-SGD ε=5 (IID)": dict(
            make=digits_dp_cnn,
            partition="iid",
            local=LocalTraining(epochs=2, batch_size=64, lr=0.5),
            privacy=SampleLevelTarget(epsilon=5.0, delta=1e-5),
        ),
    }
    for name, settings in runs.items():
        make = settings.pop("make")
        started = time.perf_counter()
        result = run_federated(make, digits.train, digits.test, clients=5, rounds=10, **settings)
        extra = ""
        if result.record["privacy"]:
            extra = f"  ε spent {result.record['privacy']['epsilon_spent']:.3f}"
        print(
            f"{name:<22} {result.test_accuracy:.4f}  (Δ pooled {result.test_accuracy - pooled_acc:+.4f}, "
            f"{time.perf_counter() - started:.0f} s){extra}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
