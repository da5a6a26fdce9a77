"""Artifact-scan speed (issues 6 and 14): cold start, memory, and a ~500 MB checkpoint vs picklescan.

Figures, all measured in this run on files written to a temporary folder:

* ``cold_start_s`` = median wall time of ``python -m mlwarden.cli.app scan`` on a 40-byte file in
  a fresh process (interpreter start and every import included). Gate: <= 0.5 s.
* ``cold_start_peak_rss_mib`` = that process's peak resident memory (``wait4`` rusage). Gate:
  <= 80 MiB. The scanner imports no torch, NumPy or other ML library.
* ``checkpoint_cli_over_picklescan`` = wall time of ``mlwarden scan`` ÷ wall time of the
  ``picklescan`` CLI on the same ``torch.save`` zip checkpoint (~500 MB of float32 tensors plus
  many small ones), both cold processes, medians of the same rounds, run alternately. Gate:
  <= 1.5. Without picklescan installed (``pip install mlwarden[bench]``) the ratio is skipped.
* in-process throughput of :func:`mlwarden.supplychain.scan.scan_paths` on that checkpoint
  (floor > 100 MB/s), on a legacy (non-zip) save of it, and on a ~20 MB pickle made only of
  small Python objects (the worst case for a pure-Python opcode reader; reported, not gated);
  baselines ``torch.load(weights_only=True)`` and a sequential read of the file.

The files sit in the page cache (they were just written), so the figures measure the scanner,
not the disk; on a loaded machine start-up times grow, so compare the ratio, which both tools
share. Both CLIs run with their bytecode cached (:func:`process_env`). Results go to a table on stdout and to ``benchmarks/results/scan.json``; the exit code
is 1 when a gate is missed.

Usage: ``python benchmarks/bench_scan.py [--rounds N] [--size-mb MB] [--json PATH]``
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import shutil
import statistics
import subprocess
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
COLD_START_MAX_S = 0.5
COLD_START_MAX_RSS_MIB = 80.0
MAX_RATIO_TO_PICKLESCAN = 1.5
DEFAULT_ROUNDS = 5
DEFAULT_SIZE_MB = 500
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


_PEAK_RSS = (
    "import runpy, sys\n"
    "try:\n"
    "    runpy.run_module(sys.argv[1], run_name='__main__', alter_sys=True)\n"
    "except SystemExit:\n"
    "    pass\n"
    "finally:\n"
    "    status = open('/proc/self/status').read()\n"
    "    sys.stderr.write('VmHWM ' + status.split('VmHWM:')[1].split()[0] + '\\n')\n"
)


def process_env(pycache: Path) -> dict[str, str]:
    """The environment of the timed processes: bytecode cached under ``pycache``.

    An installed package has its ``.pyc`` files (pip compiles them); a source checkout run with
    ``PYTHONDONTWRITEBYTECODE=1`` recompiles every mlwarden module at each start while the
    installed picklescan does not, which would charge mlwarden ~0.1 s that no user pays. Both
    tools therefore run with ``PYTHONPYCACHEPREFIX`` set to a scratch folder, which the warm-up
    run of :func:`median_process` fills.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONWARNINGS": "ignore", "PYTHONPYCACHEPREFIX": str(pycache)}


_ENV: dict[str, str] = dict(os.environ)


def run_process(command: list[str]) -> tuple[float, float | None]:
    """(wall seconds, peak RSS in MiB) of one fresh process.

    The peak is the process's own ``VmHWM`` (``wait4``'s ``ru_maxrss`` also counts the forked
    parent's pages, here hundreds of MiB of tensors); None where ``/proc`` is missing.
    """
    env = _ENV
    start = time.perf_counter()
    done = subprocess.run(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, check=False
    )
    wall = time.perf_counter() - start
    peak = [
        line.split()[1] for line in done.stderr.decode().splitlines() if line.startswith("VmHWM")
    ]
    return wall, float(peak[-1]) / 1024 if peak else None


def median_process(command: list[str], rounds: int) -> tuple[float, float | None]:
    """Median wall seconds and largest peak RSS (MiB) over ``rounds`` fresh processes."""
    run_process(command)  # warm the page cache for the interpreter and the packages
    runs = [run_process(command) for _ in range(rounds)]
    peaks = [r[1] for r in runs if r[1] is not None]
    return statistics.median(r[0] for r in runs), max(peaks) if peaks else None


def mlwarden_cli(path: Path) -> list[str]:
    return [sys.executable, "-c", _PEAK_RSS, "mlwarden.cli.app", "scan", str(path)]


def mlwarden_cli_plain(path: Path) -> list[str]:
    return [sys.executable, "-m", "mlwarden.cli.app", "scan", str(path)]


def picklescan_cli(path: Path) -> list[str] | None:
    found = shutil.which("picklescan") or str(Path(sys.executable).parent / "picklescan")
    return [found, "--path", str(path)] if Path(found).exists() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    parser.add_argument("--size-mb", type=int, default=DEFAULT_SIZE_MB)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args(argv)
    console = Console()

    with tempfile.TemporaryDirectory(prefix="mlwarden-bench-scan-") as scratch:
        root = Path(scratch)
        _ENV.clear()
        _ENV.update(process_env(root / "pycache"))
        weights = state_dict(args.size_mb)
        checkpoint, legacy, records = root / "model.pt", root / "legacy.pth", root / "records.pkl"
        torch.save(weights, checkpoint)
        torch.save(weights, legacy, _use_new_zipfile_serialization=False)
        records.write_bytes(pickle.dumps(opcode_heavy(250_000), protocol=4))
        del weights
        sizes = {p.name: p.stat().st_size for p in (checkpoint, legacy, records)}

        tiny = root / "tiny.bin"
        tiny.write_bytes(pickle.dumps(list(range(8)), protocol=4)[:40].ljust(40, b"."))
        cold_s, _ = median_process(mlwarden_cli_plain(tiny), args.rounds)
        _, cold_rss = median_process(mlwarden_cli(tiny), 1)
        cli_s, _ = median_process(mlwarden_cli_plain(checkpoint), args.rounds)
        picklescan = picklescan_cli(checkpoint)
        picklescan_s = median_process(picklescan, args.rounds)[0] if picklescan else None

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
        "cold_start_s": cold_s,
        "cold_start_peak_rss_mib": cold_rss,
        "checkpoint_cli_s": cli_s,
        "picklescan_cli_s": picklescan_s,
        "checkpoint_cli_over_picklescan": None if picklescan_s is None else cli_s / picklescan_s,
    }
    ratio = figures["checkpoint_cli_over_picklescan"]
    gates = {
        "checkpoint_mb_s": checkpoint_mb_s > FLOOR_MB_S,
        "cold_start_s": cold_s <= COLD_START_MAX_S,
        "cold_start_peak_rss_mib": cold_rss is None or cold_rss <= COLD_START_MAX_RSS_MIB,
        "checkpoint_cli_over_picklescan": ratio is None or ratio <= MAX_RATIO_TO_PICKLESCAN,
    }
    passed = all(gates.values())

    table = Table(title="Artifact scan throughput (issues 6 and 14)")
    for column in ("file", "size MB", "scan ms (median)", "MB/s", "note"):
        table.add_column(column, justify="right" if column != "note" else "left")
    table.add_row(
        "torch.save zip",
        f"{sizes['model.pt'] / MB:.1f}",
        f"{scan_s * 1e3:.2f}",
        f"{checkpoint_mb_s:,.0f}",
        f"floor > {FLOOR_MB_S:g} MB/s: {'pass' if gates['checkpoint_mb_s'] else 'FAIL'}",
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
        f"cold start (mlwarden scan, 40-byte file): {cold_s:.3f} s (gate <= {COLD_START_MAX_S} s: "
        f"{'pass' if gates['cold_start_s'] else 'FAIL'}), peak RSS {cold_rss or float('nan'):.1f} MiB "
        f"(gate <= {COLD_START_MAX_RSS_MIB:g} MiB: "
        f"{'pass' if gates['cold_start_peak_rss_mib'] else 'FAIL'})"
    )
    if picklescan_s is None:
        console.print("picklescan is not installed: pip install 'mlwarden[bench]' for the ratio")
    else:
        console.print(
            f"{sizes['model.pt'] / MB:.0f} MB checkpoint, cold CLI: mlwarden {cli_s:.3f} s, "
            f"picklescan {picklescan_s:.3f} s, ratio {ratio:.2f} (gate <= "
            f"{MAX_RATIO_TO_PICKLESCAN}: {'pass' if gates['checkpoint_cli_over_picklescan'] else 'FAIL'})"
        )
    console.print(
        f"baselines on the zip checkpoint: torch.load(weights_only=True) {load_s * 1e3:.1f} ms, "
        f"sequential read {read_s * 1e3:.1f} ms; the scan costs "
        f"{figures['scan_over_torch_load_weights_only']:.3f}x the safe load and "
        f"{figures['scan_over_sequential_read']:.3f}x the read"
    )
    console.print(f"checkpoint scan throughput: {checkpoint_mb_s:,.0f} MB/s")

    result = {
        "benchmark": "scan",
        "issue": 14,
        "created_unix": time.time(),
        "setup": {
            "rounds": args.rounds,
            "size_mb_requested": args.size_mb,
            "files": sizes,
            "load_average_1_5_15": os.getloadavg(),
        },
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
            "cold_start": cold_s * 1e3,
            "checkpoint_cli": cli_s * 1e3,
            "picklescan_cli": None if picklescan_s is None else picklescan_s * 1e3,
        },
        "figures": figures,
        "floor": {
            "checkpoint_mb_s_above": FLOOR_MB_S,
            "cold_start_s_at_most": COLD_START_MAX_S,
            "cold_start_peak_rss_mib_at_most": COLD_START_MAX_RSS_MIB,
            "checkpoint_cli_over_picklescan_at_most": MAX_RATIO_TO_PICKLESCAN,
        },
        "gates": gates,
        "passed": passed,
    }
    atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {args.json}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
