"""Smoke tests of the benchmark scripts: tiny sizes, run as subprocesses exactly as a user would."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from helpers.processes import run_bounded

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_eval_scaling_smoke():
    """``bench_eval_scaling.py --smoke`` (N=200) runs the default methods; the metric agrees with naive."""
    proc = run_bounded(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "bench_eval_scaling.py"), "--smoke"],
        cwd=REPO_ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| 200 |")]
    methods = [row.split("|")[3].strip() for row in rows]
    assert methods == ["naive", "floor", "two_pass", "one_pass"], proc.stdout
    for row in rows[2:]:
        assert float(row.split("|")[-2]) < 1e-9, row  # max abs metric difference vs the naive baseline
        assert row.split("|")[5].strip().endswith("x"), row  # time vs the one-matmul floor of the same run
    assert rows[1].split("|")[5].strip() == "1x" and rows[1].split("|")[-2].strip() == "-", rows[1]
