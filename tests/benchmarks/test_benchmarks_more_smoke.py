"""Smoke tests of bench_loss_cost.py, bench_overhead.py, bench_quality.py, bench_gradient_cache.py,
bench_streaming.py and diagnose_recipe.py: tiny sizes, each script's ``main`` with the command line a user
types, in the test process (``helpers/bench.py``; the full runs and their tables are in docs/BENCHMARKS.md).

What a script measures as a process stays one: bench_overhead's and bench_streaming's training runs (timed
from their start, side by side), bench_gradient_cache's measurements (a fresh process's peak memory) and
diagnose_recipe's runs (a patched preset and registered predictor rules: process-wide state). The training
runs of bench_quality.py are its real ``train_supclap.py`` command lines run by the CLI's ``main`` in the test
process, except its last call: the script and its training run as processes, as users run them."""

from __future__ import annotations

import json
import re
import sys

import pytest
from helpers.bench import BENCH, run_benchmark
from helpers.processes import run_bounded


def _run(script: str, *args: str, train_in_process: bool = False) -> str:
    proc = run_benchmark(script.removesuffix(".py"), ["--smoke", *args], train_in_process=train_in_process)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def _rows(stdout: str) -> dict[str, list[str]]:
    """Markdown table rows keyed by their first cell (header and separator left out)."""
    rows = {}
    for line in stdout.splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[cells[0]] = cells
    return rows


@pytest.mark.slow
def test_bench_loss_cost_smoke():
    """Tiny model, every variant + the A/A control timed; tensor-level peak memory for every variant."""
    rows = _rows(_run("bench_loss_cost.py"))
    variants = [
        "infonce", "infonce+static-uni", "infonce+static-bi", "infonce+dynamic-uni", "infonce+dynamic-bi",
        "siglip", "siglip+static-uni", "siglip+static-bi", "siglip+dynamic-uni", "siglip+dynamic-bi",
    ]  # fmt: skip
    assert set(variants + ["infonce (A/A)"]) <= set(rows), rows.keys()
    for name in [*variants, "infonce (A/A)"]:
        cells = rows[name]
        # "step time vs InfoNCE": the median of the per-round ratios inside its interquartile range.
        median, low, high = (float(v) for v in re.findall(r"([+-]\d+\.\d) %", cells[2]))
        assert low <= median <= high, cells
        assert float(cells[1]) > 0, cells  # median step (ms)
    for name in variants:  # memory is measured per variant (the A/A control only repeats the timing)
        step_peak, total = float(rows[name][5].replace(",", "")), float(rows[name][6].replace(",", ""))
        assert 0 < step_peak < total, rows[name]
    # The predictor's activations and the support vectors only add memory.
    assert float(rows["infonce+dynamic-bi"][5].replace(",", "")) >= float(rows["infonce"][5].replace(",", ""))


@pytest.mark.slow
def test_bench_gradient_cache_smoke():
    """Cached and dense steps each measured in a fresh process: memory and CPU time per sample."""
    rows = _rows(_run("bench_gradient_cache.py"))
    cells = rows["tiny"]
    assert cells[1:3] == ["16", "4"]
    assert all(float(cells[i]) > 0 for i in (3, 4, 6, 7, 8)), cells  # peak MiB and ms/sample
    assert cells[5].endswith("x") and cells[9].endswith("x"), cells  # the two ratios


@pytest.mark.slow
def test_bench_gradient_cache_breakdown_smoke():
    """Where a cached step's time goes: every piece measured, and the floor above a dense step."""
    rows = _rows(_run("bench_gradient_cache.py", "--breakdown", "tiny:16:4", "--repeats", "2"))
    pieces = (
        "dense step",
        "cached step",
        "step 1 (no-graph chunks)",
        "step 3 work (graph chunks + backward)",
    )
    assert all(float(rows[name][1]) > 0 for name in pieces), rows
    assert float(rows["floor vs dense"][1]) > 1.0, rows  # micro-batching's extra forward is never free
    assert float(rows["cached vs dense"][1]) > 0, rows


def test_benchmark_batches_fill_a_large_batch_from_fewer_distinct_clips():
    """A batch of thousands of 10 s clips is built from a few extracted ones, copied with noise."""
    import torch

    sys.path.insert(0, str(BENCH))
    from bench_loss_cost import make_batch, model_config

    config = model_config("tiny")
    every = make_batch("tiny", config, 6, 8, torch.device("cpu"))
    filled = make_batch("tiny", config, 6, 8, torch.device("cpu"), max_distinct_clips=2)
    assert filled["input_features"].shape == every["input_features"].shape
    assert filled["is_longer"].shape == every["is_longer"].shape
    assert filled["input_ids"].equal(every["input_ids"])
    # the copies of clip 0 (rows 0, 2, 4) are near it and not equal to each other
    copies = filled["input_features"][[0, 2, 4]]
    assert (copies - every["input_features"][0]).abs().max() < 0.1
    assert not torch.equal(copies[0], copies[1]) and not torch.equal(copies[1], copies[2])


@pytest.mark.slow
def test_bench_streaming_smoke(tmp_path):
    """Map-style and streaming runs of train_supclap.py on the same 200 clips: first step and samples/s."""
    out = _run("bench_streaming.py", "--cache_dir", str(tmp_path / "cache"))
    rows = _rows(out)
    assert float(rows["200"][1]) > 0 and float(rows["200"][2]) > 0, rows["200"]  # seconds to the first step
    cells = rows["200 clips"]
    assert float(cells[1]) > 0 and float(cells[2]) > 0 and cells[3].endswith("x"), cells


@pytest.mark.slow
def test_bench_overhead_smoke(small_corpus_cache):
    """Trainer and train_supclap.py both train 5 steps on the same data and report samples/s."""
    rows = _rows(_run("bench_overhead.py", "--cache_dir", str(small_corpus_cache)))
    for method in ("trainer", "ours"):
        assert method in rows, rows.keys()
        assert rows[method][1] == "1/1", rows[method]
        assert float(rows[method][2]) > 0, rows[method]  # samples/s
    assert rows["ours"][4].endswith("x"), rows["ours"]  # ratio vs Trainer


@pytest.mark.slow
def test_diagnose_recipe_smoke(small_corpus_cache, tmp_path):
    """Two recipes (one with a patched text tower) train with the probe on; table, JSON, plot; resumable."""
    args = [
        "--out_dir",
        str(tmp_path / "runs"),
        "--json",
        str(tmp_path / "d.json"),
        "--plot",
        str(tmp_path / "d.png"),
    ]
    rows = _rows(_run("diagnose_recipe.py", *args, "--", "--cache_dir", str(small_corpus_cache)))
    assert set(rows) >= {"infonce", "tfac3"}, rows.keys()
    summary = json.loads((tmp_path / "d.json").read_text())["recipes"]
    for name in ("infonce", "tfac3"):
        probes = summary[name]["probes"]
        assert [p["step"] for p in probes] == [2, 4]
        assert probes[-1]["text_effective_rank"] >= 1 and -4.01 <= probes[-1]["text_uniformity"] <= 0
    assert summary["tfac3"]["sub_config_overrides"] == {"text_config": {"initializer_factor": 3.0}}
    # The patch reached the model: the saved text tower config carries it.
    saved = json.loads((tmp_path / "runs" / "tfac3" / "config.json").read_text())
    assert saved["text_config"]["initializer_factor"] == 3.0
    assert (tmp_path / "d.png").stat().st_size > 1000
    again = _run("diagnose_recipe.py", *args, "--", "--cache_dir", str(small_corpus_cache))
    assert "# infonce: done before" in again


def test_sign_flip_p_value_is_exact():
    sys.path.insert(0, str(BENCH))
    from bench_quality import sign_flip_p_value

    assert sign_flip_p_value([1.0, 2.0, 3.0, 4.0, 5.0]) == 2 / 32  # only all-plus and all-minus reach 15
    assert sign_flip_p_value([1.0, -1.0]) == 1.0
    assert sign_flip_p_value([3.0, 1.0, 1.0]) == 2 / 8  # only +++ and --- reach |sum| = 5


@pytest.mark.slow
def test_bench_quality_tunes_each_variants_learning_rate_then_pairs_seeds(small_corpus_cache, tmp_path):
    """Two variants, each run the harness's real train_supclap.py command line (the CLI's main, in-process):
    sweep 2 rates with seed 0, pick by validation, seed 1 at the best rate, paired against the base; table,
    JSON and plot; a second call resumes, also from a moved folder. The last call (no sweep) is the
    benchmark end to end as users run it: the script and its training run are processes."""
    args = ["--cache_dir", str(small_corpus_cache), "--out_dir", str(tmp_path / "runs"), "--seeds", "2"]
    args += [
        "--learning_rates",
        "1e-3",
        "3e-3",
        "--json",
        str(tmp_path / "t.json"),
        "--plot",
        str(tmp_path / "t.png"),
    ]
    out = _run("bench_quality.py", *args, train_in_process=True)
    summary = json.loads((tmp_path / "t.json").read_text())
    assert summary["failures"] == []
    for variant in ("infonce", "infonce+dynamic-bi"):
        scores = summary["learning_rate_sweep"][variant]
        assert set(scores) == {"0.001", "0.003"}, scores
        chosen = summary["variants"][variant]["learning_rate"]
        assert scores[f"{chosen:g}"] == max(scores.values())  # the best by validation
        assert summary["variants"][variant]["seeds"] == [0, 1]
        assert (
            tmp_path / "runs" / "tiny_steps5_clips80_bs8_warmup1" / variant / f"lr{chosen:g}" / "seed1"
        ).is_dir()
    paired = summary["paired_against_base"]["infonce+dynamic-bi"]
    assert paired["base"] == "infonce" and paired["seeds"] == [0, 1]
    runs, base = summary["variants"]["infonce+dynamic-bi"]["runs"], summary["variants"]["infonce"]["runs"]
    assert paired["differences"] == [runs[s]["mean_R@1"] - base[s]["mean_R@1"] for s in ("0", "1")]
    assert 0 < paired["p_sign_flip"] <= 1 and 0 <= paired["seeds_won"] <= 2
    rows = _rows(out)
    assert rows["infonce+dynamic-bi - infonce"][2] == "2"  # seeds paired
    for variant in ("infonce", "infonce+dynamic-bi"):
        assert rows[variant][1] == "2", rows[variant]  # seeds
        for key in ("t2a_R@1", "a2t_R@10", "t2a_mAP@10", "zero_shot_acc"):
            stats = summary["variants"][variant][key]
            assert 0 <= stats["mean"] <= 100, (variant, key, stats)
    assert (tmp_path / "t.png").stat().st_size > 1000
    # Resumable, also from a results folder moved elsewhere (another checkout, another machine): every
    # finished run is found (4 sweep runs, then seeds 0 and 1 of both variants; the check that skips them
    # comes before --report_only's), and the report is the same.
    (tmp_path / "runs").rename(tmp_path / "moved")
    moved = [a if a != str(tmp_path / "runs") else str(tmp_path / "moved") for a in args]
    moved = [a if a != str(tmp_path / "t.json") else str(tmp_path / "t2.json") for a in moved]
    again = _run("bench_quality.py", *moved, "--report_only")
    assert again.count("skipped (metrics.json exists)") == 8, again
    assert json.loads((tmp_path / "t2.json").read_text())["variants"] == summary["variants"]
    # Without --learning_rates (the CLI's rate, no sweep): one variant, one run, its own folder.
    plain = ["--cache_dir", str(small_corpus_cache), "--out_dir", str(tmp_path / "plain")]
    plain += ["--variants", "infonce", "--json", str(tmp_path / "p.json"), "--plot", str(tmp_path / "p.png")]
    cmd = [sys.executable, str(BENCH / "bench_quality.py"), "--smoke", *plain]
    proc = run_bounded(cmd, timeout=300, cwd=BENCH.parent)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert _rows(proc.stdout)["infonce"][1] == "1"
    plain_variants = json.loads((tmp_path / "p.json").read_text())["variants"]
    assert list(plain_variants) == ["infonce"]  # --variants holds with --smoke
    assert "learning_rate" not in plain_variants["infonce"]
    assert (tmp_path / "plain" / "tiny_steps5_clips80_bs8_warmup1" / "infonce" / "seed0").is_dir()
