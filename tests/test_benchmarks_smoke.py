"""Smoke tests of the benchmark scripts: tiny sizes, run as subprocesses exactly as a user would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_eval_scaling_smoke():
    """``bench_eval_scaling.py --smoke`` (N=200) runs both methods; chunked agrees with naive."""
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "bench_eval_scaling.py"), "--smoke"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| 200 |")]
    assert [row.split("|")[3].strip() for row in rows] == ["naive", "chunked"], proc.stdout
    assert float(rows[1].split("|")[-2]) < 1e-9, rows[1]  # max abs metric difference vs the naive baseline
