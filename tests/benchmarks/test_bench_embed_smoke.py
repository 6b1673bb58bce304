"""Smoke test of benchmarks/bench_embed.py: a random tiny model on a 30-clip corpus, every part, the script's
main in the test process (helpers/bench.py; the ``supclap-embed`` command it times stays a process); the full
run and its tables are in docs/BENCHMARKS.md."""

from __future__ import annotations

import json

import pytest
from helpers.bench import run_benchmark


@pytest.mark.slow
def test_bench_embed_smoke(tmp_path) -> None:
    """Every part runs and writes its rows; the loop users write and the index agree on the embeddings."""
    output = tmp_path / "embed.json"
    proc = run_benchmark("bench_embed", ["--smoke", "--output_json", str(output)])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(output.read_text())
    policies = [row["policy"] for row in results["long_clip"]["rows"]]
    assert policies == ["(one window)", "windows", "first", "random"]
    assert all(0 <= row["t2a_R@1"] <= 100 for row in results["long_clip"]["rows"])
    assert results["long_clip"]["rows"][1]["windows_per_clip"] == 3.0  # 6 s of 2 s windows
    speed = results["speed"]
    assert speed["num_files"] == 6 and len(speed["rows"]) == 4
    assert all(row["clips_per_s"] > 0 for row in speed["rows"])
    assert speed["max_cosine_distance_loop_vs_index"] < 1e-5
    (search,) = results["search"]["rows"]
    assert search["rows"] == 2000 and search["exact_ms_one_query"] > 0
    assert "faiss_build_s" in search or search.get("faiss") == "not installed"
    stages = results["stages"]["rows"]
    assert [(row["clip_seconds"], row["rate"]) for row in stages] == [(3.0, 16000), (3.0, 48000)]
    assert [row["windows"] for row in stages] == [2, 1]
    assert "| 6 s, clip at a random offset | windows | 3.0 |" in proc.stdout
