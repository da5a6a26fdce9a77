"""Fidelity of a Knockoff surrogate of zoo:digits-cnn against the query budget, per output policy.

A result, not a timing (so not a ``bench_*`` script): for query data ``random`` (uniform noise)
and ``pool`` (the digits training split), for output policies full probabilities, rounded to 2
and to 0 decimals, and label only, at budgets 250 ... 5000, over seeds 0, 1, 2. Writes
``benchmarks/results/extraction_budget.json`` and prints a Markdown table (mean ± std over seeds)
for docs/extraction.md.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/extraction_budget.py [--seeds 0,1,2] [--budget 5000]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from mlwarden.attacks.extraction import KnockoffExtraction, LocalVictim
from mlwarden.data.builtin import load_builtin
from mlwarden.models.zoo import load_zoo_model

POLICIES = {
    "probabilities": {"policy": "probabilities"},
    "rounded(2)": {"policy": "rounded", "decimals": 2},
    "rounded(0)": {"policy": "rounded", "decimals": 0},
    "label": {"policy": "label"},
}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--budget", type=int, default=5000)
    parser.add_argument("--query-data", default="random,pool")
    parser.add_argument("--out", default="benchmarks/results/extraction_budget.json")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    digits = load_builtin("digits")
    model = load_zoo_model("digits-cnn")
    rows = []
    for query_data in args.query_data.split(","):
        for label, kwargs in POLICIES.items():
            for seed in seeds:
                started = time.perf_counter()
                result = KnockoffExtraction(
                    budget=args.budget,
                    checkpoints=(250, 500, 1000, 2000),
                    query_data=query_data,
                    seed=seed,
                ).run(
                    LocalVictim(model, **kwargs),  # type: ignore[arg-type]
                    x_eval=digits.test.x,
                    y_eval=digits.test.y,
                    eval_labels=model,
                    pool=digits.train.x if query_data == "pool" else None,
                )
                for point in result.points:
                    rows.append(
                        {
                            "query_data": query_data,
                            "policy": label,
                            "seed": seed,
                            "queries": point.queries,
                            "fidelity": point.fidelity,
                            "accuracy": point.accuracy,
                        }
                    )
                print(
                    query_data,
                    label,
                    seed,
                    [(p.queries, round(p.fidelity or 0, 3)) for p in result.points],
                    f"{time.perf_counter() - started:.1f}s",
                    flush=True,
                )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps(
            {
                "rows": rows,
                "victim_accuracy": float(np.mean(model.predict(digits.test.x) == digits.test.y)),
            },
            indent=1,
        )
    )
    budgets = sorted({r["queries"] for r in rows})
    for query_data in args.query_data.split(","):
        print(f"\nquery data: {query_data} — fidelity (accuracy), mean ± std over seeds {seeds}\n")
        print("| policy | " + " | ".join(str(b) for b in budgets) + " |")
        print("|---|" + "---|" * len(budgets))
        for label in POLICIES:
            cells = []
            for budget in budgets:
                sel = [
                    r
                    for r in rows
                    if r["query_data"] == query_data
                    and r["policy"] == label
                    and r["queries"] == budget
                ]
                f = np.array([r["fidelity"] for r in sel])
                a = np.array([r["accuracy"] for r in sel])
                cells.append(f"{f.mean():.3f} ± {f.std():.3f} ({a.mean():.3f})")
            print(f"| {label} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
