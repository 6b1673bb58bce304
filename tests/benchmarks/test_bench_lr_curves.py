"""benchmarks/bench_lr_curves.py (issue 30): the report's numbers from known inputs (fast), and the
two-stage protocol end to end through the real CLI (``--smoke``, slow)."""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import sys
from pathlib import Path

import pytest
from helpers.bench import run_benchmark
from helpers.processes import run_bounded

REPO_ROOT = Path(__file__).resolve().parents[2]
BENCH = REPO_ROOT / "benchmarks"
sys.path.insert(0, str(BENCH))

import bench_lr_curves as lr_curves  # noqa: E402


def test_robustness_width_interpolates_in_log_rate():
    rates = [1e-4, 1e-3, 1e-2]
    # Peak 10 at 1e-3; threshold 9: crosses at 1/4 of the way to 1e-4 (10 -> 6) and 1/2 to 1e-2 (10 -> 8).
    w = lr_curves.robustness_width(rates, [6.0, 10.0, 8.0])
    assert w["decades"] == pytest.approx(0.25 + 0.5)
    assert w["low"] == pytest.approx(10**-3.25) and w["high"] == pytest.approx(10**-2.5)
    assert w["reference"] == 10.0 and not w["lower_bound"]
    # Flat within a point up to the grid's end: a lower bound; a non-monotone dip ends the interval.
    w = lr_curves.robustness_width([1e-4, 1e-3, 1e-2, 1e-1], [9.5, 10.0, 7.0, 9.9])
    assert w["lower_bound"] and w["decades"] == pytest.approx(1 + 1 / 3)
    # The reference is the value at the given best rate (chosen by validation), not the test peak.
    w = lr_curves.robustness_width(rates, [6.0, 10.0, 10.5], best_rate=1e-3)
    assert w["reference"] == 10.0 and w["decades"] == pytest.approx(0.25 + 1) and w["lower_bound"]


def test_choose_best_by_mean_validation_with_edges_and_ties():
    rates = [1e-4, 1e-3, 1e-2]
    best = lr_curves.choose_best({1e-4: [1, 2, 3], 1e-3: [5, 5, 5], 1e-2: [9, 0, 0]}, rates, 3)
    assert best["rate"] == 1e-3 and best["complete"] and not best["edge"]
    best = lr_curves.choose_best({1e-4: [5, 5, 5], 1e-3: [5, 5, 5], 1e-2: [1, 1, 1]}, rates, 3)
    assert best["rate"] == 1e-4 and best["edge"]  # a tie goes to the smaller rate, here an edge
    best = lr_curves.choose_best({1e-4: [5, 5, 5], 1e-3: [6, 6, 6]}, rates, 3)
    assert best["rate"] == 1e-3 and not best["complete"] and not best["edge"]  # provisional
    assert lr_curves.center_out([3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2])[:2] == [3e-4, 1e-3]


def _fake_run(folder: Path, test: float, validation: float) -> None:
    folder.mkdir(parents=True)
    retrieval = {"t2a_R@1": test - 1, "a2t_R@1": test + 1}
    state = {
        "validation": [{"mean_R@1": validation}],
        "train_seconds": 1.0,
        "step": 5,
        "nonfinite_skipped": 0,
    }
    (folder / "metrics.json").write_text(json.dumps({"train_state": state, "test": {"retrieval": retrieval}}))


def test_report_pairs_best_points_and_every_rate_from_known_runs(tmp_path):
    """Two variants, three rates, seeds 0-2 everywhere and 3-4 at each best: the best rates come from
    validation, the paired differences from the right runs, the width from the test curve."""
    args = argparse.Namespace(
        results_dir=tmp_path, stage1_recipe="base", variants=["infonce", "infonce+dynamic-bi"],
        rates=[1e-4, 1e-3, 1e-2], seeds_per_point=3, seeds_at_best=5, real_steps=5, demo_steps=5,
    )  # fmt: skip
    # test mean R@1 per (variant, rate), + seed; validation picks 1e-3 for infonce and 1e-2 for dynamic.
    test = {
        "infonce": {1e-4: 4.0, 1e-3: 10.0, 1e-2: 8.0},
        "infonce+dynamic-bi": {1e-4: 9.0, 1e-3: 11.0, 1e-2: 12.0},
    }
    validation = {"infonce": {1e-4: 1, 1e-3: 3, 1e-2: 2}, "infonce+dynamic-bi": {1e-4: 1, 1e-3: 2, 1e-2: 3}}
    best = {"infonce": 1e-3, "infonce+dynamic-bi": 1e-2}
    for variant in args.variants:
        for lr in args.rates:
            seeds = range(5) if lr == best[variant] else range(3)
            for seed in seeds:
                folder = lr_curves.run_dir_for(args, "real", "scratch", variant, seed, lr)
                _fake_run(folder, test[variant][lr] + seed, validation[variant][lr])
    s = lr_curves.summarize_phase(args, "real", "scratch")
    assert {v: s["variants"][v]["best"]["rate"] for v in args.variants} == best
    assert s["variants"]["infonce+dynamic-bi"]["best"]["edge"]  # 1e-2 is the grid's top
    paired = s["paired_at_best"]["infonce+dynamic-bi"]
    assert paired["seeds"] == [0, 1, 2, 3, 4] and paired["differences"] == pytest.approx([2.0] * 5)
    assert paired["seeds_won"] == 5 and paired["p_sign_flip"] == pytest.approx(2 / 32)
    assert paired["learning_rates"] == [1e-2, 1e-3]
    at_1e4 = s["paired_at_rate"]["0.0001"]["infonce+dynamic-bi"]
    assert (
        at_1e4["seeds"] == [0, 1, 2]
        and at_1e4["mean"] == pytest.approx(5.0)
        and at_1e4["p_sign_flip"] == 0.25
    )
    # infonce curve (mean over its seeds): 1e-4: 5, 1e-3: 12 (seeds 0-4), 1e-2: 9; reference 12, threshold 11.
    width = s["variants"]["infonce"]["robustness"]
    left, right = (12 - 11) / (12 - 5), (12 - 11) / (12 - 9)
    assert width["decades"] == pytest.approx(left + right) and not width["lower_bound"]
    md = lr_curves.render_phase(s, args.rates)
    assert "+2.0, +2.0, +2.0, +2.0, +2.0 → +2.0 ± 0.0 | 5/5 | 0.062" in md
    assert "0.01 (EDGE)" in md
    assert math.isclose(s["variants"]["infonce"]["curve"]["0.001"]["test_mean_R@1"]["mean"], 12.0)

    # The mechanism's rate: where DynamicSVR differs most from InfoNCE with seeds 0-2 paired (1e-4: +5,
    # 1e-3: +1, 1e-2: +4; 3 pairs each: the extra seeds lie at two different rates); then the report of
    # reruns that recorded drift, beside the curve's own seed 0.
    assert lr_curves.largest_difference_rate(s["paired_at_rate"], "infonce+dynamic-bi", 3) == 1e-4
    assert lr_curves.largest_difference_rate(s["paired_at_rate"], "infonce+dynamic-bi", 4) is None  # 3 pairs
    assert lr_curves.largest_difference_rate(s["paired_at_rate"], "siglip+dynamic-bi", 3) is None
    (pick,) = lr_curves.mechanism_picks(args, s)
    assert pick["rate"] == 1e-4 and pick["difference"] == pytest.approx(5.0) and pick["seeds_won"] == 3
    assert pick["variants"] == ["infonce", "infonce+dynamic-bi"]
    # Picks are kept per phase, chosen once (runs changed later do not move them); a phase finished later
    # adds its own.
    args.phases = ["real:scratch", "demo:scratch"]
    assert lr_curves.update_mechanism_picks(args) == [pick]  # demo:scratch has no runs yet
    for seed in range(3):  # now 1e-3 would differ most
        folder = lr_curves.run_dir_for(args, "real", "scratch", "infonce", seed, 1e-3)
        shutil.rmtree(folder)
        _fake_run(folder, -50.0, 3)
    (repick,) = lr_curves.mechanism_picks(args, lr_curves.summarize_phase(args, "real", "scratch"))
    assert repick["rate"] == 1e-3
    for variant in args.variants:
        for lr in args.rates:
            for seed in range(3):
                folder = lr_curves.run_dir_for(args, "demo", "scratch", variant, seed, lr)
                _fake_run(folder, test[variant][lr] + (seed if lr == 1e-3 else 0), validation[variant][lr])
    picks = lr_curves.update_mechanism_picks(args)
    assert picks[0] == pick and [(p["target"], p["rate"]) for p in picks] == [("real", 1e-4), ("demo", 1e-4)]
    assert json.loads((tmp_path / "mechanism" / "picks.json").read_text()) == picks
    assert lr_curves.update_mechanism_picks(args) == picks
    (tmp_path / "mechanism" / "picks.json").write_text(json.dumps([pick]))
    args.probe_steps = 2
    for variant, cosine, histogram in (
        ("infonce", 0.5, None),
        ("infonce+dynamic-bi", 0.8, [0.1] + [0.0] * 10 + [0.9]),
    ):
        folder = lr_curves.mechanism_dir(args, pick, variant)
        _fake_run(folder, test[variant][1e-4], validation[variant][1e-4])
        metrics = json.loads((folder / "metrics.json").read_text())
        drift = [{"step": step, "cosine": cosine, "perp_parallel_ratio": 1.5, "base_cosine": 0.4,
                  "text_uniformity": -1.0, **({"radius_over_distance": histogram} if histogram else {})}
                 for step in (2, 4)]  # fmt: skip
        metrics["train_state"]["drift"] = drift
        (folder / "metrics.json").write_text(json.dumps(metrics))
    found = lr_curves._mechanism_runs(args)
    md = lr_curves.render_mechanism(args, found)
    assert (
        "| real, scratch | 0.0001 (+5.0, 3/3) | infonce+dynamic-bi | 9.0 / 9.0 | 0.800 | 1.50 | 0.400 | 90% "
        "| 10% |" in md
    )
    assert "| infonce | 4.0 / 4.0 | 0.500 | 1.50 | 0.400 | - | - | -1.00 |" in md
    # The reruns are the curve's command with the probe on (the CLI's probe is tested in tests/training).
    args.preset, args.real_data, args.cache_dir, args.extra = (
        "small",
        tmp_path / "real",
        tmp_path / "cache",
        [],
    )
    args.per_device_train_batch_size = args.warmup_steps = args.dataloader_num_workers = None
    rerun = lr_curves.run_command(args, "real", "scratch", "infonce", 0, 1e-4, tmp_path / "w", probe_steps=2)
    curve = lr_curves.run_command(args, "real", "scratch", "infonce", 0, 1e-4, tmp_path / "w")
    probe = rerun.index("--drift_probe_steps")
    assert rerun[probe + 1] == "2" and curve[probe + 1] == "0"
    assert rerun[:probe] + rerun[probe + 2 :] == curve[:probe] + curve[probe + 2 :]
    assert lr_curves.plot_mechanism(found, tmp_path / "mechanism.png")
    assert (tmp_path / "mechanism.png").stat().st_size > 1000


@pytest.mark.slow
def test_smoke_two_stages_through_the_cli(tmp_path):
    """Stage 1 trains once; every stage-2 run starts from its weights with its processor and the loss
    flags in force; only small files reach the results folder; a second call trains nothing.

    The first call is the script's main in the test process, and each of its runs the real command line
    (train_supclap.py, eval_supclap.py) run by that command's main in-process (helpers/bench.py); the
    second is the script run as users run it, a process of its own."""
    results, cache, work = tmp_path / "results", tmp_path / "cache", tmp_path / "work"
    cmd = [sys.executable, str(BENCH / "bench_lr_curves.py"), "--smoke", "--results_dir", str(results)]
    cmd += ["--cache_dir", str(cache), "--work_dir", str(work)]
    proc = run_benchmark("bench_lr_curves", cmd[2:], train_in_process=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    stage1 = results / "stage1" / "base_for-real"
    assert (stage1 / "model.safetensors").exists() and not list(stage1.glob("*.py"))
    assert "--max_audio_seconds" in json.loads((stage1 / "bench_cmd.json").read_text())["argv"]
    zero = json.loads((stage1 / "zero_step_test.json").read_text())
    assert zero["split"] == "test" and "t2a_R@1" in zero["retrieval"]

    from safetensors.torch import load_file

    key = "text_model.embeddings.word_embeddings.weight"
    start = load_file(stage1 / "model.safetensors")[key]
    for variant, mode in (("infonce", "none"), ("infonce+dynamic-bi", "dynamic")):
        run = results / "runs" / "real" / "finetune-base" / variant / "lr0.001" / "seed0"
        assert json.loads((run / "config.json").read_text())["svr_mode"] == mode
        assert (run / "processor_config.json").read_bytes() == (stage1 / "processor_config.json").read_bytes()
        argv = json.loads((run / "bench_cmd.json").read_text())["argv"]
        assert argv[argv.index("--model_name_or_path") + 1].endswith("stage1/base_for-real")
        # 3 Adam steps (the first at lr 0, warmup) move no weight by more than ~2 lr: it started from stage 1.
        moved = (load_file(run / "model.safetensors")[key] - start).abs().max().item()
        assert 0 < moved < 3 * 1e-3, moved
        code = json.loads((run / "bench_platform.json").read_text())["code"]
        if (REPO_ROOT / ".git").exists():  # which code made the run: a commit, +dirty with local changes
            assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", code), code
        assert sorted(p.name for p in run.iterdir()) == sorted(
            [*lr_curves.RUN_FILES, "model.safetensors", "bench_cmd.json", "bench_platform.json"]
            + ["bench_wall_s.txt", "train.log"]
        )
    log = (
        results / "runs" / "real" / "finetune-base" / "infonce+dynamic-bi" / "lr0.001" / "seed0" / "train.log"
    )
    assert "--svr_mode changes the checkpoint's svr_mode: 'none' -> 'dynamic'" in log.read_text()
    summary = json.loads((results / "summary.json").read_text())
    phase = summary["phases"][0]
    assert phase["regime"] == "finetune-base" and "stage1_zero_step" in phase
    best = phase["variants"]["infonce"]["best"]["rate"]
    assert sorted(phase["variants"]["infonce"]["curve"][f"{best:g}"]["seeds"]) == [0, 1]  # the extra seed
    assert (results / "curves_real_finetune-base.png").stat().st_size > 1000
    assert not any(p.is_file() for p in work.rglob("*")), "finished runs leave nothing in --work_dir"
    # Resume: the same command again, as a process (the script's entry point), starts no training (and no
    # evaluation), and reports the same.
    again = run_bounded(cmd, timeout=300, cwd=REPO_ROOT)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "done in" not in again.stdout and again.stdout.count("skipped (metrics.json exists)") == 5
    assert json.loads((results / "summary.json").read_text())["phases"] == summary["phases"]


def test_compact_log_keeps_the_last_state_of_progress_lines(tmp_path):
    log = tmp_path / "train.log"
    log.write_bytes(b"INFO start\ntraining:  0%|\rtraining: 50%|\rtraining: 100%| loss=0.5\nINFO end\r\n")
    lr_curves.compact_log(log)
    assert log.read_bytes() == b"INFO start\ntraining: 100%| loss=0.5\nINFO end\n"
