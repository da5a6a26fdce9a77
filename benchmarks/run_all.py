"""Run every ``benchmarks/bench_*.py`` script in turn, each in its own process.

Exit code 0 when every script exits 0; 1 when any fails or misses its floor (the scripts exit 1
for a missed floor). ``make bench`` runs this file.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    if not scripts:
        print(f"no bench_*.py scripts in {HERE}", file=sys.stderr)
        return 1
    outcomes: list[tuple[str, int, float]] = []
    for script in scripts:
        print(f"==> {script.name}", flush=True)
        start = time.perf_counter()
        returncode = subprocess.call([sys.executable, str(script)], cwd=HERE.parent)
        outcomes.append((script.name, returncode, time.perf_counter() - start))
    print("\nbenchmark summary")
    for name, returncode, seconds in outcomes:
        status = "ok" if returncode == 0 else f"FAILED (exit {returncode})"
        print(f"  {name:<30} {status:<20} {seconds:6.1f} s")
    return 0 if all(returncode == 0 for _, returncode, _ in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
