#!/usr/bin/env python
"""Retrieval and zero-shot quality of InfoNCE, SigLIP and Static/Dynamic SVR (uni/bilateral), demo corpus.

Every run is the real command line, ``train_supclap.py``, in its own subprocess, with the same budget for
every variant (same preset, steps, batch, learning-rate schedule, data; only the loss flags and ``--seed``
change)::

    python train_supclap.py --preset small --max_steps S --seed k --base_loss B --svr_mode M \
        --svr_bilateral X --eval_steps S --save_steps 0 --report_to none --drift_probe_steps 0 \
        --cache_dir .cache/supclap --output_dir RUN_DIR

``--eval_steps S`` validates once, at the last step, so the model tested is the last one (the CLI tests the
best validation checkpoint, which is then the last). The CLI scores the test split of the demo corpus itself;
this script reads ``RUN_DIR/metrics.json``: ``test.retrieval`` (R@1/5/10 and mAP@10, both directions) and
``test.zero_shot.accuracy``, and reports mean +- std (sample std, ddof=1) over seeds per variant as a
markdown table, a JSON file and a PNG bar chart of the mean R@1 (both directions) with std error bars.

Variants: by default the ten that answer a question (``QUESTION_VARIANTS``: each base loss alone, and
with bilateral static, dynamic, ratio and spreading SVR); ``--variants`` takes any name of
``benchmarks/loss_variants.py`` (every registered mode, on one side or both).

Resumable: runs whose ``metrics.json`` exists are not run again (the run folder encodes the budget, and each
run folder keeps the exact command in ``bench_cmd.json``; a mismatch is an error). Runs go seed-major (every
variant with seed 0, then seed 1, ...), so a benchmark cut short still covers every variant.

Usage::

    python benchmarks/bench_quality.py                                   # small preset, 1200 steps, 3 seeds
    nohup python benchmarks/bench_quality.py --jobs 1 --threads 1 > bench_quality.log 2>&1 &  # docs run
    python benchmarks/bench_quality.py --report_only                     # tables/plot from what finished
    python benchmarks/bench_quality.py --smoke                           # 2 variants, 1 seed, 5 tiny steps

Budget: at 400 or 600 steps (cosine schedule ending there) the small preset is still near chance on the
test split (InfoNCE T2A R@1 ~2-3 %, chance 0.4 %), so the variants cannot be told apart; 1200 steps (the
CLI's default, ~4-8 min per run on 2 shared cores) is the smallest budget used for the documented table.

Tuned baselines (``--learning_rates 3e-4 1e-3 3e-3 --seeds 5``): every variant is first trained once per
rate with ``--sweep_seed`` (0), each variant keeps the rate with the best *validation* mean R@1 (the test
split never chooses), and then runs with seeds 0..N-1 at that rate (the sweep's run is reused for its
seed). The report adds, per SVR variant, the seed-by-seed difference in mean R@1 against its base loss
at the base loss's own best rate: mean ± std, seeds won, and an exact two-sided sign-flip test::

    nohup python benchmarks/bench_quality.py --learning_rates 3e-4 1e-3 3e-3 --seeds 5 --jobs 2 \
        --threads 1 --json docs/results/quality_tuned.json --plot docs/results/quality_tuned.png \
        > quality_tuned.log 2>&1 &

``--jobs 2`` trains two runs side by side (the metrics do not depend on it; ``train s/run`` does).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]

from loss_variants import VARIANTS  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

from modeling_supclap.evaluation.metrics import RETRIEVAL_METRICS  # noqa: E402  (loss_variants put the repo on sys.path)

RETRIEVAL_KEYS = tuple(RETRIEVAL_METRICS)
# The variants that answer a question: each base loss, its bilateral Static and Dynamic SVR (the
# paper's), the ratio mode (R = rho D) and the spreading control (what a saturated radius reduces to).
QUESTION_VARIANTS = [
    name
    for base in ("infonce", "siglip")
    for name in (base, f"{base}+static-bi", f"{base}+dynamic-bi", f"{base}+ratio-bi", f"{base}+spreading-bi")
]
METRIC_KEYS = (*RETRIEVAL_KEYS, "zero_shot_acc", "mean_R@1")


def run_dir_for(args: argparse.Namespace, variant: str, seed: int, lr: float | None = None) -> Path:
    """``OUT/<budget>/<variant>/seed<k>``, or ``.../<variant>/lr<lr>/seed<k>`` in a learning-rate sweep."""
    folder = args.out_dir / budget_tag(args) / variant
    return (folder if lr is None else folder / f"lr{lr:g}") / f"seed{seed}"


def budget_flags(args: argparse.Namespace) -> list[str]:
    """The batch size, warmup steps and DataLoader workers given to the benchmark (None: the CLI's)."""
    flags = []
    for name in ("per_device_train_batch_size", "warmup_steps", "dataloader_num_workers"):
        if getattr(args, name) is not None:
            flags += [f"--{name}", str(getattr(args, name))]
    return flags


def run_command(
    variant: str, seed: int, run_dir: Path, args: argparse.Namespace, lr: float | None = None
) -> list[str]:
    base_loss, svr_mode, bilateral = VARIANTS[variant]
    cmd = [sys.executable, str(REPO_ROOT / "train_supclap.py")]
    cmd += ["--preset", args.preset, "--max_steps", str(args.max_steps), "--seed", str(seed)]
    cmd += ["--base_loss", base_loss, "--svr_mode", svr_mode, "--svr_bilateral", str(bilateral)]
    cmd += ["--eval_steps", str(args.max_steps), "--save_steps", "0", "--report_to", "none"]
    cmd += ["--drift_probe_steps", "0", "--cache_dir", str(args.cache_dir), "--output_dir", str(run_dir)]
    if args.demo_num_clips is not None:
        cmd += ["--demo_num_clips", str(args.demo_num_clips)]
    cmd += budget_flags(args)
    if lr is not None:
        cmd += ["--learning_rate", f"{lr:g}"]
    return cmd + list(args.extra)


def budget_tag(args: argparse.Namespace) -> str:
    parts = [args.preset, f"steps{args.max_steps}"]
    if args.demo_num_clips is not None:
        parts.append(f"clips{args.demo_num_clips}")
    if args.per_device_train_batch_size is not None:
        parts.append(f"bs{args.per_device_train_batch_size}")
    if args.warmup_steps is not None:
        parts.append(f"warmup{args.warmup_steps}")
    return "_".join(parts)


_LOCATION_FLAGS = ("--output_dir", "--cache_dir")
# Flags naming an input folder or file: the same input may live elsewhere on another checkout or machine
# (a corpus built under another cache, a results folder moved), so only its last path component counts.
_NAMED_FLAGS = ("--train_data", "--validation_data", "--test_data", "--model_name_or_path")


def _experiment(argv: list[str]) -> list[str]:
    """The training arguments that define a run: not the interpreter, script path or folders (a results
    folder may be moved or copied to another checkout and still be resumed or reported); inputs given by
    path (``_NAMED_FLAGS``) count by their name."""
    args = argv[2:]
    kept = []
    for i, a in enumerate(args):
        if a in _LOCATION_FLAGS or (i > 0 and args[i - 1] in _LOCATION_FLAGS):
            continue
        kept.append(Path(a).name if i > 0 and args[i - 1] in _NAMED_FLAGS else a)
    return kept


def platform_record(threads: int | None) -> dict[str, Any]:
    """Where and how a run was made (runs are deterministic on one machine, not across machines)."""
    load = os.getloadavg()
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "omp_num_threads": threads,
        "load_average_at_start": [round(x, 2) for x in load],
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "code": code_version(),
    }


def code_version() -> str | None:
    """The commit of the code that trains (``+dirty`` with uncommitted changes), None outside a git clone:
    a results folder collected over weeks can say which code made each run."""
    git = ["git", "-C", str(REPO_ROOT)]
    code = ["--", "modeling_supclap", "train_supclap.py", "eval_supclap.py"]
    try:
        commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        changes = [*git, "status", "--porcelain", "--untracked-files=no", *code]
        dirty = subprocess.run(changes, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (commit.stdout.strip() + ("+dirty" if dirty else "")) or None


def launch(cmd: list[str], log: Path, env: dict[str, str], timeout: float | None) -> int:
    """Run one command (a ``train_supclap.py`` run; ``bench_lr_curves.py``'s ``eval_supclap.py`` too) to
    its end, in ``REPO_ROOT`` with the environment ``env``, its output (stdout and stderr) in the file
    ``log``; returns its exit status. Every run of :func:`execute_run` starts here (the smoke tests put an
    in-process call of the script's ``main`` in its place)."""
    with open(log, "w") as out:
        proc = subprocess.run(cmd, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, env=env,
                              timeout=timeout)  # fmt: skip
    return proc.returncode


def execute_run(
    cmd: list[str],
    run_dir: Path,
    *,
    threads: int | None,
    timeout: float | None,
    report_only: bool = False,
    work_dir: Path | None = None,
    keep: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Run one training command (``cmd`` writes to ``work_dir``, default ``run_dir``) unless
    ``run_dir/metrics.json`` exists; the exact command is kept in ``bench_cmd.json`` and a different
    command for the same folder is an error.

    With ``keep`` (file or folder names of ``work_dir``), only those are moved into ``run_dir`` after
    a successful run (``metrics.json``, the completion mark, last) and ``work_dir`` is deleted: model
    weights need not reach a results folder that is committed, and a run cut short leaves nothing
    there. Returns ``{"run_dir", "resumed" | "missing" | "wall_s" [, "error"]}``.
    """
    work_dir = run_dir if work_dir is None else work_dir
    recorded = run_dir / "bench_cmd.json"
    if recorded.exists() and _experiment(json.loads(recorded.read_text())["argv"]) != _experiment(cmd):
        raise RuntimeError(f"{run_dir} was made by another command ({recorded}); use another --out_dir")
    metrics_file = run_dir / "metrics.json"
    if metrics_file.exists():
        return {"run_dir": str(run_dir), "resumed": True}
    if report_only:
        return {"run_dir": str(run_dir), "missing": True}
    if work_dir != run_dir and work_dir.exists():
        shutil.rmtree(work_dir)  # a run cut short earlier: start it again from nothing
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "bench_cmd.json").write_text(json.dumps({"argv": cmd}, indent=1))
    (work_dir / "bench_platform.json").write_text(json.dumps(platform_record(threads), indent=1))
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    if threads is not None:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    t0 = time.perf_counter()
    returncode = launch(cmd, work_dir / "train.log", env, timeout)
    wall = time.perf_counter() - t0
    out: dict[str, Any] = {"run_dir": str(run_dir), "wall_s": wall}
    if returncode != 0 or not (work_dir / "metrics.json").exists():
        tail = (work_dir / "train.log").read_text()[-600:].replace("\n", " / ")
        out["error"] = f"exit {returncode}: {tail}"
        return out
    (work_dir / "bench_wall_s.txt").write_text(f"{wall:.3f}\n")
    if work_dir != run_dir:
        run_dir.mkdir(parents=True, exist_ok=True)
        names = [n for n in (*(keep or ()), "bench_cmd.json", "bench_platform.json", "bench_wall_s.txt",
                             "train.log") if n != "metrics.json"]  # fmt: skip
        for name in dict.fromkeys(names):
            if (work_dir / name).exists():
                shutil.move(str(work_dir / name), str(run_dir / name))
        shutil.move(str(work_dir / "metrics.json"), str(metrics_file))
        shutil.rmtree(work_dir)
    return out


def run_one(variant: str, seed: int, args: argparse.Namespace, lr: float | None = None) -> dict[str, Any]:
    run_dir = run_dir_for(args, variant, seed, lr)
    cmd = run_command(variant, seed, run_dir, args, lr)
    result = execute_run(
        cmd, run_dir, threads=args.threads, timeout=args.timeout, report_only=args.report_only
    )
    return {"variant": variant, "seed": seed, "lr": lr, **result}


def read_metrics(run_dir: Path) -> dict[str, float] | None:
    path = run_dir / "metrics.json"
    if not path.exists():
        return None
    results = json.loads(path.read_text())
    test = results.get("test") or {}
    retrieval = test.get("retrieval") or {}
    out = {key: float(retrieval[key]) for key in RETRIEVAL_KEYS if key in retrieval}
    if "zero_shot" in test:
        out["zero_shot_acc"] = float(test["zero_shot"]["accuracy"])
    if "t2a_R@1" in out and "a2t_R@1" in out:
        out["mean_R@1"] = (out["t2a_R@1"] + out["a2t_R@1"]) / 2
    validation = results["train_state"].get("validation") or []
    if validation:  # the learning-rate sweep picks by validation, never by the test split
        out["validation_mean_R@1"] = float(validation[-1]["mean_R@1"])
    out["train_seconds"] = float(results["train_state"]["train_seconds"])
    out["steps"] = int(results["train_state"]["step"])
    wall = run_dir / "bench_wall_s.txt"
    if wall.exists():
        out["wall_s"] = float(wall.read_text())
    return out


def seed_statistics(values: list[float]) -> dict[str, float]:
    """Mean, sample std (ddof 1; NaN for one seed) and count of one metric over seeds."""
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else float("nan"),
        "n": len(values),
    }


def aggregate(
    args: argparse.Namespace,
    variants: list[str],
    seeds: list[int],
    learning_rates: dict[str, float | None] | None = None,
) -> dict[str, Any]:
    """Per variant (at ``learning_rates[variant]`` in a sweep): every finished seed, mean and std."""
    per_variant: dict[str, Any] = {}
    for variant in variants:
        lr = (learning_rates or {}).get(variant)
        runs = {}
        for seed in seeds:
            m = read_metrics(run_dir_for(args, variant, seed, lr))
            if m is not None:
                runs[seed] = m
        summary: dict[str, Any] = {"seeds": sorted(runs), "runs": runs}
        if lr is not None:
            summary["learning_rate"] = lr
        for key in (*METRIC_KEYS, "train_seconds"):
            values = [r[key] for r in runs.values() if key in r]
            if values:
                summary[key] = seed_statistics(values)
        per_variant[variant] = summary
    return per_variant


def pick_learning_rates(
    args: argparse.Namespace, variants: list[str], rates: list[float], seed: int
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Per variant, the rate whose sweep run (``seed``) ends with the best *validation* mean R@1.

    Returns (best rate per variant whose sweep is complete, every finished sweep score). Ties go to the
    smaller rate.
    """
    best, sweep = {}, {}
    for variant in variants:
        scores = {}
        for lr in rates:
            metrics = read_metrics(run_dir_for(args, variant, seed, lr))
            if metrics is not None and "validation_mean_R@1" in metrics:
                scores[lr] = metrics["validation_mean_R@1"]
        sweep[variant] = {f"{lr:g}": score for lr, score in scores.items()}
        if len(scores) == len(rates):
            best[variant] = max(scores, key=lambda lr: (scores[lr], -lr))
    return best, sweep


def sign_flip_p_value(differences: list[float]) -> float:
    """Two-sided exact p-value of a mean paired difference: the share of the 2^n sign assignments whose
    |sum| is at least the observed one (no normality assumption; with 5 seeds the smallest p is 1/16)."""
    observed = abs(sum(differences))
    hits = sum(
        abs(sum(sign * d for sign, d in zip(signs, differences))) >= observed - 1e-12
        for signs in itertools.product((1, -1), repeat=len(differences))
    )
    return hits / 2 ** len(differences)


def paired_against_base(per_variant: dict[str, Any], key: str = "mean_R@1") -> dict[str, Any]:
    """Each SVR variant minus its base loss (``infonce`` / ``siglip``), seed by seed (same seed = same
    data order and initialisation), on the seeds both finished."""
    out: dict[str, Any] = {}
    for variant, summary in per_variant.items():
        base = VARIANTS[variant][0]
        if variant == base or base not in per_variant:
            continue
        base_runs = per_variant[base]["runs"]
        seeds = sorted(set(summary["runs"]) & set(base_runs))
        if not seeds:
            continue
        differences = [summary["runs"][s][key] - base_runs[s][key] for s in seeds]
        out[variant] = {
            "base": base,
            "key": key,
            "seeds": seeds,
            "differences": differences,
            "mean": statistics.fmean(differences),
            "std": statistics.stdev(differences) if len(differences) > 1 else float("nan"),
            "seeds_won": sum(d > 0 for d in differences),
            "p_sign_flip": sign_flip_p_value(differences),
            "learning_rates": [summary.get("learning_rate"), per_variant[base].get("learning_rate")],
        }
    return out


def _table_head(*columns: str) -> list[str]:
    """A markdown table's header row and separator."""
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def render_paired(paired: dict[str, Any]) -> str:
    lines = _table_head(
        "variant - base loss", "lr (variant / base)", "seeds", "difference in mean R@1 (points)", "seeds won",
        "p (sign-flip, two-sided)",
    )  # fmt: skip
    for variant, row in paired.items():
        rates = " / ".join("-" if lr is None else f"{lr:g}" for lr in row["learning_rates"])
        spread = "" if math.isnan(row["std"]) else f" ± {row['std']:.1f}"
        lines.append(
            f"| {variant} - {row['base']} | {rates} | {len(row['seeds'])} | {row['mean']:+.1f}{spread} | "
            f"{row['seeds_won']}/{len(row['seeds'])} | {row['p_sign_flip']:.3f} |"
        )
    return "\n".join(lines)


def _cell(stat: dict[str, float] | None) -> str:
    if not stat:
        return "-"
    if math.isnan(stat["std"]):
        return f"{stat['mean']:.1f}"
    return f"{stat['mean']:.1f} ± {stat['std']:.1f}"


def render(per_variant: dict[str, Any]) -> str:
    lines = _table_head(
        "variant", "seeds", "T2A R@1", "T2A R@5", "T2A R@10", "A2T R@1", "A2T R@5", "A2T R@10", "T2A mAP@10",
        "A2T mAP@10", "zero-shot acc", "mean R@1", "train s/run",
    )  # fmt: skip
    for variant, s in per_variant.items():
        cells = [_cell(s.get(key)) for key in METRIC_KEYS]
        t = s.get("train_seconds")
        lines.append(
            f"| {variant} | {len(s['seeds'])} | " + " | ".join(cells) + f" | {t['mean']:.0f} |"
            if t
            else f"| {variant} | 0 | " + " | ".join(cells) + " | - |"
        )
    return "\n".join(lines)


def plot(per_variant: dict[str, Any], path: Path, title: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("# matplotlib not installed: no plot", flush=True)
        return False
    names = [v for v, s in per_variant.items() if s.get("t2a_R@1")]
    if not names:
        return False
    fig, ax = plt.subplots(figsize=(max(6.0, 1.0 * len(names) + 2), 4.5))
    width = 0.38
    bars = ((-width / 2, "t2a_R@1", "text->audio R@1"), (width / 2, "a2t_R@1", "audio->text R@1"))
    for offset, key, label in bars:
        means = [per_variant[n][key]["mean"] for n in names]
        stds = [per_variant[n][key]["std"] for n in names]
        xs = [i + offset for i in range(len(names))]
        if all(math.isnan(s) for s in stds):  # one seed per variant: no spread to draw
            ax.bar(xs, means, width, label=label)
        else:
            ax.bar(xs, means, width, yerr=[0.0 if math.isnan(s) else s for s in stds], capsize=3, label=label)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=35, ha="right")
    ax.set_ylabel("test R@1 (%), mean ± std over seeds")
    ax.set_title(title, fontsize=9)
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def run_jobs(
    jobs: list[tuple[str, int, float | None]],
    args: argparse.Namespace,
    phase: str,
    runner: Callable[..., dict[str, Any]] = run_one,
) -> list[dict]:
    """Train (variant, seed, learning rate) runs, ``args.jobs`` at a time, with ``runner(variant, seed,
    args, lr)`` (default :func:`run_one`); returns the failures."""
    failures = []
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(runner, variant, seed, args, lr) for variant, seed, lr in jobs]
        for done, future in enumerate(as_completed(futures), start=1):
            r = future.result()
            if "error" in r:
                failures.append(r)
            status = (
                "skipped (metrics.json exists)" if r.get("resumed")
                else "not started (run limit reached)" if r.get("stopped")
                else "missing" if r.get("missing")
                else f"FAILED {r['error']}" if "error" in r
                else f"done in {r['wall_s']:.1f}s"
            )  # fmt: skip
            rate = "" if r["lr"] is None else f" lr {r['lr']:g}"
            print(
                f"# {phase} [{done}/{len(jobs)}] {r['variant']} seed {r['seed']}{rate}: {status}", flush=True
            )
    return failures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", default=None, choices=list(VARIANTS),
                   help="default: each base loss alone and with bilateral static, dynamic, ratio and "
                   "spreading SVR (--smoke: infonce and infonce+dynamic-bi; every registered variant is a "
                   "choice)")  # fmt: skip
    p.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 per variant (default 3; --smoke: 1)")
    p.add_argument("--max_steps", type=int, default=1200, help="optimizer steps per run (the CLI's default)")
    p.add_argument("--preset", default="small", choices=["tiny", "small"])
    p.add_argument("--per_device_train_batch_size", "--batch_size", type=int, default=None,
                   help="per-device batch (default: the CLI's)")  # fmt: skip
    p.add_argument("--warmup_steps", type=int, default=None, help="default: the CLI's")
    p.add_argument("--dataloader_num_workers", "--num_workers", type=int, default=None,
                   help="DataLoader workers (default: the CLI's)")  # fmt: skip
    p.add_argument("--demo_num_clips", type=int, default=None, help="demo corpus size (default: the CLI's)")
    p.add_argument("--cache_dir", type=Path, default=REPO_ROOT / ".cache" / "supclap")
    p.add_argument("--out_dir", type=Path, default=REPO_ROOT / "outputs" / "bench_quality")
    p.add_argument("--json", type=Path, default=None, help="summary (default: docs/bench_quality_<tag>.json)")
    p.add_argument("--plot", type=Path, default=None, help="PNG (default: docs/bench_quality_<tag>.png)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per training run")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="OMP_NUM_THREADS of each run (default: inherited). On a loaded 2-core box, 2 torch "
        "threads per run can be several times slower than 1 (OpenMP threads wait on each other)",
    )
    p.add_argument("--jobs", type=int, default=1,
                   help="training runs at a time (quality does not depend on it; wall times do)")  # fmt: skip
    p.add_argument("--learning_rates", type=float, nargs="+", default=None,
                   help="tuned baselines: every variant is first trained at each rate with --sweep_seed, "
                   "then at its best rate (by validation mean R@1) with every seed; the report adds "
                   "paired differences against each variant's base loss")  # fmt: skip
    p.add_argument("--sweep_seed", type=int, default=0, help="the seed of the learning-rate sweep")
    p.add_argument("--report_only", action="store_true", help="run nothing; summarise the finished runs")
    p.add_argument("--smoke", action="store_true",
                   help="2 variants, 1 seed, tiny preset, 5 steps, 80-clip corpus (seconds)")  # fmt: skip
    p.add_argument("extra", nargs="*", help="after '--': more train_supclap.py arguments for every run")
    args = p.parse_args(argv)
    if args.smoke:
        args.variants, args.seeds = args.variants or ["infonce", "infonce+dynamic-bi"], args.seeds or 1
        args.preset, args.max_steps = "tiny", 5
        args.per_device_train_batch_size, args.warmup_steps = args.per_device_train_batch_size or 8, 1
        args.demo_num_clips = args.demo_num_clips or 80
        args.jobs = max(args.jobs, 2)  # two short runs side by side: most of each is interpreter start-up
        args.threads = args.threads or 1
    args.variants = args.variants or QUESTION_VARIANTS
    tag = budget_tag(args)
    json_path = args.json or REPO_ROOT / "docs" / f"bench_quality_{tag}.json"
    plot_path = args.plot or REPO_ROOT / "docs" / f"bench_quality_{tag}.png"
    seeds = list(range(args.seeds or 3))

    load = os.getloadavg()
    print(f"# bench_quality: {' '.join(sys.argv)}")
    print(
        f"# {platform.platform()}, {os.cpu_count()} CPUs, python {platform.python_version()}, budget {tag}, "
        f"seeds {seeds}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        flush=True,
    )
    best_rates: dict[str, float] | None = None
    sweep: dict[str, Any] = {}
    if args.learning_rates:
        rates = args.learning_rates
        failures = run_jobs([(v, args.sweep_seed, lr) for lr in rates for v in args.variants], args, "sweep")
        best_rates, sweep = pick_learning_rates(args, args.variants, rates, args.sweep_seed)
        print(
            "# best learning rate by validation mean R@1: "
            + ", ".join(f"{v} {lr:g}" for v, lr in best_rates.items())
        )
        jobs = [(v, seed, best_rates[v]) for seed in seeds for v in args.variants if v in best_rates]
    else:
        failures, jobs = (
            [],
            [(variant, seed, None) for seed in seeds for variant in args.variants],
        )  # seed-major
    failures += run_jobs(jobs, args, "seeds")

    per_variant = aggregate(args, args.variants, seeds, best_rates)
    table = render(per_variant)
    print(table)
    paired = paired_against_base(per_variant)
    if paired:
        paired_table = render_paired(paired)
        print()
        print(paired_table)
    summary = {
        "argv": sys.argv,
        "budget": tag,
        "command_first_run": " ".join(run_command(args.variants[0], 0, Path("RUN_DIR"), args)[1:]),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "variants": per_variant,
        "learning_rate_sweep": sweep,
        "paired_against_base": paired,
        "failures": failures,
        "table": table,
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(summary, indent=1))
    finished = sorted({seed for s in per_variant.values() for seed in s["seeds"]})
    counts = sorted({len(s["seeds"]) for s in per_variant.values()})
    corpus = "demo corpus"
    if "--train_data" in args.extra[:-1]:
        corpus = Path(args.extra[args.extra.index("--train_data") + 1]).name
    title = (
        f"{corpus} test split, {tag}, seeds {finished} finished\n"
        f"({'/'.join(map(str, counts))} per variant; error bars: std over seeds) - train_supclap.py"
    )
    if plot(per_variant, plot_path, title):
        print(f"# wrote {json_path} and {plot_path}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
