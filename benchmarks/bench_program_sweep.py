"""Throughput of ``mlwarden program run`` on Dask distributed (issue 18): 2 workers vs 1.

A sweep of 8 assessments (zoo:digits-cnn on builtin:digits, PGD at two ε on 200 samples, each
with its own seed) runs on a local cluster of 1 worker process and then of 2 (one thread each,
127.0.0.1, as ``program run`` starts them). Workers are warmed first (torch imported, the model
loaded), so the figure is the sweep itself. Printed: each sweep's wall time, assessments per
minute, and ``speedup = throughput(2 workers) / throughput(1 worker)``; floor 1.6 on a 2-core
machine. A busy machine (other processes on the cores) lowers the speedup: the 1-minute load
average before and after is printed beside it. Both sweeps must give the same reports (checked).

Usage: ``python benchmarks/bench_program_sweep.py [--assessments N]``; exit 1 below the floor.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

from mlwarden.program.sweep import AssessmentTask, dask_client, run_sweep

FLOOR_SPEEDUP = 1.6
CONFIG = {
    "epsilons": [0.05, 0.1],
    "attacks": ["pgd"],
    "attack_params": {"pgd": {"steps": 20}},
    "max_samples": 200,
    "examples": 0,
}


def _warm() -> None:
    from mlwarden.models import load_model

    load_model("zoo:digits-cnn")


def _sweep(tasks: list[AssessmentTask], n_workers: int) -> tuple[float, list[str]]:
    with dask_client(n_workers=n_workers) as client:
        client.run(_warm)
        started = time.perf_counter()
        results = run_sweep(tasks, client=client)
        elapsed = time.perf_counter() - started
    failed = [r.error for r in results if not r.ok]
    if failed:
        raise SystemExit(f"assessments failed: {failed}")
    reports = []
    for r in results:
        doc = json.loads(Path(r.report_path or "").read_text(encoding="utf-8"))
        reports.append(json.dumps(doc["summary"]["metrics"], sort_keys=True))
    return elapsed, reports


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assessments", type=int, default=8)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _warm()  # train into the zoo cache here, never inside the timed sweeps
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "assess.yaml"
        config.write_text(yaml.safe_dump(CONFIG), encoding="utf-8")

        def tasks(tag: str) -> list[AssessmentTask]:
            return [
                AssessmentTask(
                    system=f"system-{i}",
                    model="zoo:digits-cnn",
                    data="builtin:digits",
                    config=str(config),
                    overrides={"seed": i},
                    out_dir=f"{folder}/{tag}/system-{i}",
                )
                for i in range(args.assessments)
            ]

        one_s, one_reports = _sweep(tasks("one"), 1)
        two_s, two_reports = _sweep(tasks("two"), 2)
    load_after = os.getloadavg()[0]
    if one_reports != two_reports:
        print("the 1-worker and 2-worker sweeps gave different reports", file=sys.stderr)
        return 1
    speedup = one_s / two_s
    n = args.assessments
    print(
        f"cores: {os.cpu_count()}, load average (1 min) before {load_before:.2f}, after {load_after:.2f}"
    )
    print(f"1 worker : {n} assessments in {one_s:6.1f} s  ({60 * n / one_s:5.1f} per minute)")
    print(f"2 workers: {n} assessments in {two_s:6.1f} s  ({60 * n / two_s:5.1f} per minute)")
    verdict = "ok" if speedup >= FLOOR_SPEEDUP else "BELOW FLOOR"
    print(
        f"speedup (throughput 2 workers / 1 worker): {speedup:.2f}x  floor {FLOOR_SPEEDUP}x  {verdict}"
    )
    print("identical reports from both sweeps: yes")
    return 0 if speedup >= FLOOR_SPEEDUP else 1


if __name__ == "__main__":
    sys.exit(main())
