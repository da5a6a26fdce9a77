"""Privacy leakage on digits: an overfit model against a DP-SGD model (issue 4 proof figures).

Figures, all measured in this run:

* membership inference (loss threshold, and offline LiRA with ``--shadows`` shadows) on an MLP
  trained to 100% training accuracy on 300 digits (members; 300 others are non-members) and on
  the same MLP trained with DP-SGD at ε = 3, δ = 1e-5 (``train_dp``; members are the digits
  train split, non-members its test split): ROC AUC, TPR at 0.1% and 1% FPR, and the largest
  Clopper-Pearson ε bound over all thresholds (``roc_epsilon_bound``);
* the empirical audit (300 mislabelled canaries, 3 runs, 700 digits): the 95% lower bound on ε
  and its interval, non-private and at ε = 3;
* MI-Face inversion of the overfit model: classes recovered and correlation with the own class
  mean against the others'.

Floors (exit 1 when missed): overfit loss AUC > 0.55; overfit audit bound > 0; DP audit bound and
DP ROC bound ≤ 3; inversion recovery above chance. Timing is not a figure here: the machine is
shared. Figures go to a table and to ``benchmarks/results/privacy.json``.

Usage: ``python benchmarks/bench_privacy.py [--shadows K] [--json PATH]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from mlwarden import __version__
from mlwarden._io import atomic_write_text
from mlwarden.attacks.privacy import LiRA, LossThresholdAttack, MIFace, run_audit
from mlwarden.attacks.privacy.dp_audit import roc_epsilon_bound
from mlwarden.data import Dataset, load_builtin
from mlwarden.models import TorchClassifier
from mlwarden.models.zoo import fit_torch

EPSILON, DELTA = 3.0, 1e-5
RECIPE = {"epochs": 60, "batch_size": 50, "lr": 3e-3}
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "privacy.json"


def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))


def wrap(module: nn.Module) -> TorchClassifier:
    return TorchClassifier(module, input_shape=(1, 8, 8), n_classes=10)


def train_overfit(data: Dataset, seed: int, **recipe: Any) -> nn.Module:
    torch.manual_seed(seed)
    return fit_torch(mlp(), data.x, data.y, seed=seed, **(recipe or RECIPE))


def train_private(data: Dataset, seed: int) -> nn.Module:
    from mlwarden.defenses.training.dp import train_dp

    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Opacus: secure RNG off, hook notices
        return train_dp(
            mlp(),
            data,
            epsilon=EPSILON,
            delta=DELTA,
            epochs=10,
            max_grad_norm=1.0,
            batch_size=256,
            lr=1.0,
            seed=seed,
        ).module


def membership(
    classifier: TorchClassifier, members: Dataset, non_members: Dataset, shadows: int
) -> dict[str, Any]:
    out = {}
    attacks: list[tuple[str, Any]] = [("loss", LossThresholdAttack())]
    if shadows:
        attacks.append(("lira", LiRA(make_model=mlp, n_shadows=shadows, seed=0, **RECIPE)))
    for name, attack in attacks:
        r = attack.run(classifier, members, non_members)
        out[name] = {
            "auc": r.metrics.auc,
            "tpr@0.001": r.metrics.tpr_at_fpr[0.001],
            "tpr@0.01": r.metrics.tpr_at_fpr[0.01],
            "tpr@0.001_measured": r.metrics.measured(0.001),
            "roc_epsilon_bound": roc_epsilon_bound(r.scores, r.is_member, delta=DELTA),
            "n": [r.metrics.n_members, r.metrics.n_non_members],
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shadows", type=int, default=16)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    splits = load_builtin("digits")
    pool = Dataset(
        name="digits-all",
        x=np.concatenate([splits.train.x, splits.test.x]),
        y=np.concatenate([splits.train.y, splits.test.y]),
        n_classes=10,
        kind="image",
    )
    order = np.random.default_rng(0).permutation(len(pool))
    members, non_members = pool.subset(np.sort(order[:300])), pool.subset(np.sort(order[300:600]))
    overfit = wrap(train_overfit(members, 0))
    private = wrap(train_private(splits.train, 0))
    figures: dict[str, Any] = {
        "train_accuracy_overfit": float((overfit.predict(members.x) == members.y).mean()),
        "test_accuracy_overfit": float((overfit.predict(non_members.x) == non_members.y).mean()),
        "test_accuracy_dp": float((private.predict(splits.test.x) == splits.test.y).mean()),
        "membership_overfit": membership(overfit, members, non_members, args.shadows),
        "membership_dp": membership(private, splits.train, splits.test, args.shadows),
    }
    audit_data = splits.train.sample(700, seed=0)
    memoriser = {"epochs": 40, "batch_size": 64, "lr": 1e-2}
    for name, fn, claimed in (
        ("audit_overfit", lambda d, s: train_overfit(d, s, **memoriser), None),
        ("audit_dp", train_private, EPSILON),
    ):
        r = run_audit(
            fn, audit_data, n_canaries=300, n_runs=3, delta=DELTA, seed=0, claimed_epsilon=claimed
        )
        figures[name] = r.to_dict()
    inversion = MIFace().run(overfit, members)
    figures["inversion_overfit"] = inversion.metrics()
    figures["seconds"] = time.perf_counter() - started

    table = Table(title="privacy leakage: overfit MLP vs DP-SGD (ε=3) MLP on digits")
    for col in ("figure", "overfit", "DP ε=3"):
        table.add_column(col)
    for attack in figures["membership_overfit"]:
        for key in ("auc", "tpr@0.001", "tpr@0.01", "roc_epsilon_bound"):
            table.add_row(
                f"{attack} {key}",
                f"{figures['membership_overfit'][attack][key]:.4f}",
                f"{figures['membership_dp'][attack][key]:.4f}",
            )
    table.add_row(
        "audit ε lower bound [CI]",
        f"{figures['audit_overfit']['epsilon_lb']:.2f} {figures['audit_overfit']['epsilon_ci']}",
        f"{figures['audit_dp']['epsilon_lb']:.2f} {figures['audit_dp']['epsilon_ci']}",
    )
    inv = figures["inversion_overfit"]
    table.add_row(
        "inversion recovered / own vs other corr.",
        f"{inv['inversion_recovery_rate']:.0%} / {inv['inversion_own_correlation']:.2f} vs {inv['inversion_other_correlation']:.2f}",
        "",
    )
    Console().print(table)
    floors = {
        "overfit loss AUC > 0.55": figures["membership_overfit"]["loss"]["auc"] > 0.55,
        "overfit audit bound > 0": figures["audit_overfit"]["epsilon_lb"] > 0,
        "DP audit bound <= 3": figures["audit_dp"]["epsilon_lb"] <= EPSILON,
        "DP ROC bound <= 3": all(
            v["roc_epsilon_bound"] <= EPSILON for v in figures["membership_dp"].values()
        ),
        "inversion above chance": inv["inversion_recovery_rate"] > 0.1,
    }
    figures["floors"] = floors
    figures["mlwarden_version"] = __version__
    atomic_write_text(args.json, json.dumps(figures, indent=2, default=str) + "\n")
    for name, ok in floors.items():
        Console().print(f"{name}: {'ok' if ok else 'MISSED'}")
    return 0 if all(floors.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
