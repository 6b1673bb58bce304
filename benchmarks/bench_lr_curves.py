#!/usr/bin/env python
"""Learning-rate curves of InfoNCE, SigLIP, their bilateral DynamicSVR and the spreading control, trained
from scratch and fine-tuned from a shared pretrained start (issue 30).

The question: does SVR help in the paper's regime (fine-tuning pretrained towers at one small rate), and
is a gain at one fixed rate a property of SVR or of a rate that suits one loss better than the other?
So every variant gets a whole curve of test quality against the learning rate, in two regimes, on two
corpora, and the report compares the curves at their best points and at every shared rate.

Every run is the real command line, ``train_supclap.py``, in its own subprocess (``bench_quality.py``'s
machinery: one command per run folder, resumable, recorded in ``bench_cmd.json``).

**Stage 1** (one shared start per stage-2 corpus; recipe ``base``, or ``strong`` with ``--stage1_recipe``)::

    train_supclap.py --preset small --train_data STAGE1_CORPUS --base_loss infonce --svr_mode none
        --learning_rate LR --max_steps 1500 --max_audio_seconds W --sampling_rate 16000 --seed 1000
        --eval_steps 1500 --save_steps 0 --report_to none --drift_probe_steps 0 --skip_nonfinite

* for the real-sound corpus (``real``): STAGE1_CORPUS = the demo corpus' train split plus the real-sound
  corpus' train split (an audiofolder built here whose rows point at both; its validation and test
  splits are the demo's, so the real-sound validation and test clips are never seen in stage 1),
  LR 6e-4 (InfoNCE's tuned rate on the demo, docs/BENCHMARKS.md), W = 7 s: the window the CLI picks
  from scratch on the real-sound corpus (95th-percentile clip, 6.6 s); the 2-s demo clips are padded;
* for the demo corpus (``demo``, "the reverse"): STAGE1_CORPUS = the real-sound corpus (its train split;
  its own validation/test splits validate stage 1), LR 3e-3 (InfoNCE's tuned rate on real sound),
  W = 2 s, the demo's clip length (real clips are cropped to it);
* the tokenizer is the CLI's from scratch: a BPE trained on the stage-1 training captions only;
* ``strong``: 4,500 steps (3x), and for ``real`` a 10-s window (every real clip whole); the demo's
  window stays 2 s (its clips are 2 s: a longer window would only pad).

The seed (1000) is one no stage-2 run uses. The stage-1 folder (weights, config, processor, metrics,
command; a few MB) lives in the committed results folder: runs are deterministic on one machine but not
across machines, so every later session fine-tunes from the same bytes. ``eval_supclap.py`` then scores
it on the stage-2 corpus' test split as it is (``zero_step_test.json``: zero steps of stage 2).

**Stage 2** (``finetune-<recipe>``) and **from scratch** (``scratch``), the same for both: the stage-2
corpus' own budget, the one docs/BENCHMARKS.md uses from scratch (demo 1,200 steps, the CLI's default;
real sound 600 steps ≈ 44 epochs of its 432 training clips, as its real-sound tables), so that the two
regimes are comparable step for step; small preset, batch 32, 100 warmup steps, cosine schedule::

    train_supclap.py (--preset small | --model_name_or_path STAGE1) [--train_data REAL] --max_steps S
        --seed k --base_loss B --svr_mode M --svr_bilateral X --learning_rate LR --eval_steps S
        --save_steps 0 --report_to none --drift_probe_steps 0 --skip_nonfinite

A checkpoint's loss settings are overridden by the loss flags given (``build_model``; the run's log
says ``--svr_mode changes the checkpoint's svr_mode: 'none' -> 'dynamic'``, its ``config.json`` keeps
the result), and its processor is reused as saved (tokenizer and window of stage 1; ``--max_audio_seconds``
and ``--sampling_rate`` are not passed in stage 2, where the CLI would ignore them). Loss parameters that
stage 1 does not have (DynamicSVR's radius predictor, SigLIP's bias) start at their initial values; the
logit scale continues from stage 1's InfoNCE value, also for SigLIP (``--siglip_logit_scale_init`` only
sets a new model's). ``--skip_nonfinite``: a diverging rate is a point of the curve (a bad model, and
``nonfinite_skipped`` counted in its metrics), not a crash.

**Grid and seeds**: rates 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2 (half-decade steps) and 5e-3
(``--learning_rates`` replaces, ``--add_rates`` extends). 5e-3 was added once the first phase had
seeds 0-2: every variant peaked at 3e-3, next to a collapse at 1e-2, so a difference at 3e-3 could be
one loss tolerating a higher rate than another; the point between brackets each optimum. 3 seeds per
point, then 2 more at each variant's best rate, chosen by *validation* mean R@1 averaged over seeds 0-2
(never by test; ties go to the smaller rate). A best at the edge of the grid is reported as such (extend
with ``--add_rates``). Variants (``--variants``): infonce, infonce+dynamic-bi, infonce+spreading-bi and
the same three for siglip.

**Order**, so that a benchmark cut short is still useful: phases ``real:finetune``, ``real:scratch``,
``demo:finetune``, ``demo:scratch`` (``--phases``); in each, seed 0 over every (variant, rate) (rates from
the middle of the grid outwards), then seeds 1 and 2, then seeds 3 and 4 at each variant's best rate.

**Results** (``--results_dir``, default ``docs/results/lr_curves``, committed): ``stage1/<recipe>_for-
<corpus>/`` and ``runs/<corpus>/<regime>/<variant>/lr<rate>/seed<k>/`` holding only small files
(``metrics.json``, ``config.json``, ``processor_config.json``, ``bench_cmd.json``, ``train.log``,
``bench_wall_s.txt``, ``bench_platform.json``); each run trains in ``--work_dir`` (outputs/, ignored by
git) and only those files are moved over when it finishes (weights deleted), so the results folder only
ever holds finished runs. Resuming is rerunning the same command. The report (also ``--report_only``):
``summary.json``, ``report.md`` (per variant: best rate, test mean R@1 there, the paired difference
against its base loss at both best points with seeds won and an exact sign-flip p, the paired
difference at every shared rate, and the rate-robustness width: the span in decades of log10(rate)
around the best rate where the mean test curve stays within 1 point of its value at the best rate,
linearly interpolated between grid points, a lower bound where it reaches the grid's edge; and the
stage-1 start against training from scratch) and one ``curves_<corpus>_<regime>.png`` per phase.

Not here yet: the issue's mechanism plot (radius / D histograms and drift at the rates where the curves
differ most); every run is recorded with ``--drift_probe_steps 0``, so those runs are to be rerun with
the probe on once the curves say which.

Usage::

    python benchmarks/bench_lr_curves.py --stage1_only                 # the shared starts (+ zero-step)
    nohup python benchmarks/bench_lr_curves.py --jobs 1 --threads 1 > outputs/lr_curves.log 2>&1 &
    python benchmarks/bench_lr_curves.py --report_only                 # tables/plots from what finished
    python benchmarks/bench_lr_curves.py --stage1_recipe strong --phases real:finetune demo:finetune
    python benchmarks/bench_lr_curves.py --smoke                       # tiny, seconds
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_quality  # noqa: E402  (benchmarks/ is on sys.path; bench_quality.launch starts every run)
from bench_quality import (  # noqa: E402
    REPO_ROOT,
    _table_head,
    budget_flags,
    execute_run,
    paired_against_base,
    platform_record,
    read_metrics,
    run_jobs,
    seed_statistics,
)
from loss_variants import VARIANTS  # noqa: E402

LR_VARIANTS = [
    f"{base}{svr}" for base in ("infonce", "siglip") for svr in ("", "+dynamic-bi", "+spreading-bi")
]
DEFAULT_RATES = [3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 5e-3, 1e-2]
PHASES = ["real:finetune", "real:scratch", "demo:finetune", "demo:scratch"]
STAGE1_SEED = 1000  # no stage-2 run uses it
# Stage-1 recipes, per stage-2 corpus: the stage-1 corpus, InfoNCE's tuned rate there, steps, window (s).
STAGE1_RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    "base": {
        "real": {"corpus": "demo+real-train", "lr": 6e-4, "steps": 1500, "window": 7},
        "demo": {"corpus": "real", "lr": 3e-3, "steps": 1500, "window": 2},
    },
    "strong": {
        "real": {"corpus": "demo+real-train", "lr": 6e-4, "steps": 4500, "window": 10},
        "demo": {"corpus": "real", "lr": 3e-3, "steps": 4500, "window": 2},
    },
}
SAMPLING_RATE = 16000  # both corpora's rate
# What a finished run keeps (the rest of the CLI's output folder, weights included, is deleted).
RUN_FILES = ("metrics.json", "config.json", "processor_config.json")
STAGE1_FILES = (
    "metrics.json", "config.json", "model.safetensors", "processor_config.json", "preprocessor_config.json",
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt",
)  # fmt: skip
WITHIN_POINTS = 1.0  # the robustness width: within this many points of mean R@1 of the best
MECHANISM_SEED = 0


# ------------------------------------------------------------------------------------------------------
# Pure helpers (tested on known inputs)
# ------------------------------------------------------------------------------------------------------


def center_out(rates: list[float]) -> list[float]:
    """The rates from the middle of the (log) grid outwards: a benchmark cut short has the middle first."""
    ordered = sorted(rates)
    mid = (math.log10(ordered[0]) + math.log10(ordered[-1])) / 2
    return sorted(ordered, key=lambda r: (abs(math.log10(r) - mid), r))


def choose_best(scores: dict[float, list[float]], rates: list[float], seeds_needed: int) -> dict[str, Any]:
    """The rate whose mean validation score (over ``seeds_needed`` seeds) is highest, ties to the smaller
    rate; ``complete`` only when every rate has its seeds (else the choice is provisional)."""
    means = {lr: statistics.fmean(v[:seeds_needed]) for lr, v in scores.items() if v}
    complete = all(len(scores.get(lr, [])) >= seeds_needed for lr in rates)
    if not means:
        return {"rate": None, "complete": False, "means": {}, "edge": False}
    best = max(means, key=lambda lr: (means[lr], -lr))
    edge = complete and best in (min(rates), max(rates))
    return {
        "rate": best,
        "complete": complete,
        "means": {f"{lr:g}": m for lr, m in means.items()},
        "edge": edge,
    }


def robustness_width(
    rates: list[float], means: list[float], best_rate: float | None = None, within: float = WITHIN_POINTS
) -> dict[str, Any] | None:
    """The span, in decades of log10(rate), of the interval around ``best_rate`` (default: the curve's
    peak) where the curve stays at or above its value at ``best_rate`` minus ``within``; crossings are
    linearly interpolated in log10(rate) between grid points. ``lower_bound``: the interval reaches an end
    of the grid, so the true width may be larger."""
    if not rates:
        return None
    pairs = sorted(zip(rates, means))
    xs = [math.log10(r) for r, _ in pairs]
    ys = [m for _, m in pairs]
    i = ys.index(max(ys)) if best_rate is None else [r for r, _ in pairs].index(best_rate)
    threshold = ys[i] - within

    def crossing(j_in: int, j_out: int) -> float:  # j_in above the threshold, j_out below
        t = (ys[j_in] - threshold) / (ys[j_in] - ys[j_out])
        return xs[j_in] + t * (xs[j_out] - xs[j_in])

    lo = i
    while lo > 0 and ys[lo - 1] >= threshold:
        lo -= 1
    hi = i
    while hi < len(ys) - 1 and ys[hi + 1] >= threshold:
        hi += 1
    left = xs[0] if lo == 0 else crossing(lo, lo - 1)
    right = xs[-1] if hi == len(ys) - 1 else crossing(hi, hi + 1)
    return {
        "decades": right - left,
        "low": 10**left,
        "high": 10**right,
        "reference": ys[i],
        "lower_bound": lo == 0 or hi == len(ys) - 1,
    }


def largest_difference_rate(
    paired_at_rate: dict[str, dict[str, Any]], variant: str, min_pairs: int
) -> float | None:
    """The rate where ``variant`` minus its base loss differs most (largest |mean paired difference|) among
    the rates with at least ``min_pairs`` paired seeds; None when no rate has them. Ties: the smaller rate."""
    candidates = [
        (abs(per[variant]["mean"]), -float(rate), float(rate))
        for rate, per in paired_at_rate.items()
        if variant in per and len(per[variant]["seeds"]) >= min_pairs
    ]
    return max(candidates)[2] if candidates else None


# ------------------------------------------------------------------------------------------------------
# Folders, corpora and commands
# ------------------------------------------------------------------------------------------------------


def _shown(path: Path) -> str:
    """A path as the commands give it: relative to the repository when inside it (same on every checkout)."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def regime_name(regime: str, args: argparse.Namespace) -> str:
    return f"finetune-{args.stage1_recipe}" if regime == "finetune" else regime


def run_dir_for(
    args: argparse.Namespace, target: str, regime: str, variant: str, seed: int, lr: float
) -> Path:
    return (
        args.results_dir / "runs" / target / regime_name(regime, args) / variant / f"lr{lr:g}" / f"seed{seed}"
    )


def stage1_dir(args: argparse.Namespace, target: str) -> Path:
    return args.results_dir / "stage1" / f"{args.stage1_recipe}_for-{target}"


def work_dir_for(args: argparse.Namespace, run_dir: Path) -> Path:
    return args.work_dir / run_dir.relative_to(args.results_dir)


def demo_corpus(args: argparse.Namespace) -> Path:
    return args.cache_dir / f"demo_corpus_{args.demo_num_clips}"


def ensure_demo_corpus(args: argparse.Namespace) -> Path:
    from modeling_supclap.demo import build_demo_corpus

    build_demo_corpus(demo_corpus(args), num_clips=args.demo_num_clips)  # no-op when complete
    return demo_corpus(args)


def ensure_real_corpus(args: argparse.Namespace) -> Path:
    """The real-sound corpus (``benchmarks/real_sounds.py``, 84 MB of Debian packages once); in
    ``--smoke``, a 40-clip synthetic stand-in (no download)."""
    path = args.real_data
    if (path / "train" / "metadata.jsonl").exists():
        return path
    if args.smoke:
        from modeling_supclap.demo import build_demo_corpus

        build_demo_corpus(path, num_clips=40)
        return path
    subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "real_sounds.py"), str(path)], check=True)
    return path


def build_combined_corpus(out: Path, train_from: list[Path], eval_from: Path) -> Path:
    """An audiofolder whose train split lists the train rows of every ``train_from`` corpus and whose
    validation and test splits are ``eval_from``'s; rows point at the clips where they are (absolute
    paths), nothing is copied. Rewritten on every call (cheap, and follows a moved cache)."""
    sources: dict[str, list[Path]] = {"train": train_from, "validation": [eval_from], "test": [eval_from]}
    counts = {}
    for split, corpora in sources.items():
        rows = []
        for corpus in corpora:
            split_dir = (corpus / split).resolve()
            for line in (split_dir / "metadata.jsonl").read_text().splitlines():
                if line.strip():
                    row = json.loads(line)
                    row["file_name"] = str(split_dir / row["file_name"])
                    rows.append(json.dumps(row))
        (out / split).mkdir(parents=True, exist_ok=True)
        target = out / split / "metadata.jsonl"
        text = "\n".join(rows) + "\n"
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
        counts[split] = len(rows)
    info = {"train": [c.name for c in train_from], "validation_and_test": eval_from.name, "clips": counts}
    (out / "combined_info.json").write_text(json.dumps(info, indent=1))
    return out


def stage1_corpus(args: argparse.Namespace, target: str) -> Path:
    recipe = STAGE1_RECIPES[args.stage1_recipe][target]
    real = ensure_real_corpus(args)
    if recipe["corpus"] == "real":
        return real
    demo = ensure_demo_corpus(args)
    name = f"demo{args.demo_num_clips}+{real.name}_train"
    return build_combined_corpus(args.cache_dir / "lr_curves_corpora" / name, [demo, real], demo)


def target_corpus(args: argparse.Namespace, target: str) -> Path:
    return ensure_real_corpus(args) if target == "real" else ensure_demo_corpus(args)


def stage1_command(args: argparse.Namespace, target: str, corpus: Path, out: Path) -> list[str]:
    recipe = STAGE1_RECIPES[args.stage1_recipe][target]
    steps = args.stage1_steps or recipe["steps"]
    base_loss, svr_mode, bilateral = VARIANTS["infonce"]
    cmd = [sys.executable, str(REPO_ROOT / "train_supclap.py"), "--preset", args.preset]
    cmd += ["--train_data", _shown(corpus), "--base_loss", base_loss, "--svr_mode", svr_mode]
    cmd += [
        "--svr_bilateral",
        str(bilateral),
        "--learning_rate",
        f"{recipe['lr']:g}",
        "--max_steps",
        str(steps),
    ]
    cmd += ["--max_audio_seconds", str(recipe["window"]), "--sampling_rate", str(SAMPLING_RATE)]
    cmd += [
        "--seed",
        str(STAGE1_SEED),
        "--eval_steps",
        str(steps),
        "--save_steps",
        "0",
        "--report_to",
        "none",
    ]
    cmd += ["--drift_probe_steps", "0", "--skip_nonfinite", *budget_flags(args)]
    return cmd + ["--cache_dir", _shown(args.cache_dir), "--output_dir", _shown(out)]


def steps_for(args: argparse.Namespace, target: str) -> int:
    return args.real_steps if target == "real" else args.demo_steps


def run_command(
    args: argparse.Namespace,
    target: str,
    regime: str,
    variant: str,
    seed: int,
    lr: float,
    out: Path,
    probe_steps: int = 0,
) -> list[str]:
    base_loss, svr_mode, bilateral = VARIANTS[variant]
    steps = steps_for(args, target)
    cmd = [sys.executable, str(REPO_ROOT / "train_supclap.py")]
    if regime == "finetune":
        cmd += ["--model_name_or_path", _shown(stage1_dir(args, target))]
    else:
        cmd += ["--preset", args.preset]
    if target == "real":
        cmd += ["--train_data", _shown(args.real_data)]
    else:
        cmd += ["--demo_num_clips", str(args.demo_num_clips)]
    cmd += ["--max_steps", str(steps), "--seed", str(seed), "--base_loss", base_loss, "--svr_mode", svr_mode]
    cmd += ["--svr_bilateral", str(bilateral), "--learning_rate", f"{lr:g}", "--eval_steps", str(steps)]
    cmd += ["--save_steps", "0", "--report_to", "none", "--drift_probe_steps", str(probe_steps)]
    cmd += ["--skip_nonfinite"]
    cmd += [*budget_flags(args), *args.extra]
    return cmd + ["--cache_dir", _shown(args.cache_dir), "--output_dir", _shown(out)]


# ------------------------------------------------------------------------------------------------------
# Running
# ------------------------------------------------------------------------------------------------------


class Budget:
    """``--max_runs``: how many trainings this invocation may still start (None: no limit)."""

    def __init__(self, max_runs: int | None) -> None:
        self.left = max_runs

    def take(self) -> bool:
        if self.left is None:
            return True
        if self.left <= 0:
            return False
        self.left -= 1
        return True


def _execute(
    args: argparse.Namespace, cmd: list[str], run_dir: Path, keep: tuple[str, ...]
) -> dict[str, Any]:
    if (run_dir / "metrics.json").exists() or args.report_only:
        return execute_run(cmd, run_dir, threads=args.threads, timeout=args.timeout, report_only=True)
    if not args.budget.take():
        return {"run_dir": str(run_dir), "missing": True, "stopped": True}
    work = work_dir_for(args, run_dir)
    result = execute_run(cmd, run_dir, threads=args.threads, timeout=args.timeout, work_dir=work, keep=keep)
    if (run_dir / "train.log").exists():
        compact_log(run_dir / "train.log")
    return result


def compact_log(path: Path) -> None:
    """Keep the last state of each progress-bar line (tqdm rewrites its line with carriage returns, ~100
    bytes a step): a committed log of a 600-step run shrinks from ~60 KB to a few KB, messages intact."""
    text = path.read_bytes()  # bytes: read_text would turn every carriage return into a newline
    compact = b"\n".join(line.rstrip(b"\r").rsplit(b"\r", 1)[-1] for line in text.split(b"\n"))
    if compact != text:
        path.write_bytes(compact)


def ensure_stage1(args: argparse.Namespace, target: str) -> dict[str, Any]:
    """Train the shared start for ``target`` (if missing), then score it on ``target``'s test split."""
    folder = stage1_dir(args, target)
    if args.report_only:
        return {"run_dir": str(folder), "resumed" if (folder / "metrics.json").exists() else "missing": True}
    cmd = stage1_command(args, target, stage1_corpus(args, target), work_dir_for(args, folder))
    result = _execute(args, cmd, folder, STAGE1_FILES)
    print(f"# stage 1 {folder.name}: {_status(result)}", flush=True)
    if (folder / "metrics.json").exists():
        zero_step(args, target, folder)
    return result


def zero_step(args: argparse.Namespace, target: str, folder: Path) -> dict[str, Any] | None:
    """The stage-1 model on ``target``'s test split with zero steps of stage 2 (``eval_supclap.py``)."""
    out = folder / "zero_step_test.json"
    if out.exists():
        return json.loads(out.read_text())
    if args.report_only:
        return None
    cmd = [sys.executable, str(REPO_ROOT / "eval_supclap.py"), "--model_name_or_path", _shown(folder)]
    cmd += ["--eval_data", _shown(target_corpus(args, target)), "--eval_split", "test", "--seed", "0"]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    if args.threads is not None:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(args.threads)
    tmp = args.work_dir / f"zero_step_{folder.name}.json"
    log = tmp.with_suffix(".log")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    returncode = bench_quality.launch([*cmd, "--output_json", str(tmp)], log, env, args.timeout)
    if returncode != 0 or not tmp.exists():
        print(f"# zero-step evaluation of {folder.name} FAILED: {log.read_text()[-600:]}", flush=True)
        return None
    results = json.loads(tmp.read_text())
    results["bench_cmd"] = cmd
    out.write_text(json.dumps(results, indent=1))
    tmp.unlink()
    log.unlink()
    print(f"# stage 1 {folder.name} on the {target} test split, zero steps: {_mean_r1(results):.2f} mean R@1")
    return results


def _mean_r1(results: dict[str, Any]) -> float:
    r = results["retrieval"]
    return (r["t2a_R@1"] + r["a2t_R@1"]) / 2


def _status(r: dict[str, Any]) -> str:
    if r.get("resumed"):
        return "skipped (metrics.json exists)"
    if r.get("stopped"):
        return "not started (--max_runs reached)"
    if r.get("missing"):
        return "missing"
    if "error" in r:
        return f"FAILED {r['error']}"
    return f"done in {r['wall_s']:.1f}s"


def phase_runner(args: argparse.Namespace, target: str, regime: str):
    def runner(variant: str, seed: int, _args: argparse.Namespace, lr: float) -> dict[str, Any]:
        run_dir = run_dir_for(args, target, regime, variant, seed, lr)
        cmd = run_command(args, target, regime, variant, seed, lr, work_dir_for(args, run_dir))
        keep = RUN_FILES + (("model.safetensors",) if args.keep_weights else ())
        result = _execute(args, cmd, run_dir, keep)
        if "wall_s" in result and "error" not in result:
            args.walls.append(result["wall_s"])
            remaining = args.total_jobs - finished_runs(args)
            median = statistics.median(args.walls)
            print(
                f"# median run {median:.0f}s; {remaining} runs left, ~{median * remaining / 3600:.1f} h",
                flush=True,
            )
        return {"variant": variant, "seed": seed, "lr": lr, **result}

    return runner


def finished_runs(args: argparse.Namespace) -> int:
    """Finished stage-2/scratch runs of this recipe's phases on disk."""
    return sum(
        len(
            list(
                (
                    args.results_dir / "runs" / phase.split(":")[0] / regime_name(phase.split(":")[1], args)
                ).glob("*/lr*/seed*/metrics.json")
            )
        )
        for phase in args.phases
    )


def phase_runs(args: argparse.Namespace, target: str, regime: str) -> dict[str, dict[float, dict[int, dict]]]:
    """variant -> rate -> seed -> metrics (``bench_quality.read_metrics`` + ``nonfinite_skipped``)."""
    runs: dict[str, dict[float, dict[int, dict]]] = {}
    seeds = range(args.seeds_at_best)
    for variant in args.variants:
        runs[variant] = {}
        for lr in args.rates:
            found = {}
            for seed in seeds:
                run_dir = run_dir_for(args, target, regime, variant, seed, lr)
                metrics = read_metrics(run_dir)
                if metrics is not None:
                    state = json.loads((run_dir / "metrics.json").read_text())["train_state"]
                    metrics["nonfinite_skipped"] = int(state.get("nonfinite_skipped", 0))
                    found[seed] = metrics
            if found:
                runs[variant][lr] = found
    return runs


def best_rates(args: argparse.Namespace, runs: dict) -> dict[str, dict[str, Any]]:
    """Per variant, :func:`choose_best` on validation mean R@1 of seeds 0..seeds_per_point-1."""
    out = {}
    for variant, by_rate in runs.items():
        scores = {
            lr: [by_seed[s]["validation_mean_R@1"] for s in range(args.seeds_per_point) if s in by_seed]
            for lr, by_seed in by_rate.items()
        }
        scores = {lr: v for lr, v in scores.items() if len(v) == args.seeds_per_point}
        out[variant] = choose_best(scores, args.rates, args.seeds_per_point)
    return out


def run_phase(args: argparse.Namespace, phase: str) -> list[dict]:
    target, regime = phase.split(":")
    failures: list[dict] = []
    if regime == "finetune":
        stage1 = ensure_stage1(args, target)
        if not (stage1_dir(args, target) / "metrics.json").exists():
            print(f"# {phase}: no stage-1 start ({_status(stage1)}); phase skipped", flush=True)
            return [stage1] if "error" in stage1 else []
    elif not args.report_only:
        target_corpus(args, target)
    runner = phase_runner(args, target, regime)
    name = f"{target}:{regime_name(regime, args)}"
    for seed in range(args.seeds_per_point):
        jobs = [(v, seed, lr) for lr in center_out(args.rates) for v in args.variants]
        failures += run_jobs(jobs, args, f"{name} seed {seed}", runner)
        if not args.report_only:
            report(args, args.failures + failures, quiet=True)  # a report to commit at any time
    chosen = best_rates(args, phase_runs(args, target, regime))
    extra = []
    for variant, best in chosen.items():
        if not best["complete"]:
            print(f"# {name} {variant}: seeds 0-{args.seeds_per_point - 1} not complete; no extra seeds yet")
            continue
        if best["edge"]:
            print(f"# {name} {variant}: best rate {best['rate']:g} is at the EDGE of the grid (--add_rates)")
        extra += [(variant, s, best["rate"]) for s in range(args.seeds_per_point, args.seeds_at_best)]
    extra.sort(key=lambda job: (job[1], args.variants.index(job[0])))
    failures += run_jobs(extra, args, f"{name} best-rate seeds", runner)
    return failures


# ------------------------------------------------------------------------------------------------------
# Mechanism (--mechanism): drift and radius where the curves differ most
# ------------------------------------------------------------------------------------------------------


def mechanism_picks(args: argparse.Namespace, s: dict[str, Any]) -> list[dict[str, Any]]:
    """Per base loss of a phase summary: the rate where its bilateral DynamicSVR differs most from it
    (:func:`largest_difference_rate`: the mean over every seed paired there, at rates with at least
    ``seeds_per_point`` pairs; a best rate's seeds 3-4 count where they have finished), with the variants
    to rerun."""
    picks = []
    for base in ("infonce", "siglip"):
        svr = f"{base}+dynamic-bi"
        if base not in args.variants or svr not in args.variants:
            continue
        rate = largest_difference_rate(s["paired_at_rate"], svr, args.seeds_per_point)
        if rate is None:
            continue
        paired = s["paired_at_rate"][f"{rate:g}"][svr]
        variants = [v for v in (base, svr, f"{base}+spreading-bi") if v in args.variants]
        picks.append({"target": s["target"], "regime": s["regime"], "base": base, "rate": rate,
                      "difference": paired["mean"], "seeds_won": paired["seeds_won"],
                      "pairs": len(paired["seeds"]), "variants": variants})  # fmt: skip
    return picks


def mechanism_dir(args: argparse.Namespace, pick: dict[str, Any], variant: str) -> Path:
    return (
        args.results_dir / "mechanism" / pick["target"] / pick["regime"] / variant / f"lr{pick['rate']:g}"
        / f"seed{MECHANISM_SEED}"
    )  # fmt: skip


def update_mechanism_picks(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The picks kept in ``mechanism/picks.json``, plus those of every phase of ``args.phases`` that now has
    seeds 0..seeds_per_point-1 of every variant and no picks yet: a phase's picks are chosen once, from its
    curves as they were then (later seeds never move them), and a phase finished later gets its own."""
    picks_file = args.results_dir / "mechanism" / "picks.json"
    picks = json.loads(picks_file.read_text()) if picks_file.exists() else []
    picked = {(pick["target"], pick["regime"]) for pick in picks}
    added = []
    for phase in args.phases:
        target, regime = phase.split(":")
        s = summarize_phase(args, target, regime)
        if s is not None and (s["target"], s["regime"]) in picked:
            continue
        if s is None or not all(
            v in s["variants"] and s["variants"][v]["best"]["complete"] for v in args.variants
        ):
            print(f"# mechanism: {phase} lacks some variant's seeds 0-{args.seeds_per_point - 1}; skipped")
            continue
        added += mechanism_picks(args, s)
    if added:
        picks_file.parent.mkdir(parents=True, exist_ok=True)
        picks_file.write_text(json.dumps(picks + added, indent=1))
    return picks + added


def run_mechanism(args: argparse.Namespace) -> list[dict]:
    """Rerun seed 0 of each pick's variants (:func:`update_mechanism_picks`) with the drift probe on;
    rerunning resumes them."""
    picks = update_mechanism_picks(args)
    failures = []
    for pick in picks:
        regime = "finetune" if pick["regime"].startswith("finetune") else "scratch"
        for variant in pick["variants"]:
            run_dir = mechanism_dir(args, pick, variant)
            cmd = run_command(args, pick["target"], regime, variant, MECHANISM_SEED, pick["rate"],
                              work_dir_for(args, run_dir), probe_steps=args.probe_steps)  # fmt: skip
            result = _execute(args, cmd, run_dir, RUN_FILES)
            print(f"# mechanism {pick['target']}:{pick['regime']} {variant} lr {pick['rate']:g}: "
                  f"{_status(result)}", flush=True)  # fmt: skip
            if "error" in result:
                failures.append(result)
    return failures


def _mechanism_runs(args: argparse.Namespace) -> list[tuple[dict[str, Any], dict[str, dict[str, Any]]]]:
    """(pick, variant -> finished run's metrics.json) for every pick with at least one finished run."""
    picks_file = args.results_dir / "mechanism" / "picks.json"
    if not picks_file.exists():
        return []
    out = []
    for pick in json.loads(picks_file.read_text()):
        runs = {}
        for variant in pick["variants"]:
            metrics = mechanism_dir(args, pick, variant) / "metrics.json"
            if metrics.exists():
                runs[variant] = json.loads(metrics.read_text())
        if runs:
            out.append((pick, runs))
    return out


def render_mechanism(args: argparse.Namespace, found: list) -> str:
    md = ["### Mechanism: drift and radius where the curves differ most", ""]
    md += [f"Seed {MECHANISM_SEED} of each variant rerun at the rate where bilateral DynamicSVR differs most "
           f"from its base loss (every seed paired there when the picks were made, at least "
           f"{args.seeds_per_point}), drift probed every "
           f"{args.probe_steps} steps on a fixed batch of 64 (`training/diagnostics.py`); values at the last "
           "probe. cos: mean cos(update of a text anchor, pull direction) under the training loss (1: no "
           "drift); ⊥/∥: median sideways over pulling part of that update; base-loss cos: the same "
           "embeddings under the base loss alone; R ≥ D: share of pairs whose radius reaches the positive "
           "(the support vector is the positive itself); R < 0: radius below zero. Rerun: the test mean R@1 "
           "of this rerun, curve: the same seed's curve run (the probe only reads the model).",
           ""]  # fmt: skip
    md += _table_head("corpus, regime", "rate (difference, seeds won)", "variant",
                      "test mean R@1 rerun / curve", "cos", "⊥/∥", "base-loss cos", "R ≥ D", "R < 0",
                      "text uniformity")  # fmt: skip
    for pick, runs in found:
        regime = "finetune" if pick["regime"].startswith("finetune") else "scratch"
        for variant, metrics in runs.items():
            drift = metrics.get("train_state", {}).get("drift", [])
            last = drift[-1] if drift else {}
            curve = read_metrics(
                run_dir_for(args, pick["target"], regime, variant, MECHANISM_SEED, pick["rate"])
            )
            rerun = read_metrics(mechanism_dir(args, pick, variant))
            histogram = last.get("radius_over_distance")

            def num(key: str, fmt: str = ".3f", last: dict[str, Any] = last) -> str:
                return format(last[key], fmt) if isinstance(last.get(key), (int, float)) else "-"

            md.append(
                f"| {pick['target']}, {pick['regime']} | {pick['rate']:g} ({pick['difference']:+.1f}, "
                f"{pick['seeds_won']}/{pick['pairs']}) | {variant} | "
                f"{rerun['mean_R@1']:.1f} / {'-' if curve is None else format(curve['mean_R@1'], '.1f')} | "
                f"{num('cosine')} | {num('perp_parallel_ratio', '.2f')} | {num('base_cosine')} | "
                f"{'-' if histogram is None else format(histogram[-1], '.0%')} | "
                f"{'-' if histogram is None else format(histogram[0], '.0%')} | "
                f"{num('text_uniformity', '.2f')} |"
            )
    return "\n".join(md)


def plot_mechanism(found: list, path: Path) -> bool:
    """One figure: a row per pick; drift cosine and sideways ratio over steps, the radius / D histogram of
    DynamicSVR at the first and last probe, text uniformity over steps."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(len(found), 4, figsize=(18, 3.6 * len(found)), squeeze=False)
    for row, (pick, runs) in zip(axes, found):
        drifts = {v: m.get("train_state", {}).get("drift", []) for v, m in runs.items()}
        with_radii = [v for v, drift in drifts.items() if any(d.get("radius_over_distance") for d in drift)]
        width = 0.8 / (2 * max(len(with_radii), 1))  # side by side: each variant's first and last probe
        for variant, drift in drifts.items():
            steps = [d["step"] for d in drift]
            row[0].plot(steps, [d.get("cosine") for d in drift], marker=".", label=variant)
            row[1].plot(steps, [d.get("perp_parallel_ratio") for d in drift], marker=".", label=variant)
            row[3].plot(steps, [d.get("text_uniformity") for d in drift], marker=".", label=variant)
            histograms = [d["radius_over_distance"] for d in drift if d.get("radius_over_distance")]
            if histograms:  # bins: R/D below 0, [0, 0.1), ..., [0.9, 1), at least 1 (diagnostics.py)
                labels = ["<0"] + [f"{i / 10:.1f}" for i in range(len(histograms[0]) - 2)] + ["≥1"]
                x = range(len(labels))
                for k, (probe, histogram) in enumerate((("first", histograms[0]), ("last", histograms[-1]))):
                    offset = -0.4 + width * (2 * with_radii.index(variant) + k + 0.5)
                    label = f"{variant}, {probe} probe"
                    row[2].bar([i + offset for i in x], histogram, width=width, label=label)
                row[2].set_xticks(list(x), labels, fontsize=7)
        title = f"{pick['target']}, {pick['regime']}, lr {pick['rate']:g}"
        row[0].set(xlabel="step", ylabel="cos(update, pull)", title=f"{title}: drift (higher: less)")
        row[1].set(xlabel="step", ylabel="median |perp| / |parallel|", title="sideways push")
        row[2].set(xlabel="R / D", ylabel="share of pairs", title="DynamicSVR radius over distance")
        row[3].set(xlabel="step", ylabel="log mean exp(-2 d²)", title="text uniformity (lower: spread)")
        for ax in row:
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


# ------------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------------


def summarize_phase(args: argparse.Namespace, target: str, regime: str) -> dict[str, Any] | None:
    runs = phase_runs(args, target, regime)
    if not any(runs.values()):
        return None
    chosen = best_rates(args, runs)
    variants: dict[str, Any] = {}
    for variant, by_rate in runs.items():
        curve = {}
        for lr in sorted(by_rate):
            by_seed = by_rate[lr]
            first = [by_seed[s] for s in range(args.seeds_per_point) if s in by_seed]
            curve[f"{lr:g}"] = {
                "test_mean_R@1": seed_statistics([m["mean_R@1"] for m in by_seed.values()]),
                "test_t2a_R@1": seed_statistics([m["t2a_R@1"] for m in by_seed.values()]),
                "test_a2t_R@1": seed_statistics([m["a2t_R@1"] for m in by_seed.values()]),
                "validation_mean_R@1_first_seeds": seed_statistics([m["validation_mean_R@1"] for m in first])
                if first
                else None,
                "seeds": sorted(by_seed),
                "per_seed_test_mean_R@1": {s: m["mean_R@1"] for s, m in sorted(by_seed.items())},
                "nonfinite_skipped": sum(m["nonfinite_skipped"] for m in by_seed.values()),
                "train_seconds": statistics.fmean(m["train_seconds"] for m in by_seed.values()),
            }
        best = chosen[variant]
        rates = [float(r) for r in curve]
        width = None
        if best["rate"] is not None and f"{best['rate']:g}" in curve:
            means = [curve[f"{r:g}"]["test_mean_R@1"]["mean"] for r in rates]
            width = robustness_width(rates, means, best["rate"])
        variants[variant] = {"curve": curve, "best": best, "robustness": width}
    at_best = {
        v: {"runs": runs[v].get(s["best"]["rate"], {}), "learning_rate": s["best"]["rate"]}
        for v, s in variants.items()
        if s["best"]["rate"] is not None
    }
    paired_best = paired_against_base(at_best)
    paired_rates = {}
    for lr in args.rates:
        per = {v: {"runs": runs[v].get(lr, {}), "learning_rate": lr} for v in runs}
        paired_rates[f"{lr:g}"] = paired_against_base(per)
    out = {
        "target": target,
        "regime": regime_name(regime, args),
        "steps": steps_for(args, target),
        "variants": variants,
        "paired_at_best": paired_best,
        "paired_at_rate": paired_rates,
    }
    if regime == "finetune":
        zs = stage1_dir(args, target) / "zero_step_test.json"
        if zs.exists():
            z = json.loads(zs.read_text())
            out["stage1_zero_step"] = {
                "mean_R@1": _mean_r1(z),
                "t2a_R@1": z["retrieval"]["t2a_R@1"],
                "a2t_R@1": z["retrieval"]["a2t_R@1"],
                "stage1": stage1_dir(args, target).name,
            }
    return out


def _processor_window(folder: Path) -> Any:
    """The audio window (s) and sampling rate of a saved processor (``processor_config.json``)."""
    path = folder / "processor_config.json"
    if not path.exists():
        return None
    fe = json.loads(path.read_text()).get("feature_extractor", {})
    return {"max_length_s": fe.get("max_length_s"), "sampling_rate": fe.get("sampling_rate")}


def _fmt(stat: dict[str, float] | None) -> str:
    if not stat:
        return "-"
    if math.isnan(stat["std"]):
        return f"{stat['mean']:.1f} (n {stat['n']})"
    return f"{stat['mean']:.1f} ± {stat['std']:.1f} (n {stat['n']})"


def render_phase(s: dict[str, Any], rates: list[float]) -> str:
    title = f"### {s['target']} corpus, {s['regime']} ({s['steps']} steps)"
    lines = [title, "", "Test mean R@1 (%) per learning rate, mean ± std over seeds (n):", ""]
    lines += _table_head("variant", *[f"{lr:g}" for lr in rates])
    for variant, v in s["variants"].items():
        cells = []
        for lr in rates:
            point = v["curve"].get(f"{lr:g}")
            cell = _fmt(point["test_mean_R@1"]) if point else "-"
            if point and point["nonfinite_skipped"]:
                cell += f" †{point['nonfinite_skipped']}"
            if v["best"]["rate"] == lr:
                cell = f"**{cell}**"
            cells.append(cell)
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    lines += ["", "Validation mean R@1 (%), seeds 0-2 (what chooses the best rate, in bold above):", ""]
    lines += _table_head("variant", *[f"{lr:g}" for lr in rates])
    for variant, v in s["variants"].items():
        cells = [
            _fmt((v["curve"].get(f"{lr:g}") or {}).get("validation_mean_R@1_first_seeds")) for lr in rates
        ]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    lines += ["", "Best points (rate by validation), paired against the base loss at its own best rate:", ""]
    lines += _table_head(
        "variant", "best rate", "test mean R@1 at best", "− base (per seed → mean ± std)", "seeds won", "p",
        "width within 1 point (decades; range)",
    )  # fmt: skip
    for variant, v in s["variants"].items():
        best = v["best"]
        rate = "-" if best["rate"] is None else f"{best['rate']:g}"
        if best["rate"] is not None and not best["complete"]:
            rate += " (provisional)"
        elif best.get("edge"):
            rate += " (EDGE)"
        point = v["curve"].get(rate.split()[0]) if best["rate"] is not None else None
        paired = s["paired_at_best"].get(variant)
        diff = won = p = ""
        if paired:
            per_seed = ", ".join(f"{d:+.1f}" for d in paired["differences"])
            spread = "" if math.isnan(paired["std"]) else f" ± {paired['std']:.1f}"
            diff = f"{per_seed} → {paired['mean']:+.1f}{spread}"
            won, p = f"{paired['seeds_won']}/{len(paired['seeds'])}", f"{paired['p_sign_flip']:.3f}"
        w = v["robustness"]
        width = "-"
        if w:
            width = f"{'≥ ' if w['lower_bound'] else ''}{w['decades']:.2f} ({w['low']:.2g}–{w['high']:.2g})"
        test = _fmt(point["test_mean_R@1"]) if point else "-"
        lines.append(f"| {variant} | {rate} | {test} | {diff} | {won} | {p} | {width} |")
    lines += [
        "",
        "Paired difference against the base loss at every shared rate (mean, seeds won/paired, p):",
        "",
    ]
    lines += _table_head("variant − base", *[f"{lr:g}" for lr in rates])
    names = [v for v in s["variants"] if VARIANTS[v][0] != v]
    for variant in names:
        cells = []
        for lr in rates:
            row = s["paired_at_rate"].get(f"{lr:g}", {}).get(variant)
            cells.append(
                f"{row['mean']:+.1f} ({row['seeds_won']}/{len(row['seeds'])}, p {row['p_sign_flip']:.2f})"
                if row
                else "-"
            )
        lines.append(f"| {variant} − {VARIANTS[variant][0]} | " + " | ".join(cells) + " |")
    if "stage1_zero_step" in s:
        z = s["stage1_zero_step"]
        lines += [
            "",
            f"Stage-1 start ({z['stage1']}) on this test split with zero steps of stage 2: mean R@1 "
            f"{z['mean_R@1']:.1f} (T2A {z['t2a_R@1']:.1f}, A2T {z['a2t_R@1']:.1f}).",
        ]
    return "\n".join(lines)


def render_closing(summaries: list[dict[str, Any]]) -> str:
    lines = ["### Closing note: seeds won at the best points, and rate-robustness widths", ""]
    lines += _table_head(
        "corpus",
        "regime",
        "variant",
        "best rate",
        "seeds won vs base (at both best points)",
        "width (decades)",
    )
    for s in summaries:
        for variant, v in s["variants"].items():
            paired = s["paired_at_best"].get(variant)
            won = f"{paired['seeds_won']}/{len(paired['seeds'])}" if paired else "-"
            w = v["robustness"]
            width = "-" if not w else f"{'≥ ' if w['lower_bound'] else ''}{w['decades']:.2f}"
            rate = "-" if v["best"]["rate"] is None else f"{v['best']['rate']:g}"
            lines.append(f"| {s['target']} | {s['regime']} | {variant} | {rate} | {won} | {width} |")
    return "\n".join(lines)


def render_start_vs_scratch(summaries: list[dict[str, Any]]) -> str:
    """Per corpus: the stage-1 start with zero steps, and the best from-scratch / fine-tuned test points."""
    by_target: dict[str, dict[str, dict]] = {}
    for s in summaries:
        by_target.setdefault(s["target"], {})[s["regime"]] = s
    lines = ["### The stage-1 start against training from scratch (test mean R@1, %)", ""]
    lines += _table_head("corpus", "stage-1 start, zero steps", "base loss", "from scratch (best)",
                         "fine-tuned (best)")  # fmt: skip
    for target, regimes in by_target.items():
        zero = next((s["stage1_zero_step"] for s in regimes.values() if "stage1_zero_step" in s), None)
        for base in ("infonce", "siglip"):
            cells = []
            for regime in ("scratch", next((r for r in regimes if r.startswith("finetune")), "finetune")):
                s = regimes.get(regime)
                v = s["variants"].get(base) if s else None
                rate = v["best"]["rate"] if v else None
                point = v["curve"].get(f"{rate:g}") if v and rate is not None else None
                cells.append(f"{_fmt(point['test_mean_R@1'])} at {rate:g}" if point else "-")
            z = f"{zero['mean_R@1']:.1f}" if zero else "-"
            lines.append(f"| {target} | {z} | {base} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def plot_phase(s: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("# matplotlib not installed: no plot", flush=True)
        return False
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.3), sharey=True)
    styles = {"": ("-", "o"), "+dynamic-bi": ("--", "s"), "+spreading-bi": (":", "^")}
    for ax, base in zip(axes, ("infonce", "siglip")):
        for suffix, (ls, marker) in styles.items():
            v = s["variants"].get(base + suffix)
            if not v or not v["curve"]:
                continue
            rates = [float(r) for r in v["curve"]]
            means = [p["test_mean_R@1"]["mean"] for p in v["curve"].values()]
            stds = [
                0.0 if math.isnan(p["test_mean_R@1"]["std"]) else p["test_mean_R@1"]["std"]
                for p in v["curve"].values()
            ]
            line = ax.errorbar(rates, means, yerr=stds, ls=ls, marker=marker, capsize=3, label=base + suffix)
            best = v["best"]["rate"]
            if best is not None and f"{best:g}" in v["curve"]:
                ax.plot([best], [v["curve"][f"{best:g}"]["test_mean_R@1"]["mean"]], marker="*", ms=14,
                        color=line[0].get_color(), ls="none")  # fmt: skip
        if "stage1_zero_step" in s:
            ax.axhline(
                s["stage1_zero_step"]["mean_R@1"],
                color="gray",
                ls="-.",
                lw=1,
                label="stage-1 start (0 steps)",
            )
        ax.set_xscale("log")
        ax.set_xlabel("peak learning rate")
        ax.set_title(f"{base} side", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("test mean R@1 (%), mean ± std over seeds")
    fig.suptitle(
        f"{s['target']} corpus, {s['regime']}, {s['steps']} steps; star: best rate by validation (seeds 0-2)",
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def report(args: argparse.Namespace, failures: list[dict], quiet: bool = False) -> dict[str, Any]:
    summaries = []
    for phase in args.phases:
        target, regime = phase.split(":")
        s = summarize_phase(args, target, regime)
        if s is None:
            continue
        s["processor_window"] = {
            "stage1": _processor_window(stage1_dir(args, target)) if regime == "finetune" else None,
            "scratch_seed0": next(
                (
                    _processor_window(run_dir_for(args, target, "scratch", v, 0, lr))
                    for v in args.variants
                    for lr in args.rates
                    if (run_dir_for(args, target, "scratch", v, 0, lr) / "processor_config.json").exists()
                ),
                None,
            ),
        }
        summaries.append(s)
    md = ["## Learning-rate curves (issue 30), generated by benchmarks/bench_lr_curves.py", ""]
    md += [f"Grid: {', '.join(f'{r:g}' for r in args.rates)}; stage-1 recipe `{args.stage1_recipe}`; "
           f"{args.seeds_per_point} seeds per point, {args.seeds_at_best} at each variant's best rate. "
           "† n: steps skipped as non-finite (summed over seeds).", ""]  # fmt: skip
    for s in summaries:
        md += [render_phase(s, args.rates), ""]
        if plot_phase(s, args.results_dir / f"curves_{s['target']}_{s['regime']}.png"):
            md += [f"![curves](curves_{s['target']}_{s['regime']}.png)", ""]
    if summaries:
        md += [render_start_vs_scratch(summaries), "", render_closing(summaries), ""]
    if found := _mechanism_runs(args):
        md += [render_mechanism(args, found), ""]
        if plot_mechanism(found, args.results_dir / "mechanism.png"):
            md += ["![mechanism](mechanism.png)", ""]
    summary = {
        "argv": sys.argv,
        "platform": platform_record(args.threads),
        "rates": args.rates,
        "variants": args.variants,
        "stage1_recipe": {"name": args.stage1_recipe, **STAGE1_RECIPES[args.stage1_recipe]},
        "phases": summaries,
        "failures": failures,
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    (args.results_dir / "report.md").write_text("\n".join(md))
    if not quiet:
        print("\n".join(md))
    print(f"# wrote {args.results_dir / 'summary.json'} and {args.results_dir / 'report.md'}", flush=True)
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", default=LR_VARIANTS, choices=list(VARIANTS))
    p.add_argument("--learning_rates", type=float, nargs="+", default=DEFAULT_RATES, help="the grid")
    p.add_argument("--add_rates", type=float, nargs="+", default=[], help="extend the grid (an edge best)")
    p.add_argument("--phases", nargs="+", default=PHASES, choices=PHASES, help="in this order")
    p.add_argument("--stage1_recipe", default="base", choices=list(STAGE1_RECIPES))
    p.add_argument("--stage1_only", action="store_true", help="train the stage-1 starts of --phases, stop")
    p.add_argument("--seeds_per_point", type=int, default=3)
    p.add_argument("--seeds_at_best", type=int, default=5, help="seeds at each variant's best rate")
    p.add_argument("--real_steps", type=int, default=600, help="budget on real sound, both regimes")
    p.add_argument("--demo_steps", type=int, default=1200, help="budget on the demo, both regimes")
    p.add_argument("--stage1_steps", type=int, default=None, help="default: the recipe's")
    p.add_argument("--preset", default="small", choices=["tiny", "small"])
    p.add_argument("--per_device_train_batch_size", type=int, default=None, help="default: the CLI's (32)")
    p.add_argument("--warmup_steps", type=int, default=None, help="default: the CLI's (100)")
    p.add_argument("--dataloader_num_workers", type=int, default=None, help="default: the CLI's")
    p.add_argument("--demo_num_clips", type=int, default=2400)
    p.add_argument("--cache_dir", type=Path, default=REPO_ROOT / ".cache" / "supclap")
    p.add_argument("--real_data", type=Path, default=None, help="default: CACHE_DIR/real_sounds")
    p.add_argument("--results_dir", type=Path, default=REPO_ROOT / "docs" / "results" / "lr_curves")
    p.add_argument(
        "--work_dir", type=Path, default=None, help="where runs train (default outputs/lr_curves_work)"
    )
    p.add_argument("--keep_weights", action="store_true", help="keep each run's model.safetensors")
    p.add_argument("--timeout", type=float, default=7200, help="seconds per training run")
    p.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of each run")
    p.add_argument("--jobs", type=int, default=1, help="training runs at a time")
    p.add_argument(
        "--max_runs", type=int, default=None, help="start at most this many trainings, then report"
    )
    p.add_argument("--report_only", action="store_true", help="run nothing; summarise the finished runs")
    p.add_argument("--smoke", action="store_true", help="tiny, 3 steps, small corpora, 2 variants, 1 rate")
    p.add_argument(
        "--mechanism",
        action="store_true",
        help="rerun seed 0 with the drift probe where DynamicSVR's curve differs most (needs seeds 0-2)",
    )
    p.add_argument("--probe_steps", type=int, default=50, help="--mechanism's drift probe interval")
    p.add_argument(
        "extra", nargs="*", help="after '--': more train_supclap.py arguments for every stage-2 run"
    )
    args = p.parse_args(argv)
    if args.smoke:
        args.variants = ["infonce", "infonce+dynamic-bi"]
        args.learning_rates, args.phases, args.preset = [1e-3], ["real:finetune"], "tiny"
        args.seeds_per_point, args.seeds_at_best = 1, 2
        args.real_steps = args.demo_steps = args.stage1_steps = 3
        args.per_device_train_batch_size, args.warmup_steps, args.demo_num_clips = 8, 1, 80
        args.jobs, args.keep_weights = max(args.jobs, 2), True
        if args.results_dir == REPO_ROOT / "docs" / "results" / "lr_curves":
            args.results_dir = REPO_ROOT / "outputs" / "lr_curves_smoke"
    args.rates = sorted(set(args.learning_rates) | set(args.add_rates))
    args.real_data = args.real_data or args.cache_dir / ("smoke_real" if args.smoke else "real_sounds")
    args.work_dir = args.work_dir or REPO_ROOT / "outputs" / (
        "lr_curves_smoke_work" if args.smoke else "lr_curves_work"
    )
    args.budget, args.walls, args.failures = Budget(args.max_runs), [], []
    per_phase = len(args.variants) * (
        len(args.rates) * args.seeds_per_point + args.seeds_at_best - args.seeds_per_point
    )
    args.total_jobs = per_phase * len(args.phases)

    load = os.getloadavg()
    print(f"# bench_lr_curves: {' '.join(sys.argv)}")
    print(
        f"# {platform.platform()}, {os.cpu_count()} CPUs, python {platform.python_version()}, load average "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {args.total_jobs} stage-2/scratch runs in {args.phases}",
        flush=True,
    )
    failures: list[dict] = []
    t0 = time.perf_counter()
    if args.mechanism:
        failures += run_mechanism(args)
    elif args.stage1_only:
        for target in dict.fromkeys(ph.split(":")[0] for ph in args.phases if ph.endswith(":finetune")):
            result = ensure_stage1(args, target)
            if "error" in result:
                failures.append(result)
    else:
        for phase in args.phases:
            failures += run_phase(args, phase)
            args.failures = failures
    print(f"# {time.perf_counter() - t0:.0f}s", flush=True)
    report(args, failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
