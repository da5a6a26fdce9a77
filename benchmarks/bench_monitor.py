"""Extraction-monitor throughput: ``ExtractionMonitor.observe`` per query ÷ one model forward.

Figure (issue 7): the gateway calls the monitor once per request, after the model. Its cost per
query, in steady state (every ring buffer full: 2,000 queries of one key observed first, with
the digits training split as the reference sample, all four statistics on, the PRADA test every
10 queries), is compared with one forward pass of ``zoo:digits-cnn`` on a batch of one through
``Classifier.predict_proba``, measured in the same rounds.

Each of ``--rounds`` rounds times ``N`` forwards, ``N`` observations (one query each, from a
held-out digits stream, so no alert path is exercised after the first) and ``N`` forwards
again; a round's ratio is its mean observation time ÷ the mean of its forwards, and the figure
is the median over rounds (pairing within a round keeps the figure honest on a shared, noisy
machine). Floor: ratio ≤ 2 (the monitor costs at most two forwards of the model it protects).
The absolute µs per observation is reported for information.

Writes a table to stdout and ``benchmarks/results/monitor.json``; exit 1 when the floor is missed.

Usage: ``python benchmarks/bench_monitor.py [--rounds N] [--per-round N]``
"""

from __future__ import annotations

import os

# One thread for BLAS and PyTorch: the monitor's products and a batch-1 forward are far too small
# to gain from more, and on a shared machine extra threads only add contention to both sides.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from mlwarden import __version__
from mlwarden._io import atomic_write_text
from mlwarden.data.builtin import load_builtin
from mlwarden.models.zoo import load_zoo_model
from mlwarden.serve.monitor import ExtractionMonitor, MonitorConfig

RATIO_FLOOR = 2.0
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "monitor.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--per-round", type=int, default=100)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()
    torch.set_num_threads(1)

    digits = load_builtin("digits")
    model = load_zoo_model("digits-cnn")
    monitor = ExtractionMonitor(MonitorConfig(), reference=digits.train.x)
    rng = np.random.default_rng(0)
    prime = digits.train.x[rng.choice(len(digits.train.x), 2000)]
    prime = np.clip(prime + 0.05 * rng.standard_normal(prime.shape), 0, 1).astype(np.float32)
    monitor.observe("bench", "digits", prime, model.predict_proba(prime))
    stream = digits.test.x
    stream_probs = model.predict_proba(stream)

    def forwards(n: int, offset: int) -> float:
        start = time.perf_counter()
        for i in range(n):
            j = (offset + i) % len(stream)
            model.predict_proba(stream[j : j + 1])
        return (time.perf_counter() - start) / n

    def observations(n: int, offset: int) -> float:
        start = time.perf_counter()
        for i in range(n):
            j = (offset + i) % len(stream)
            monitor.observe("bench", "digits", stream[j : j + 1], stream_probs[j : j + 1])
        return (time.perf_counter() - start) / n

    forwards(50, 0)
    observations(50, 0)  # warm-up
    ratios, observe_us, forward_us = [], [], []
    for r in range(args.rounds):
        before = forwards(args.per_round, r)
        observed = observations(args.per_round, r * args.per_round)
        after = forwards(args.per_round, r)
        baseline = (before + after) / 2
        ratios.append(observed / baseline)
        observe_us.append(observed * 1e6)
        forward_us.append(baseline * 1e6)
    ratio = statistics.median(ratios)
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    state = monitor.state("bench", "digits")
    result = {
        "figure": "monitor observe() per query / one forward of batch 1",
        "model": "zoo:digits-cnn",
        "ratio_median": ratio,
        "ratio_iqr": [q1, q3],
        "observe_us_median": statistics.median(observe_us),
        "forward_us_median": statistics.median(forward_us),
        "floor": RATIO_FLOOR,
        "passed": ratio <= RATIO_FLOOR,
        "rounds": args.rounds,
        "per_round": args.per_round,
        "stream_queries": state["queries"],
        "mlwarden": __version__,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "load_average": os.getloadavg(),
    }
    table = Table(title="Extraction monitor throughput (steady state, zoo:digits-cnn)")
    for column in ("observe µs/query", "forward µs (batch 1)", "ratio (median)", "IQR", "floor"):
        table.add_column(column)
    table.add_row(
        f"{result['observe_us_median']:.0f}",
        f"{result['forward_us_median']:.0f}",
        f"{ratio:.2f}",
        f"{q1:.2f}–{q3:.2f}",
        f"≤ {RATIO_FLOOR}",
    )
    Console().print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.json, json.dumps(result, indent=2))
    if not result["passed"]:
        print(f"FLOOR MISSED: ratio {ratio:.2f} > {RATIO_FLOOR}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
