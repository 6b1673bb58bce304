#!/usr/bin/env python
"""Map-style vs streaming training data: time to the first optimizer step, and samples per second.

For each corpus size N (default 1k, 10k, 100k clips of 0.25 s at 16 kHz, short captions), the same
clips as an audiofolder (map-style: listed and decoded up front by the data checks) and as tar shards
of 1,000 (``supclap-shard``; ``--streaming``). Each run is the real command
line, ``train_supclap.py``, in a subprocess, on a tiny model (a checkpoint folder with the demo
processor, so the data path dominates):

* **first step**: seconds from starting the process to the end of the first optimizer step (a
  ``TrainStep`` subclass prints the time; imports, loading, checks and worker start-up included);
* **samples/s**: ``--max_steps`` steps x batch / ``train_state.train_seconds`` (the loop's own span,
  from the first batch to the last step), on the largest corpus, the two kinds alternating.

Goals: streaming's first step flat in N; its samples/s at least 0.95x map-style's.

Usage::

    python benchmarks/bench_streaming.py                       # 1k, 10k, 100k; corpora cached
    python benchmarks/bench_streaming.py --sizes 1000 10000 --throughput_steps 100
    python benchmarks/bench_streaming.py --smoke               # 200 clips, seconds
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
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

DRIVER = """
import sys, time
from modeling_supclap.cli.train import main
from modeling_supclap.training import TrainStep


class FirstStepClock(TrainStep):
    first = True

    def __call__(self, micro_batches, position):
        result = super().__call__(micro_batches, position)
        if FirstStepClock.first:
            FirstStepClock.first = False
            print(f"FIRST_STEP {time.time()}", flush=True)
        return result


main(sys.argv[1:], step_class=FirstStepClock)
"""


def build_corpora(size: int, root: Path) -> tuple[Path, Path]:
    """(audiofolder, shard folder) of ``size`` synthetic clips, built once and cached under ``root``."""
    import numpy as np
    import soundfile as sf

    from modeling_supclap.data import load_records
    from modeling_supclap.data.sources.shards import read_manifest, write_shards

    folder, shards = root / f"folder_{size}", root / f"shards_{size}"
    if not (folder / "train" / "metadata.jsonl").exists():
        tmp = root / f".folder_{size}.tmp"
        (tmp / "train").mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(size)
        with open(tmp / "train" / "metadata.jsonl", "w") as meta:
            for i in range(size):
                freq = 200 + 50 * (i % 30)
                tone = np.sin(2 * np.pi * freq * np.arange(4000) / 16000)
                audio = (0.3 * tone + 0.01 * rng.standard_normal(4000)).astype("float32")
                name = f"clip_{i:06d}.wav"
                sf.write(tmp / "train" / name, audio, 16000, subtype="PCM_16")
                row = {"file_name": name, "captions": [f"a tone of {freq} hertz"], "label": f"tone {i % 30}"}
                meta.write(json.dumps(row) + "\n")
        os.replace(tmp, folder)
    if read_manifest(shards) is None:
        write_shards(load_records(str(folder), split="train"), shards, shard_size=1000)
    return folder, shards


def tiny_model(root: Path, corpus: Path) -> Path:
    import torch

    from modeling_supclap import SupClapConfig, SupClapModel
    from modeling_supclap.demo import build_demo_processor

    folder = root / "tiny_model"
    if not (folder / "model.safetensors").exists():
        config = SupClapConfig.tiny()
        torch.manual_seed(0)
        SupClapModel(config).save_pretrained(folder)
        # The demo processor fits 2 s clips; the 0.25 s clips are repeat-padded to it, as any short clip.
        from modeling_supclap.demo import build_demo_corpus

        demo = build_demo_corpus(root / "demo_corpus_80", num_clips=80)
        build_demo_processor(demo, config.audio_config, cache_dir=root / "processors").save_pretrained(folder)
    return folder


def run(
    kind: str, data: Path, model: Path, steps: int, args: argparse.Namespace, out: Path
) -> dict[str, Any]:
    cmd = [sys.executable, "-c", DRIVER, "--model_name_or_path", str(model), "--train_data", str(data)]
    cmd += [
        "--output_dir",
        str(out),
        "--max_steps",
        str(steps),
        "--per_device_train_batch_size",
        str(args.batch),
    ]
    cmd += ["--warmup_steps", "1", "--eval_steps", "0", "--save_steps", "0", "--logging_steps", "10"]
    cmd += ["--report_to", "none", "--use_cpu", "--drift_probe_steps", "0"]
    cmd += ["--dataloader_num_workers", str(args.workers)]
    if kind == "streaming":
        cmd += ["--streaming"]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    start = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=args.timeout)
    result: dict[str, Any] = {"kind": kind, "data": str(data), "steps": steps, "wall_s": time.time() - start}
    if proc.returncode != 0:
        result["error"] = f"exit {proc.returncode}: {proc.stderr[-400:]}"
        return result
    first = [float(line.split()[1]) for line in proc.stdout.splitlines() if line.startswith("FIRST_STEP ")]
    result["first_step_s"] = first[0] - start
    state = json.loads((out / "metrics.json").read_text())["train_state"]
    result["samples_per_s"] = state["step"] * args.batch / state["train_seconds"]
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of every run")
    p.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of every run")
    p.add_argument("--first_step_runs", type=int, default=2, help="runs per size and kind (median)")
    p.add_argument("--throughput_steps", type=int, default=200, help="steps of each throughput run")
    p.add_argument("--throughput_runs", type=int, default=3, help="alternating runs per kind")
    p.add_argument("--cache_dir", type=Path, default=REPO_ROOT / ".cache" / "bench_streaming")
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--smoke", action="store_true", help="200 clips, 1 run each, 5 throughput steps")
    args = p.parse_args(argv)
    if args.smoke:
        args.sizes, args.first_step_runs, args.throughput_steps, args.throughput_runs = [200], 1, 5, 1
        args.batch = 8
    load = os.getloadavg()
    print(f"# bench_streaming: {' '.join(sys.argv)}")
    print(
        f"# {platform.platform()}, {os.cpu_count()} CPUs, batch {args.batch}, {args.workers} workers, "
        f"OMP_NUM_THREADS={args.threads}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        flush=True,
    )
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    corpora = {size: build_corpora(size, args.cache_dir) for size in args.sizes}
    model = tiny_model(args.cache_dir, corpora[args.sizes[0]][0])
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench_streaming_") as tmp:
        for size in args.sizes:
            for repeat in range(args.first_step_runs):
                for kind, data in zip(("map-style", "streaming"), corpora[size]):
                    r = run(kind, data, model, 1, args, Path(tmp) / f"{kind}_{size}_{repeat}")
                    r.update(size=size, measure="first_step")
                    results.append(r)
                    print(f"# {size} {kind}: {r.get('first_step_s', r.get('error'))}", flush=True)
        largest = max(args.sizes)
        for repeat in range(args.throughput_runs):
            for kind, data in zip(("map-style", "streaming"), corpora[largest]):
                r = run(kind, data, model, args.throughput_steps, args, Path(tmp) / f"tp_{kind}_{repeat}")
                r.update(size=largest, measure="throughput")
                results.append(r)
                print(f"# throughput {kind}: {r.get('samples_per_s', r.get('error'))}", flush=True)

    def median(kind: str, size: int, key: str, measure: str) -> float | None:
        values = [r[key] for r in results if r["kind"] == kind and r["size"] == size and key in r
                  and r["measure"] == measure]  # fmt: skip
        return statistics.median(values) if values else None

    lines = ["| clips | map-style: first step (s) | streaming: first step (s) |", "|---|---|---|"]
    for size in args.sizes:
        m, s = (
            median("map-style", size, "first_step_s", "first_step"),
            median("streaming", size, "first_step_s", "first_step"),
        )
        lines.append(f"| {size:,} | {m and f'{m:.1f}'} | {s and f'{s:.1f}'} |")
    m = median("map-style", max(args.sizes), "samples_per_s", "throughput")
    s = median("streaming", max(args.sizes), "samples_per_s", "throughput")
    ratio = f"{s / m:.3f}x" if m and s else "-"
    lines += [
        "",
        "| samples/s (median) | map-style | streaming | streaming / map-style |",
        "|---|---|---|---|",
    ]
    lines.append(f"| {max(args.sizes):,} clips | {m and f'{m:.1f}'} | {s and f'{s:.1f}'} | {ratio} |")
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps({"argv": sys.argv, "results": results}, indent=1))
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
