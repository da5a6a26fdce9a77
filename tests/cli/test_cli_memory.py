"""Peak memory of the demo assessment, measured in a child process."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from mlwarden.models import load_model

PEAK_RSS_LIMIT_BYTES = 1.5 * 1024**3


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux only")
def test_demo_assessment_peak_rss_stays_under_1_5_gb(tmp_path: Path) -> None:
    """``assess`` on zoo:digits-cnn and builtin:digits as ``make demo`` runs it.

    ``RUSAGE_CHILDREN.ru_maxrss`` is the largest peak over every child this process has
    waited for, so it bounds this child's peak from above: the check cannot pass wrongly.

    The child runs torch with one thread: on a busy machine two spinning OpenMP threads make
    the square attack's thousands of small forward passes 5-10x slower, while the peak memory
    is the same (about 0.5 GB either way).
    """
    load_model("zoo:digits-cnn")  # train into the session cache here, so the child only assesses
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlwarden.cli.app",
            "assess",
            "--model",
            "zoo:digits-cnn",
            "--data",
            "builtin:digits",
            "--max-samples",
            "200",
            "--out",
            str(tmp_path / "report"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "report" / "report.html").is_file()
    peak_bytes = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    assert peak_bytes < PEAK_RSS_LIMIT_BYTES, f"peak RSS {peak_bytes / 1024**2:.0f} MiB"
