"""Smoke test of benchmarks/bench_features.py: tiny sizes, the script's main in the test process (it times
function calls within its process, not processes)."""

from __future__ import annotations

import pytest
from helpers.bench import run_benchmark


@pytest.mark.slow
def test_bench_features_smoke() -> None:
    """``bench_features.py --smoke`` prints one table row per case, with parity between the two paths."""
    proc = run_benchmark("bench_features", ["--smoke"])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = [
        line for line in proc.stdout.splitlines() if line.startswith("| 16k |") or line.startswith("| 48k |")
    ]
    assert [row.split("|")[1].strip() for row in rows] == ["16k", "48k"], proc.stdout
    for row in rows:
        cells = [c.strip() for c in row.split("|")[1:-1]]
        assert cells[1].startswith("4 x 1 s"), row
        for speed_up in (cells[5], cells[7]):
            assert speed_up.endswith("x") and float(speed_up[:-1]) > 0, row
        assert float(cells[8]) <= 1e-4, row  # max abs diff (dB) between the original and the fast path
