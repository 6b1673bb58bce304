#!/usr/bin/env python
"""Training throughput of our Accelerate loop (``train_supclap.py``) vs plain ``ClapModel`` + ``Trainer``.

Same work on both sides: the demo corpus' train split, the same ``AudioTextDataset`` + ``SupClapCollator``
(same processor, max 64 tokens), the same preset architecture, batch size, DataLoader workers, steps,
optimiser settings (AdamW with ``train_supclap.py``'s defaults, read from ``TrainArguments``: learning rate,
betas, eps, weight decay, warm-up, cosine schedule, gradient clipping, logging interval), plain
symmetric InfoNCE. Each run is its own
subprocess; runs alternate (the order rotates every round) and the table reports medians over rounds.

* ``trainer``: ``transformers.ClapModel(ClapConfig(<preset sub-configs>))`` trained by an unmodified
  ``transformers.Trainer`` (``save_strategy="no"``, ``eval_strategy="no"``, ``report_to="none"``,
  ``use_cpu=(--device == "cpu")``, ``dataloader_num_workers=W``, ``remove_unused_columns=False``); the loss is
  transformers' built-in ``return_loss=True`` CLAP loss. Training time: a ``TrainerCallback`` from
  ``on_train_begin`` to ``on_step_end`` of the last step.
* ``ours``: ``train_supclap.py --preset P --base_loss infonce --svr_mode none --max_steps S --eval_steps 0
  --save_steps 0 --report_to none``, plus ``--use_cpu`` with ``--device cpu`` (everything else at the CLI's
  defaults, so the drift probe runs every 100 steps as it does for users; validation runs once after the
  last step, outside the timed span). Training time: ``train_state.train_seconds`` of its ``metrics.json``
  (from just before the first batch is fetched to the end of the last optimizer step: the same span).
* ``ours, no probe``: the same plus ``--drift_probe_steps 0`` (only with ``--max_steps`` >= 100).
* ``ours, per-tensor AdamW`` (diagnostic, only with ``--methods``): ``ours`` with ``--optim adamw_torch``
  (torch's per-tensor AdamW loop; the default, like the Trainer's ``adamw_torch_fused``, is fused).
* ``ours, torch.compile`` (only with ``--methods``): ``ours`` with ``--torch_compile``; the compilation
  happens in the first steps, inside the timed span, as a user pays it.

samples/s = steps x batch / training time (wall clock). The same span is also measured in CPU seconds of
the run's main process (``time.process_time``: all its threads, not the DataLoader worker process, on both
sides): on a machine shared with other jobs the wall clock of a run depends on what else ran at the time,
its CPU time much less, so ``samples per CPU s`` compares the work each loop does per sample. For ``ours``
it is ``train_state.train_cpu_seconds``, which the loop records over the same span. ``end-to-end s`` is
the whole subprocess (imports,
corpus and processor loading from the cache, training, and for ``ours`` also the data checks, the test
evaluation and saving, which the Trainer run does not do): informative, not comparable.

``--threads`` (default 1) sets ``OMP_NUM_THREADS`` for every run: on a 2-core machine shared with other
jobs, 2 OpenMP threads waiting on each other make step times jump by 5-10x at random.

Usage::

    python benchmarks/bench_overhead.py                          # small preset, 300 steps, 3 rounds
    python benchmarks/bench_overhead.py --preset tiny --max_steps 400 --repeats 5
    python benchmarks/bench_overhead.py --device cuda --dataloader_num_workers 8 --repeats 3   # on a GPU
    python benchmarks/bench_overhead.py --parallel --repeats 3    # a many-core machine: a round at once
    python benchmarks/bench_overhead.py --smoke                  # tiny, 80 clips, 5 steps: seconds
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
METHODS = ("trainer", "ours", "ours, no probe", "ours, per-tensor AdamW", "ours, torch.compile")


def trainer_worker(args: argparse.Namespace) -> None:
    """One Trainer run; prints ``RESULT {json}``."""
    sys.path.insert(0, str(REPO_ROOT))
    import torch
    from transformers import ClapConfig, ClapModel, Trainer, TrainerCallback, TrainingArguments, set_seed

    from modeling_supclap.data import AudioTextDataset, SupClapCollator, load_records
    from modeling_supclap.demo import build_demo_corpus, build_demo_processor
    from modeling_supclap.model.configuration_supclap import PRESETS
    from modeling_supclap.training import DataArguments, TrainArguments

    defaults, data_defaults = TrainArguments(), DataArguments()
    corpus = Path(args.cache_dir) / f"demo_corpus_{args.demo_num_clips}"
    build_demo_corpus(corpus, num_clips=args.demo_num_clips)
    set_seed(args.seed)
    model = ClapModel(ClapConfig(**PRESETS[args.preset]()))
    processor = build_demo_processor(
        corpus, model.config.audio_config, cache_dir=Path(args.cache_dir) / "processors"
    )
    dataset = AudioTextDataset(
        load_records(str(corpus), split="train"), processor.feature_extractor.sampling_rate
    )
    collator = SupClapCollator(processor, max_text_length=data_defaults.max_text_length, seed=args.seed)

    class Timer(TrainerCallback):
        t0 = t_last = cpu0 = cpu_last = None

        def on_train_begin(self, targs, state, control, **kwargs):
            self.t0, self.cpu0 = time.monotonic(), time.process_time()

        def on_step_end(self, targs, state, control, **kwargs):
            self.t_last = time.monotonic() - self.t0
            self.cpu_last = time.process_time() - self.cpu0

    timer = Timer()
    targs = TrainingArguments(
        args.output_dir,
        per_device_train_batch_size=args.per_device_train_batch_size,
        max_steps=args.max_steps,
        learning_rate=defaults.learning_rate,
        weight_decay=defaults.weight_decay,
        adam_beta1=defaults.adam_beta1,
        adam_beta2=defaults.adam_beta2,
        adam_epsilon=defaults.adam_epsilon,
        lr_scheduler_type=defaults.lr_scheduler_type,
        warmup_steps=args.warmup_steps,
        max_grad_norm=defaults.max_grad_norm,
        logging_steps=defaults.logging_steps,
        eval_strategy="no",
        save_strategy="no",
        report_to="none",
        use_cpu=args.device == "cpu",
        seed=args.seed,
        dataloader_num_workers=args.dataloader_num_workers,
        dataloader_drop_last=True,
        remove_unused_columns=False,
    )
    trainer = Trainer(
        model=model, args=targs, train_dataset=dataset, data_collator=collator, callbacks=[timer]
    )
    out = trainer.train()
    result = {
        "train_seconds": timer.t_last,
        "train_cpu_seconds": timer.cpu_last,
        "steps": trainer.state.global_step,
        "train_runtime": out.metrics.get("train_runtime"),
        "optim": str(targs.optim),
        "loss": out.training_loss,
        "threads": torch.get_num_threads(),
    }
    print("RESULT " + json.dumps(result), flush=True)


def _env(args: argparse.Namespace) -> dict[str, str]:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    if args.threads > 0:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(args.threads)
    return env


def run_method(method: str, args: argparse.Namespace, workdir: Path, tag: str) -> dict[str, Any]:
    out_dir = workdir / f"{method.replace(', ', '_').replace(' ', '_')}_{tag}"
    common = ["--max_steps", str(args.max_steps), "--seed", str(args.seed), "--output_dir", str(out_dir)]
    common += [
        "--dataloader_num_workers",
        str(args.dataloader_num_workers),
        "--cache_dir",
        str(args.cache_dir),
    ]
    common += ["--demo_num_clips", str(args.demo_num_clips), "--warmup_steps", str(args.warmup_steps)]
    if method == "trainer":
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--preset", args.preset]
        cmd += ["--device", args.device]
        cmd += ["--per_device_train_batch_size", str(args.per_device_train_batch_size), *common]
    else:
        cmd = [sys.executable, str(REPO_ROOT / "train_supclap.py"), "--preset", args.preset]
        cmd += ["--per_device_train_batch_size", str(args.per_device_train_batch_size), *common]
        cmd += ["--base_loss", "infonce", "--svr_mode", "none", "--eval_steps", "0", "--save_steps", "0"]
        cmd += ["--report_to", "none"]
        if args.device == "cpu":
            cmd += ["--use_cpu"]
        if method == "ours, no probe":
            cmd += ["--drift_probe_steps", "0"]
        if method == "ours, per-tensor AdamW":
            cmd += ["--optim", "adamw_torch"]
        if method == "ours, torch.compile":
            cmd += ["--torch_compile"]
    env = _env(args)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=args.timeout)
    wall = time.perf_counter() - t0
    result: dict[str, Any] = {"method": method, "wall_s": wall, "cmd": cmd}
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout)[-800:].strip().replace("\n", " / ")
        result["error"] = f"exit {proc.returncode}: {tail}"
        return result
    if method == "trainer":
        for line in proc.stdout.splitlines():
            if line.startswith("RESULT "):
                result.update(json.loads(line[len("RESULT ") :]))
    else:
        state = json.loads((out_dir / "metrics.json").read_text())["train_state"]
        result.update(
            train_seconds=state["train_seconds"],
            train_cpu_seconds=state["train_cpu_seconds"],
            steps=state["step"],
        )
    if "train_seconds" not in result:
        result["error"] = "no timing in the output"
    return result


def render(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    by_method: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_method.setdefault(r["method"], []).append(r)
    rounds = sorted({r["round"] for r in results})

    def sps(r: dict[str, Any], key: str = "train_seconds") -> float:
        return r["steps"] * args.per_device_train_batch_size / r[key]

    def vs_trainer(runs: list[dict[str, Any]], key: str) -> str:
        ratios = [
            sps(r, key) / sps(ref[r["round"]], key)
            for r in runs
            if r["round"] in ref and r.get(key) and ref[r["round"]].get(key)
        ]
        return f"{statistics.median(ratios):.3f}x" if ratios else "n/a"

    ref = {r["round"]: r for r in by_method.get("trainer", []) if "error" not in r}
    head = (
        "| method | runs | samples/s (median) | min .. max | vs Trainer (median of per-round ratios) "
        "| train s (median) | train CPU s (median) | samples per CPU s | vs Trainer, CPU "
        "| end-to-end s (median) |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for method in METHODS:
        runs = [r for r in by_method.get(method, []) if "error" not in r]
        errors = [r for r in by_method.get(method, []) if "error" in r]
        if not runs:
            if errors:
                lines.append(f"| {method} | 0 | {errors[0]['error'][:80]} |" + " |" * 7)
            continue
        values = [sps(r) for r in runs]
        cpu_runs = [r for r in runs if r.get("train_cpu_seconds")]
        cpu = (
            f"{statistics.median(r['train_cpu_seconds'] for r in cpu_runs):.1f} "
            f"| {statistics.median(sps(r, 'train_cpu_seconds') for r in cpu_runs):.1f}"
            if cpu_runs
            else "- | -"
        )
        lines.append(
            f"| {method} | {len(runs)}/{len(rounds)} | {statistics.median(values):.1f} "
            f"| {min(values):.1f} .. {max(values):.1f} | {vs_trainer(runs, 'train_seconds')} "
            f"| {statistics.median(r['train_seconds'] for r in runs):.1f} | {cpu} "
            f"| {vs_trainer(runs, 'train_cpu_seconds')} "
            f"| {statistics.median(r['wall_s'] for r in runs):.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(REPO_ROOT))
    from modeling_supclap.training import DataArguments, TrainArguments

    train_defaults, data_defaults = TrainArguments(), DataArguments()  # defaults: train_supclap.py's
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="small", choices=["tiny", "small"])
    p.add_argument("--max_steps", type=int, default=300)
    p.add_argument(
        "--per_device_train_batch_size",
        "--batch_size",
        type=int,
        default=train_defaults.per_device_train_batch_size,
    )
    p.add_argument(
        "--dataloader_num_workers", "--num_workers", type=int, default=data_defaults.dataloader_num_workers
    )
    p.add_argument("--warmup_steps", type=int, default=train_defaults.warmup_steps)
    p.add_argument("--demo_num_clips", type=int, default=data_defaults.demo_num_clips)
    p.add_argument("--cache_dir", default=str(REPO_ROOT / ".cache" / "supclap"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3, help="rounds; each runs every method once")
    p.add_argument("--methods", nargs="+", default=None, choices=METHODS,
                   help="default: trainer, ours, 'ours, no probe' (from 100 steps)")  # fmt: skip
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where both loops train")
    p.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS per run; 0 inherits")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per run")
    p.add_argument("--workdir", default=None, help="where runs write (default: a temporary folder)")
    p.add_argument(
        "--smoke", action="store_true", help="tiny, 80 clips, batch 8, 5 steps, 1 round, in parallel: seconds"
    )
    p.add_argument(
        "--parallel",
        action="store_true",
        help="run the methods of a round side by side (CPU machines with >= methods x (1 + workers) cores)",
    )
    p.add_argument("--json", type=Path, default=None, help="also write the raw results here")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--output_dir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        trainer_worker(args)
        return 0
    parallel = args.parallel
    if args.smoke:
        args.preset, args.demo_num_clips, args.per_device_train_batch_size, args.max_steps = "tiny", 80, 8, 5
        args.warmup_steps, args.repeats, parallel = 1, 1, True
    methods = args.methods or [m for m in METHODS[:3] if m != "ours, no probe" or args.max_steps >= 100]

    load = os.getloadavg()
    print(f"# bench_overhead: {' '.join(sys.argv)}")
    print(
        f"# {platform.platform()}, {os.cpu_count()} CPUs, python {platform.python_version()}, preset "
        f"{args.preset}, batch {args.per_device_train_batch_size}, {args.max_steps} steps, "
        f"{args.dataloader_num_workers} worker(s), "
        f"OMP_NUM_THREADS={args.threads or 'inherited'}, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        flush=True,
    )
    # Build the corpus once, outside the timed runs (and not by two runs at once).
    corpus = Path(args.cache_dir) / f"demo_corpus_{args.demo_num_clips}"
    if not (corpus / "corpus_info.json").exists():
        sys.path.insert(0, str(REPO_ROOT))
        from modeling_supclap.demo import build_demo_corpus

        build_demo_corpus(corpus, num_clips=args.demo_num_clips)

    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench_overhead_") as tmp:
        workdir = Path(args.workdir) if args.workdir else Path(tmp)
        for r in range(args.repeats):
            order = methods[r % len(methods) :] + methods[: r % len(methods)]
            if parallel:  # every method of a round at once: fair only with a core (or more) per run
                with ThreadPoolExecutor(len(order)) as pool:
                    round_results = list(
                        pool.map(lambda m, r=r: run_method(m, args, workdir, f"r{r}"), order)
                    )
            else:
                round_results = [run_method(m, args, workdir, f"r{r}") for m in order]
            for res in round_results:
                res["round"] = r
                results.append(res)
                if "error" in res:
                    print(f"# round {r} {res['method']}: FAILED {res['error']}", flush=True)
                else:
                    sps = res["steps"] * args.per_device_train_batch_size / res["train_seconds"]
                    print(
                        f"# round {r} {res['method']}: {res['steps']} steps in {res['train_seconds']:.1f}s "
                        f"({sps:.1f} samples/s; CPU {res.get('train_cpu_seconds') or float('nan'):.1f}s), "
                        f"end-to-end {res['wall_s']:.1f}s",
                        flush=True,
                    )
    load = os.getloadavg()
    print(f"# load average now {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(render(results, args))
    if args.json:
        args.json.write_text(json.dumps({"argv": sys.argv, "results": results}, indent=1))
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
