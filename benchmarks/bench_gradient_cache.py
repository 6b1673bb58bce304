#!/usr/bin/env python
"""Cached negatives (``--gradient_cache_chunk_size``) vs a dense step: peak memory and time per sample.

One training step is ``model(**batch).loss.backward()`` of ``SupClapModel`` (bilateral DynamicSVR by
default, random token ids and log-mel features of noise shaped like each model's processor), in a fresh
subprocess per measurement:

* ``dense B``: the whole batch of B pairs in one forward/backward;
* ``cached B/k``: the same batch with ``gradient_cache_chunk_size = k`` (gradients equal a dense step
  whose towers see k pairs at a time; tests/model/test_gradient_cache.py);
* the reference of the memory goal is ``dense k``: a dense step on one chunk.

Peak memory: the process's RSS high-water mark during the measured steps minus its RSS before them
(Linux ``VmHWM`` after ``/proc/self/clear_refs``; one warm-up step first, so gradients exist). Every
allocation above 64 KiB is its own mmap (``MALLOC_MMAP_THRESHOLD_``) and ``malloc_trim`` runs after the
warm-up, so memory freed by the warm-up is not counted as the base of the measured steps.
Time: median over ``--repeats`` steps, per sample, in CPU seconds of the process (all its threads): on
a machine shared with other jobs the wall clock of a step depends on what else runs, its CPU time much
less (the wall clock is in the JSON too). Models: ``tiny`` and ``small`` (the presets) and
``htsat`` (the laion/clap-htsat-unfused architecture: 10 s at 48 kHz, 64 mel bins; random weights).

On a GPU (``--device cuda``) peak memory is ``torch.cuda.max_memory_allocated`` over the measured steps
minus what was allocated before them (weights, gradients, the batch), and time is the wall clock of a
step with the device synchronized (``step_s`` holds it, so the table's ratios read the same).

``--breakdown model:batch:chunk`` says where a cached step's time goes, in one process, the pieces
interleaved over ``--repeats`` rounds (CPU time, medians): the dense step; the cached step; step 1 alone
(every chunk embedded without a graph); step 3's work alone (every chunk embedded with its graph and
back-propagated, without the cache's bookkeeping); the step-2 loss on fixed embeddings. The cached
step's floor is (step 1 + step 3) / dense: the extra forward of micro-batching, whatever the code does.

Usage::

    python benchmarks/bench_gradient_cache.py                       # the documented table (CPU: long)
    python benchmarks/bench_gradient_cache.py --breakdown small:256:64 --repeats 5
    python benchmarks/bench_gradient_cache.py --cases tiny:256:64 small:1024:128 --repeats 2
    python benchmarks/bench_gradient_cache.py --smoke               # seconds
    python benchmarks/bench_gradient_cache.py --device cuda --threads 0 --cases htsat:4096:128 htsat:256:64 \
        --max_dense_htsat 256                                        # on a GPU
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_loss_cost import _proc_status_bytes, make_batch, model_config  # noqa: E402

# model:batch:chunk. Dense is measured at the batch too where it fits (--max_dense).
DEFAULT_CASES = [
    "tiny:256:64",
    "tiny:1024:128",
    "tiny:4096:256",
    "small:256:64",
    "small:1024:128",
    "small:4096:256",
    "htsat:256:16",
]
# Feature extraction of every clip of a 4,096 batch of 10 s clips would take minutes: 64 distinct clips,
# copied with noise (bench_loss_cost.make_batch), give the same step time and memory.
MAX_DISTINCT_CLIPS = 64


def worker(args: argparse.Namespace) -> None:
    """One measurement in this fresh process; prints ``RESULT {json}``."""
    import torch

    from modeling_supclap import SupClapModel

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    torch.manual_seed(0)
    config = model_config(args.model, args.variant, gradient_cache_chunk_size=args.chunk)
    model = SupClapModel(config).train().to(device)
    batch = make_batch(args.model, config, args.batch, args.text_len, device, MAX_DISTINCT_CLIPS)

    def step() -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        model(**batch).loss.backward()
        model.zero_grad(set_to_none=False)
        if on_gpu:
            torch.cuda.synchronize(device)
        return time.perf_counter() - wall, time.process_time() - cpu

    step()  # warm-up: gradients allocated
    gc.collect()
    if on_gpu:
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        base = _proc_status_bytes("VmRSS")
    times = [step() for _ in range(args.repeats)]
    peak = torch.cuda.max_memory_allocated(device) if on_gpu else _proc_status_bytes("VmHWM")
    result = {
        "model": args.model,
        "batch": args.batch,
        "chunk": args.chunk,
        "device": str(device),
        "peak_mib": (peak - base) / 2**20,
        # the GPU's step is its wall clock (the CPU only queues kernels); the CPU's is its CPU time
        "step_s": statistics.median(wall if on_gpu else cpu for wall, cpu in times),
        "step_wall_s": statistics.median(wall for wall, _ in times),
        "threads": torch.get_num_threads(),
    }
    print("RESULT " + json.dumps(result), flush=True)


def breakdown(case: str, args: argparse.Namespace) -> dict[str, float]:
    """CPU milliseconds of a cached step's pieces (see the module docstring), medians over rounds."""
    import torch
    import torch.nn.functional as F

    from modeling_supclap import SupClapModel
    from modeling_supclap.model.gradient_cache import loss_and_tower_parameters

    model_name, batch_size, chunk = case.split(":")
    batch_size, chunk = int(batch_size), int(chunk)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = model_config(model_name, args.variant)
    model = SupClapModel(config).train()
    batch = make_batch(model_name, config, batch_size, args.text_len, torch.device("cpu"), MAX_DISTINCT_CLIPS)
    rows = {k: v for k, v in batch.items() if k != "return_loss"}
    chunks = [slice(start, start + chunk) for start in range(0, batch_size, chunk)]
    _, tower_params = loss_and_tower_parameters(model)
    text0 = F.normalize(torch.randn(batch_size, config.projection_dim), dim=-1)
    audio0 = F.normalize(torch.randn(batch_size, config.projection_dim), dim=-1)

    def step(chunk_size: int) -> None:
        model.config.gradient_cache_chunk_size = chunk_size
        model(**batch).loss.backward()
        model.zero_grad(set_to_none=True)

    def step1() -> None:
        with torch.no_grad():
            for part in chunks:
                model._embed(**{k: v[part] for k, v in rows.items()})

    def step3() -> None:
        for part in chunks:
            text, audio = model._embed(**{k: v[part] for k, v in rows.items()})
            torch.autograd.backward(
                (text, audio), (torch.ones_like(text), torch.ones_like(audio)), inputs=tower_params
            )
        model.zero_grad(set_to_none=True)

    def loss() -> None:
        text, audio = text0.clone().requires_grad_(), audio0.clone().requires_grad_()
        scale_t, scale_a = model.logit_scales()
        torch.autograd.grad(model.loss_fn(text, audio, scale_t, scale_a)["loss"], (text, audio))

    pieces = {
        "dense step": lambda: step(0),
        "cached step": lambda: step(chunk),
        "step 1 (no-graph chunks)": step1,
        "step 3 work (graph chunks + backward)": step3,
        "step 2 loss": loss,
    }
    times: dict[str, list[float]] = {name: [] for name in pieces}
    for fn in pieces.values():  # warm-up
        fn()
    for _ in range(args.repeats):
        for name, fn in pieces.items():
            start = time.process_time()
            fn()
            times[name].append(1000 * (time.process_time() - start))
    result = {name: statistics.median(values) for name, values in times.items()}
    result["floor vs dense"] = (
        result["step 1 (no-graph chunks)"] + result["step 3 work (graph chunks + backward)"]
    ) / result["dense step"]
    result["cached vs dense"] = result["cached step"] / result["dense step"]
    return result


def measure(model: str, batch: int, chunk: int, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--model", model]
    cmd += ["--batch", str(batch), "--chunk", str(chunk), "--repeats", str(args.repeats)]
    cmd += ["--threads", str(args.threads), "--variant", args.variant, "--text_len", str(args.text_len)]
    cmd += ["--device", args.device]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}  # freed blocks leave RSS (see the docstring)
    if args.threads > 0:
        env["OMP_NUM_THREADS"] = str(args.threads)
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=args.timeout
        )
    except subprocess.TimeoutExpired:
        return {"model": model, "batch": batch, "chunk": chunk, "error": f"timeout after {args.timeout} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    tail = (proc.stderr or proc.stdout)[-300:].replace("\n", " / ")
    return {"model": model, "batch": batch, "chunk": chunk, "error": f"exit {proc.returncode}: {tail}"}


def render(rows: list[dict[str, Any]], device: str = "cpu") -> str:
    clock = "CPU" if device == "cpu" else "GPU wall"
    head = (
        "| model | batch | chunk | cached: peak MiB | dense one chunk: peak MiB | ratio (goal <= 1.25) "
        f"| dense batch: peak MiB | cached {clock} ms/sample | dense {clock} ms/sample "
        "| time ratio (goal <= 1.35) |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for row in rows:
        cached, one_chunk, dense = row["cached"], row["dense_chunk"], row.get("dense")

        def mib(r: dict[str, Any] | None) -> str:
            return "-" if not r else r["error"][:40] if "error" in r else f"{r['peak_mib']:.0f}"

        def per_sample(r: dict[str, Any] | None) -> str:
            return "-" if not r or "error" in r else f"{1000 * r['step_s'] / r['batch']:.2f}"

        ratio = (
            f"{cached['peak_mib'] / one_chunk['peak_mib']:.2f}x"
            if "error" not in cached and "error" not in one_chunk
            else "-"
        )
        time_ratio = (
            f"{cached['step_s'] / dense['step_s']:.2f}x"
            if dense and "error" not in dense and "error" not in cached
            else "-"
        )
        lines.append(
            f"| {row['model']} | {row['batch']} | {row['chunk']} | {mib(cached)} | {mib(one_chunk)} "
            f"| {ratio} | {mib(dense)} | {per_sample(cached)} | {per_sample(dense)} | {time_ratio} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="+", default=DEFAULT_CASES, help="model:batch:chunk")
    p.add_argument("--max_dense", type=int, default=1024, help="largest batch measured dense as well")
    p.add_argument("--max_dense_htsat", type=int, default=32, help="the same for the htsat architecture")
    p.add_argument("--repeats", type=int, default=3, help="measured steps per case (median)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run; 0 inherits")
    p.add_argument("--variant", default="infonce+dynamic-bi", help="a name of benchmarks/loss_variants.py")
    p.add_argument("--text_len", type=int, default=32)
    p.add_argument("--timeout", type=float, default=3600, help="seconds per measurement")
    p.add_argument("--device", default="cpu", help="cpu or cuda (GPU memory and wall-clock time)")
    p.add_argument("--json", type=Path, default=None, help="also write the raw results here")
    p.add_argument("--smoke", action="store_true", help="tiny, batch 16, chunk 4, 1 repeat: seconds")
    p.add_argument("--breakdown", default=None, help="model:batch:chunk: where a cached step's time goes")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    p.add_argument("--chunk", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    if args.smoke:
        args.cases, args.repeats = ["tiny:16:4"], 1
    print(f"# bench_gradient_cache: {' '.join(sys.argv)}")
    if args.breakdown:
        result = breakdown(args.breakdown, args)
        print("| piece | CPU ms |\n|---|---|")
        print(
            "\n".join(f"| {name} | {value:.{2 if 'vs' in name else 0}f} |" for name, value in result.items())
        )
        if args.json:
            args.json.write_text(json.dumps({"argv": sys.argv, "breakdown": result}, indent=1))
        return 0
    load = os.getloadavg()
    print(
        f"# {platform.platform()}, {os.cpu_count()} CPUs, device {args.device}, threads {args.threads}, "
        f"variant {args.variant}, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        flush=True,
    )
    rows = []
    for case in args.cases:
        model, batch, chunk = case.split(":")
        batch, chunk = int(batch), int(chunk)
        row = {"model": model, "batch": batch, "chunk": chunk}
        row["cached"] = measure(model, batch, chunk, args)
        row["dense_chunk"] = measure(model, chunk, 0, args)
        if batch <= (args.max_dense_htsat if model == "htsat" else args.max_dense):
            row["dense"] = measure(model, batch, 0, args)
        rows.append(row)
        print(f"# {case}: {json.dumps({k: v for k, v in row.items() if isinstance(v, dict)})}", flush=True)
    print(render(rows, args.device))
    if args.json:
        args.json.write_text(json.dumps({"argv": sys.argv, "rows": rows}, indent=1))
    return 1 if any("error" in r.get(k, {}) for r in rows for k in ("cached", "dense_chunk", "dense")) else 0


if __name__ == "__main__":
    sys.exit(main())
