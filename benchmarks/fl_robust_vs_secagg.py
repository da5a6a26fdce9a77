"""Robust aggregation against a model-replacement backdoor, with and without SecAgg+ (issue 16).

One of 5 clients plants a BadNets trigger by model replacement (Bagdasaryan et al. 2020: train
on triggered samples relabelled to class 0, send ``G + 5 (X - G)``) in every round of 8;
``builtin:digits``, IID partitions, digits CNN, 1 local epoch, seed 0. For each aggregator
(FedAvg, FedMedian, FedTrimmedAvg β = 0.2, Krum f = 1), with plain aggregation and with SecAgg+:
held-out accuracy and backdoor success (share of triggered test images of other classes
classified as 0) after the last round, and per round.

Under SecAgg+ the server holds only the sum: Flower hands every robust strategy the same
aggregate for each client, so the median, the trimmed mean and Krum all return the plain
average, and the attacker's boosted update goes through. That is the tension: robust
aggregation needs to see single updates, secure aggregation exists to hide them.

Writes a table to stdout, ``benchmarks/results/fl_robust_vs_secagg.json`` and the figure
``docs/figures/fl-robust-vs-secagg.png``.

Usage: ``python benchmarks/fl_robust_vs_secagg.py``
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from mlwarden.data.builtin import load_builtin
from mlwarden.federated import Backdoor, LocalTraining, SecureAggregation, run_federated
from mlwarden.models.zoo import digits_cnn

HERE = Path(__file__).resolve().parent
ROUNDS = 8
AGGREGATORS = ("fedavg", "fedmedian", "fedtrimmedavg", "krum")


def main() -> int:
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    splits = load_builtin("digits")
    rows = []
    baseline = run_federated(
        digits_cnn,
        splits.train,
        splits.test,
        clients=5,
        rounds=ROUNDS,
        local=LocalTraining(epochs=1),
    )
    rows.append(
        {
            "aggregator": "fedavg",
            "secagg": False,
            "attack": False,
            "accuracy": baseline.test_accuracy,
            "backdoor": None,
            "curve": None,
        }
    )
    for secagg in (False, True):
        for aggregator in AGGREGATORS:
            result = run_federated(
                digits_cnn,
                splits.train,
                splits.test,
                clients=5,
                rounds=ROUNDS,
                local=LocalTraining(epochs=1),
                aggregator=aggregator,
                secure_aggregation=SecureAggregation() if secagg else None,
                backdoor=Backdoor(partition_id=0, boost=5.0),
            )
            curve = [r.backdoor_success for r in result.curve]
            rows.append(
                {
                    "aggregator": aggregator,
                    "secagg": secagg,
                    "attack": True,
                    "accuracy": result.test_accuracy,
                    "backdoor": curve[-1],
                    "curve": curve,
                }
            )
            print(
                f"{aggregator:<14} secagg={'on ' if secagg else 'off'}  accuracy "
                f"{result.test_accuracy:.3f}  backdoor success {curve[-1]:.3f}",
                flush=True,
            )
    print(f"no attack (fedavg): accuracy {baseline.test_accuracy:.3f}")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "fl_robust_vs_secagg.json").write_text(json.dumps(rows, indent=2))

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    attacked = [r for r in rows if r["attack"]]
    width = 0.38
    for offset, secagg, color in ((-width / 2, False, "#4878d0"), (width / 2, True, "#ee854a")):
        values = [r["backdoor"] for r in attacked if r["secagg"] is secagg]
        xs = [i + offset for i in range(len(AGGREGATORS))]
        left.bar(xs, values, width, color=color, label="SecAgg+" if secagg else "plain")
    left.set_xticks(range(len(AGGREGATORS)), AGGREGATORS)
    left.set_ylabel("backdoor success after last round")
    left.set_ylim(0, 1.05)
    left.set_title("Model-replacement backdoor (1 of 5 clients)")
    left.legend()
    for r in attacked:
        style = "-" if r["secagg"] else "--"
        right.plot(
            range(ROUNDS + 1),
            r["curve"],
            style,
            marker="o",
            markersize=3,
            label=f"{r['aggregator']} {'SecAgg+' if r['secagg'] else 'plain'}",
        )
    right.set_xlabel("round")
    right.set_ylabel("backdoor success")
    right.set_ylim(-0.02, 1.02)
    right.set_title("Per round (solid: SecAgg+, dashed: plain)")
    right.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    out = HERE.parent / "docs" / "figures" / "fl-robust-vs-secagg.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, metadata={"Software": None})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
