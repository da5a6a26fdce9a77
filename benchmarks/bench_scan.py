"""Artifact-scan throughput (issue 6): MB/s on a ~200 MB PyTorch checkpoint, never unpickling it.

Figures, all measured in this run on files written to a temporary folder:

* ``checkpoint`` = size of a ``torch.save`` zip checkpoint (a state dict of large float32
  tensors plus many small ones, ~200 MB) ÷ median wall time of :func:`mlwarden.supplychain.scan.
  scan_paths` on it. Floor: > 100 MB/s. The scanner reads the zip directory and every ``.pkl``
  member opcode by opcode; the tensor storages are not parsed (they are only checked for a
  nested archive), which is why the figure is far above disk speed.
* baselines on the same file, same run: ``torch.load(weights_only=True)`` (the safe way to load
  it) and a plain sequential read of its bytes; the scan's cost is printed as a fraction of each.
* ``legacy`` = the same state dict saved with ``_use_new_zipfile_serialization=False`` (pickles
  followed by raw tensor bytes, read as a stream): size ÷ scan time.
* ``opcode-bound`` = a ~20 MB pickle made only of small Python objects (every byte is an opcode
  or its argument): size ÷ scan time. The worst case for a pure-Python opcode reader; reported,
  not gated.

The files sit in the page cache (they were just written), so the figures measure the scanner,
not the disk. Results go to a table on stdout and to ``benchmarks/results/scan.json``; the exit
code is 1 when the checkpoint figure misses its floor.

Usage: ``python benchmarks/bench_scan.py [--rounds N] [--size-mb MB] [--json PATH]``
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from mlwarden import __version__
from mlwarden._io import atomic_write_text
from mlwarden.supplychain.scan import scan_paths

FLOOR_MB_S = 100.0
DEFAULT_ROUNDS = 5
DEFAULT_SIZE_MB = 200
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "scan.json"
MB = 1e6


def state_dict(size_mb: int) -> dict[str, torch.Tensor]:
    """Large weight matrices plus biases and norms, like a real network's state dict."""
    generator = torch.Generator().manual_seed(0)
    tensors: dict[str, torch.Tensor] = {}
    layer_floats = 2 * 1024 * 1024  # 8 MiB per weight matrix
    n_layers = max(1, int(size_mb * MB) // (layer_floats * 4))
    for i in range(n_layers):
        tensors[f"layers.{i}.weight"] = torch.randn(2048, 1024, generator=generator)
        tensors[f"layers.{i}.bias"] = torch.randn(2048, generator=generator)
        tensors[f"layers.{i}.norm.weight"] = torch.ones(1024)
        tensors[f"layers.{i}.norm.running_mean"] = torch.zeros(1024)
        tensors[f"layers.{i}.norm.num_batches_tracked"] = torch.tensor(0)
    return tensors


def opcode_heavy(n_records: int) -> object:
    """Small Python objects only: the pickle is opcodes end to end."""
    return [
        {"id": i, "name": f"token-{i}", "score": i * 0.5, "tags": ("a", "b"), "ok": i % 2 == 0}
        for i in range(n_records)
    ]


def median_time(fn: Callable[[], Any], rounds: int) -> tuple[float, list[float]]:
    """Median wall time of ``fn`` over ``rounds`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def read_all(path: Path) -> None:
    with open(path, "rb") as handle:
        while handle.read(16 << 20):
            pass


def scan_clean(path: Path) -> None:
    report = scan_paths([path])
    if report.issues:
        raise SystemExit(f"benchmark file {path} unexpectedly has issues: {report.issues[:3]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    parser.add_argument("--size-mb", type=int, default=DEFAULT_SIZE_MB)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args(argv)
    console = Console()

    with tempfile.TemporaryDirectory(prefix="mlwarden-bench-scan-") as scratch:
        root = Path(scratch)
        weights = state_dict(args.size_mb)
        checkpoint, legacy, records = root / "model.pt", root / "legacy.pth", root / "records.pkl"
        torch.save(weights, checkpoint)
        torch.save(weights, legacy, _use_new_zipfile_serialization=False)
        records.write_bytes(pickle.dumps(opcode_heavy(250_000), protocol=4))
        del weights
        sizes = {p.name: p.stat().st_size for p in (checkpoint, legacy, records)}

        scan_s, scan_rounds = median_time(lambda: scan_clean(checkpoint), args.rounds)
        load_s, _ = median_time(
            lambda: torch.load(checkpoint, weights_only=True, map_location="cpu"), args.rounds
        )
        read_s, _ = median_time(lambda: read_all(checkpoint), args.rounds)
        legacy_s, _ = median_time(lambda: scan_clean(legacy), args.rounds)
        records_s, _ = median_time(lambda: scan_clean(records), max(1, args.rounds // 2))

    checkpoint_mb_s = sizes["model.pt"] / MB / scan_s
    figures = {
        "checkpoint_mb_s": checkpoint_mb_s,
        "legacy_mb_s": sizes["legacy.pth"] / MB / legacy_s,
        "opcode_bound_mb_s": sizes["records.pkl"] / MB / records_s,
        "scan_over_torch_load_weights_only": scan_s / load_s,
        "scan_over_sequential_read": scan_s / read_s,
    }
    passed = checkpoint_mb_s > FLOOR_MB_S

    table = Table(title="Artifact scan throughput (issue 6)")
    for column in ("file", "size MB", "scan ms (median)", "MB/s", "note"):
        table.add_column(column, justify="right" if column != "note" else "left")
    table.add_row(
        "torch.save zip",
        f"{sizes['model.pt'] / MB:.1f}",
        f"{scan_s * 1e3:.2f}",
        f"{checkpoint_mb_s:,.0f}",
        f"floor > {FLOOR_MB_S:g} MB/s: {'pass' if passed else 'FAIL'}",
    )
    table.add_row(
        "torch.save legacy",
        f"{sizes['legacy.pth'] / MB:.1f}",
        f"{legacy_s * 1e3:.2f}",
        f"{figures['legacy_mb_s']:,.0f}",
        "pickles then raw tensor bytes",
    )
    table.add_row(
        "opcode-bound pickle",
        f"{sizes['records.pkl'] / MB:.1f}",
        f"{records_s * 1e3:.0f}",
        f"{figures['opcode_bound_mb_s']:,.1f}",
        "worst case, not gated",
    )
    console.print(table)
    console.print(
        f"baselines on the zip checkpoint: torch.load(weights_only=True) {load_s * 1e3:.1f} ms, "
        f"sequential read {read_s * 1e3:.1f} ms; the scan costs "
        f"{figures['scan_over_torch_load_weights_only']:.3f}x the safe load and "
        f"{figures['scan_over_sequential_read']:.3f}x the read"
    )
    console.print(f"checkpoint scan throughput: {checkpoint_mb_s:,.0f} MB/s")

    result = {
        "benchmark": "scan",
        "issue": 6,
        "created_unix": time.time(),
        "setup": {"rounds": args.rounds, "size_mb_requested": args.size_mb, "files": sizes},
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "mlwarden": __version__,
        },
        "median_ms": {
            "scan_checkpoint": scan_s * 1e3,
            "scan_checkpoint_rounds": [t * 1e3 for t in scan_rounds],
            "torch_load_weights_only": load_s * 1e3,
            "sequential_read": read_s * 1e3,
            "scan_legacy": legacy_s * 1e3,
            "scan_opcode_bound": records_s * 1e3,
        },
        "figures": figures,
        "floor": {"checkpoint_mb_s_above": FLOOR_MB_S},
        "passed": passed,
    }
    atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {args.json}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
