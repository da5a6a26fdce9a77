"""mlwarden's default black-box suite against a stronger reference on a gradient-boosted model.

Gradient-boosted trees have no gradients, so ``assess`` attacks them black-box (the standard
profile: Square Attack with 5,000 queries, then HopSkipJump with 5,000 on what Square left).
The reference spends more: Square with 10,000 queries under three seeds, each on the samples
the previous ones left correct, then HopSkipJump with 10,000 queries on the rest (the union of
the four). Model: the zoo's ``breast-cancer-gbm`` (100 trees, scikit-learn) on the
``builtin:breast-cancer`` test split, features scaled to [0, 1], L∞.

Floor (exit 1 when missed): the standard suite's robust accuracy within 1 point of the
reference's, or lower.

    python benchmarks/bench_blackbox_tabular.py [--eps 0.1] [--samples 200]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np

from mlwarden.assess import assess
from mlwarden.assess.config import AssessConfig
from mlwarden.attacks.base import Attack
from mlwarden.attacks.evasion import HopSkipJump, SquareAttack
from mlwarden.data import load_dataset
from mlwarden.models import load_model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    data = load_dataset("builtin:breast-cancer")
    model = load_model("zoo:breast-cancer-gbm")
    config = AssessConfig(
        profile="standard", epsilons=[args.eps], norm="linf", max_samples=args.samples
    )
    started = time.perf_counter()
    report = assess(model, data, config)
    ours_s = time.perf_counter() - started
    ours = report.metrics[f"robust_accuracy@{args.eps:g}"]

    sample = data.sample(args.samples, 0)  # the draw assess makes (seed 0)
    robust = model.predict(sample.x) == sample.y
    started = time.perf_counter()
    attacks: list[Attack] = [SquareAttack(eps=args.eps, seed=s, queries=10_000) for s in range(3)]
    attacks.append(HopSkipJump(eps=args.eps, seed=0, max_queries=10_000))
    for attack in attacks:
        rows = np.nonzero(robust)[0]
        if len(rows):
            robust[rows[attack.generate(model, sample.x[rows], sample.y[rows]).success]] = False
    theirs_s = time.perf_counter() - started
    theirs = float(robust.mean())
    print(
        f"{'model':<20} {'eps':>5} {'n':>4} {'standard':>9} {'reference':>9} {'s':>6} {'ref s':>6}"
    )
    print(
        f"{'breast-cancer-gbm':<20} {args.eps:>5g} {len(sample):>4} {ours:>9.1%} {theirs:>9.1%} "
        f"{ours_s:>6.1f} {theirs_s:>6.1f}"
    )
    if ours > theirs + 0.01:
        print(f"FLOOR MISSED: standard {ours:.1%} > reference {theirs:.1%} + 1pt")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
