#!/usr/bin/env python
"""Training-step time and peak memory of each SupCLAP loss variant relative to plain InfoNCE.

One step = ``SupClapModel.forward`` (both towers + the loss) + ``backward`` + ``AdamW.step`` +
``zero_grad(set_to_none=True)``, on one fixed batch. Variants (10, plus an A/A control):
``infonce``, ``siglip`` and, on each base loss, ``{static,dynamic}-{uni,bi}`` SVR; ``infonce (A/A)`` is
InfoNCE timed in its own slot, so its ratio shows the noise floor of the measurement.

Models:

* ``tiny``: ``SupClapConfig.tiny()`` (~70k parameters), batch 32, ``input_features`` (32, 1, 201, 16) as
  the demo processor gives (2 s at 16 kHz, hop 160, 16 mel bins).
* ``htsat``: laion/clap-htsat-unfused's architecture at random init: ``SupClapConfig()`` with the default
  ``ClapConfig`` sub-configs (HTSAT-tiny audio tower with ``spec_size=256``, 64 mel bins,
  ``enable_fusion=False``; RoBERTa-base text tower; projection 512), batch 8, ``input_features``
  (8, 1, 1001, 64) from a ``ClapFeatureExtractor`` configured as that checkpoint's (48 kHz, hop 480,
  fft 1024, 50-14000 Hz, 10 s, ``rand_trunc``) on 10 s of noise; the tower accepts up to
  ``spec_size * spec_size // num_mel_bins = 1024`` frames.

Captions: ``--text_len`` random token ids (no padding). Everything is seeded.

Time: ONE model, ONE AdamW optimizer and ONE batch per model are shared by all variants; only
``model.loss_fn`` is swapped (the towers, their gradients and the optimizer update are identical work, the
optimizer also holds every variant's loss parameters). After ``--warmup`` untimed rounds, each of
``--repeats`` rounds times one step of every variant, in an order rotated every round (round-robin,
interleaved, so load from other processes hits all variants alike). Reported: median step time, and the
ratio to InfoNCE as the median over rounds of the per-round ratio (paired; robust to load drifting between
rounds), with its interquartile range; on CPU the same for the step's CPU time (``time.process_time``, which
does not count time the process spent descheduled by other jobs' load). ``loss ms`` is the loss alone
(``SupClapLoss`` forward + backward on fixed embeddings), median of the same rounds.

Memory, on CPU (no allocator statistics there), two measures:

* ``tensor peak`` (default, exact and deterministic): one step of each variant (after the timed rounds, so
  the optimizer state exists) under ``torch.profiler`` with ``profile_memory=True``; the allocator's
  allocation/free events of that step, summed in time order, give the peak of the tensor bytes allocated
  by the step above what was live before it (activations, gradients, temporaries). ``total`` adds what is
  live between steps: parameters, AdamW state and the batch. This is the CPU analogue of CUDA's
  ``max_memory_allocated``; it excludes the Python heap and allocator caching.
* ``RSS`` (``--memory both|rss``, Linux): each variant in a FRESH subprocess (model built with that
  variant's config); after one warm-up step the kernel's RSS high-water mark is reset, and the table
  reports ``VmHWM`` after ``--rss_steps`` more steps minus ``VmRSS`` before them: the process-level peak
  a training step adds (includes the allocator's behaviour, so it is coarser than the tensor peak).

On CUDA (``--device cuda``; run on an H100, see docs/BENCHMARKS.md): time with
``torch.cuda.synchronize``; memory is ``torch.cuda.max_memory_allocated`` over one step after
``reset_peak_memory_stats`` (``total``) and that minus ``memory_allocated`` before the step
(``step peak``).

``--threads`` (default 1 on CPU) fixes torch's intra-op threads: on a 2-core machine shared with other
jobs, 2 OpenMP threads that wait on each other make step times jump by 5-10x at random.

Usage::

    python benchmarks/bench_loss_cost.py                       # tiny (batch 32) and htsat (batch 8)
    python benchmarks/bench_loss_cost.py --models tiny --repeats 50
    python benchmarks/bench_loss_cost.py --device cuda --threads 0
    python benchmarks/bench_loss_cost.py --device cuda --threads 0 --models htsat --batch_htsat 64 \
        --variants infonce infonce+dynamic-bi siglip siglip+dynamic-bi --compile_loss   # fused SVR
    python benchmarks/bench_loss_cost.py --smoke               # tiny only, 2 repeats, seconds
"""

from __future__ import annotations

import argparse
import contextlib
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
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from loss_variants import VARIANTS  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

CONTROL = "infonce (A/A)"
COMPILED = " (compiled)"  # suffix of a variant run with SupClapConfig.compile_loss (--compile_loss)
MODELS = {"tiny": {"batch": 32, "repeats": 30}, "htsat": {"batch": 8, "repeats": 7}}
HTSAT_EXTRACTOR = dict(
    feature_size=64, sampling_rate=48000, hop_length=480, max_length_s=10, fft_window_size=1024,
    frequency_min=50, frequency_max=14000, truncation="rand_trunc", padding="repeatpad",
)  # fmt: skip
TINY_EXTRACTOR = dict(
    feature_size=16, sampling_rate=16000, hop_length=160, max_length_s=2, fft_window_size=512,
    frequency_min=0, frequency_max=8000, truncation="rand_trunc", padding="repeatpad",
)  # fmt: skip
# The demo's processor for the small preset (32 mel bins, 16 kHz, 2 s clips in its 128 frames).
SMALL_EXTRACTOR = {**TINY_EXTRACTOR, "feature_size": 32, "hop_length": 252}
EXTRACTORS = {"tiny": TINY_EXTRACTOR, "small": SMALL_EXTRACTOR, "htsat": HTSAT_EXTRACTOR}


def model_config(model: str, variant: str = "infonce", **overrides):
    from modeling_supclap import SupClapConfig

    compile_loss = variant.endswith(COMPILED)
    base_loss, svr_mode, bilateral = VARIANTS[variant.removesuffix(COMPILED)]
    kwargs = dict(base_loss=base_loss, svr_mode=svr_mode, svr_bilateral=bilateral, **overrides)
    kwargs["compile_loss"] = compile_loss
    if model in ("tiny", "small"):
        return SupClapConfig.from_preset(model, **kwargs)
    config = SupClapConfig(**kwargs)  # default ClapConfig sub-configs: laion/clap-htsat-unfused's shapes
    assert not config.audio_config.enable_fusion
    return config


def make_batch(
    model: str, config, batch: int, text_len: int, device, max_distinct_clips: int | None = None
) -> dict[str, Any]:
    """Token ids + log-mel features of noise from the extractor the model's checkpoint would use.

    ``max_distinct_clips``: extract at most that many clips and fill the batch with copies of their
    features plus small noise (rows still differ), since extracting thousands of 10 s clips takes minutes
    of CPU and changes neither the step's time nor its memory.
    """
    import numpy as np
    import torch
    from transformers import ClapFeatureExtractor

    from modeling_supclap.data import max_audio_frames

    fe = ClapFeatureExtractor(**EXTRACTORS[model])
    rng = np.random.default_rng(0)
    distinct = batch if max_distinct_clips is None else min(batch, max_distinct_clips)
    audios = [(0.1 * rng.standard_normal(fe.nb_max_samples)).astype(np.float32) for _ in range(distinct)]
    np.random.seed(0)
    features = fe(audios, sampling_rate=fe.sampling_rate, return_tensors="pt")
    input_features = features["input_features"].float()
    is_longer = features["is_longer"].bool()
    if distinct < batch:
        copies = torch.arange(batch) % distinct
        jitter = torch.randn((batch, *input_features.shape[1:]), generator=torch.Generator().manual_seed(1))
        input_features, is_longer = input_features[copies] + 0.01 * jitter, is_longer[copies]
    num_frames = input_features.shape[2]
    assert input_features.shape[1:] == (1, num_frames, config.audio_config.num_mel_bins), input_features.shape
    assert num_frames <= max_audio_frames(config.audio_config), (num_frames, config.audio_config)
    g = torch.Generator().manual_seed(0)
    input_ids = torch.randint(5, config.text_config.vocab_size, (batch, text_len), generator=g)
    input_ids[:, 0], input_ids[:, -1] = config.text_config.bos_token_id, config.text_config.eos_token_id
    out = {
        "input_ids": input_ids,
        "attention_mask": torch.ones(batch, text_len, dtype=torch.long),
        "input_features": input_features,
        "is_longer": is_longer,
    }
    out = {k: v.to(device) for k, v in out.items()}
    out["return_loss"] = True
    return out


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


@contextlib.contextmanager
def _quiet_stderr():
    """Silence file descriptor 2 (Kineto prints two log lines per profiling session there)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _profiled_step_peak(step, device) -> int:
    """Peak tensor bytes allocated by ``step()`` above the live set at its start (profiler events)."""
    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = [
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]" and e.device_type().name == "CPU"
    ]
    events.sort()
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


def bench_model(model_name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Time all variants round-robin on one shared model/optimizer/batch; tensor-level peak memory."""
    import torch
    import torch.nn.functional as F

    from modeling_supclap import SupClapModel
    from modeling_supclap.model.losses import SupClapLoss

    device = torch.device(args.device)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    config = model_config(model_name)
    model = SupClapModel(config).to(device).train()
    build_s = time.perf_counter() - t0
    batch_size = args.batch[model_name]
    batch = make_batch(model_name, config, batch_size, args.text_len, device)
    variants = list(args.variants)
    if args.compile_loss:
        variants += [name + COMPILED for name in args.variants]
    names = [*variants, CONTROL] if "infonce" in variants else variants
    losses = {}
    for name in variants:
        losses[name] = SupClapLoss.from_config(model_config(model_name, name)).to(device)
    losses[CONTROL] = losses.get("infonce")
    tower_params = [p for n, p in model.named_parameters() if not n.startswith("loss_fn.")]
    loss_params = [p for name in variants for p in losses[name].parameters()]
    optimizer = torch.optim.AdamW(tower_params + loss_params, lr=1e-5, weight_decay=0.01)
    num_params = sum(p.numel() for p in tower_params)

    def step(name: str) -> None:
        model.loss_fn = losses[name]
        out = model(**batch)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    # The loss alone, on fixed embeddings of this model's projection size.
    g = torch.Generator().manual_seed(1)
    dim = config.projection_dim
    text0 = F.normalize(torch.randn(batch_size, dim, generator=g), dim=-1).to(device)
    audio0 = F.normalize(torch.randn(batch_size, dim, generator=g), dim=-1).to(device)
    scale = torch.tensor(1 / 0.07, device=device)

    def loss_only(name: str) -> None:
        text, audio = text0.clone().requires_grad_(), audio0.clone().requires_grad_()
        losses[name](text, audio, scale, scale)["loss"].backward()
        for p in losses[name].parameters():
            p.grad = None

    def timed(fn, name: str) -> float:
        _sync(device)
        start, cpu_start = time.perf_counter(), time.process_time()
        fn(name)
        _sync(device)
        cpu_times[name].append(time.process_time() - cpu_start)
        return time.perf_counter() - start

    times: dict[str, list[float]] = {n: [] for n in names}
    loss_times: dict[str, list[float]] = {n: [] for n in names}
    cpu_times: dict[str, list[float]] = {n: [] for n in names}  # step, loss, step, loss, ...
    t0 = time.perf_counter()
    for _ in range(args.warmup):
        for name in names:
            step(name)
            loss_only(name)
    warmup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for r in range(args.repeats[model_name]):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            times[name].append(timed(step, name))
            loss_times[name].append(timed(loss_only, name))
    timed_s = time.perf_counter() - t0

    state_bytes = _tensor_bytes(p for p in model.parameters()) + _tensor_bytes(loss_params)
    state_bytes += _tensor_bytes(
        v for s in optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor)
    )
    state_bytes += _tensor_bytes(v for v in batch.values() if isinstance(v, torch.Tensor))
    memory: dict[str, dict[str, int]] = {}
    if args.memory in ("profiler", "both") or device.type == "cuda":
        for name in variants:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                before = torch.cuda.memory_allocated(device)
                torch.cuda.reset_peak_memory_stats(device)
                step(name)
                torch.cuda.synchronize(device)
                total = torch.cuda.max_memory_allocated(device)
                memory[name] = {"step_peak": total - before, "total": total}
            else:
                peak = _profiled_step_peak(lambda name=name: step(name), device)
                memory[name] = {"step_peak": peak, "total": state_bytes + peak}
    return {
        "model": model_name,
        "batch": batch_size,
        "input_features": list(batch["input_features"].shape),
        "text_len": args.text_len,
        "num_params": num_params,
        "build_s": build_s,
        "warmup_s": warmup_s,
        "timed_s": timed_s,
        "times": times,
        "cpu_times": {n: v[::2] for n, v in cpu_times.items()},
        "loss_times": loss_times,
        "state_bytes": state_bytes,
        "memory": memory,
        "threads": torch.get_num_threads(),
        "device": str(device),
    }


def _proc_status_bytes(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024  # kB
    raise KeyError(key)


def rss_worker(args: argparse.Namespace) -> None:
    """Fresh process: one variant's model; peak RSS of ``--rss_steps`` steps above the RSS before them.

    Linux: after one warm-up step (AdamW state allocated) the kernel's RSS high-water mark is reset
    (``/proc/self/clear_refs`` <- 5) and ``VmHWM`` is read after the measured steps. (``ru_maxrss`` would
    not do: a child inherits its parent's high-water mark across fork+exec.)
    """
    import gc

    import torch

    from modeling_supclap import SupClapModel

    torch.manual_seed(0)
    config = model_config(args.model, args.worker_variant)
    model = SupClapModel(config).train()
    batch = make_batch(args.model, config, args.batch[args.model], args.text_len, torch.device("cpu"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.01)

    def step() -> None:
        out = model(**batch)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = _proc_status_bytes("VmRSS")
    for _ in range(args.rss_steps):
        step()
    result = {"variant": args.worker_variant, "base_rss": base, "peak_rss": _proc_status_bytes("VmHWM")}
    print("RESULT " + json.dumps(result), flush=True)


def run_rss(model_name: str, args: argparse.Namespace) -> dict[str, dict[str, int]]:
    out = {}
    for name in args.variants:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker_variant", name, "--model", model_name]
        cmd += ["--threads", str(args.threads), "--text_len", str(args.text_len)]
        cmd += ["--rss_steps", str(args.rss_steps), "--batch_" + model_name, str(args.batch[model_name])]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, timeout=args.timeout)
        for line in proc.stdout.splitlines():
            if line.startswith("RESULT "):
                out[name] = json.loads(line[len("RESULT ") :])
                break
        else:
            tail = (proc.stderr or proc.stdout)[-500:].strip().replace("\n", " / ")
            out[name] = {"error": f"exit {proc.returncode}: {tail}"}
        print(f"# {model_name} RSS {name}: {out[name]}", flush=True)
    return out


def _q(values: list[float], q: float) -> float:
    values = sorted(values)
    pos = q * (len(values) - 1)
    lo, hi = int(pos), min(int(pos) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


def _pct(ratio: float) -> str:
    return f"{100 * (ratio - 1):+.1f} %"


def _mib(nbytes: float) -> str:
    return f"{nbytes / 2**20:,.1f}"


def render(result: dict[str, Any], rss: dict[str, Any] | None) -> str:
    times, loss_times, memory = result["times"], result["loss_times"], result["memory"]
    cpu_times = result.get("cpu_times") if result["device"] == "cpu" else None

    def paired(values: list[float] | None, ref: list[float] | None) -> str:
        if ref is None or values is None:
            return "n/a"
        ratios = [a / b for a, b in zip(values, ref)]
        return f"{_pct(statistics.median(ratios))} ({_pct(_q(ratios, 0.25))} .. {_pct(_q(ratios, 0.75))})"

    compiled_ref = times.get("infonce" + COMPILED)
    head = (
        "| variant | median step (ms) | step time vs InfoNCE (IQR) | step CPU time vs InfoNCE (IQR) "
        + ("| step time vs compiled InfoNCE (IQR) " if compiled_ref else "")
        + "| loss fwd+bwd (ms) "
        "| tensor peak of step (MiB) | total tensor memory (MiB) | total vs InfoNCE | RSS increase (MiB) "
        "| RSS increase vs InfoNCE |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, t in times.items():
        med = 1000 * statistics.median(t)
        ratio = paired(t, times.get("infonce"))
        if cpu_times:
            ratio += " | " + paired(cpu_times[name], cpu_times.get("infonce"))
        else:
            ratio += " | n/a"
        if compiled_ref:
            ratio += " | " + (paired(t, compiled_ref) if name.endswith(COMPILED) else "-")
        loss_ms = f"{1000 * statistics.median(loss_times[name]):.2f}"
        mem = memory.get(name)
        if mem:
            ref_mem = memory.get("infonce")
            mem_cells = f"{_mib(mem['step_peak'])} | {_mib(mem['total'])} | " + (
                _pct(mem["total"] / ref_mem["total"]) if ref_mem else "n/a"
            )
        else:
            mem_cells = "- | - | -"
        r = (rss or {}).get(name)
        if r and "peak_rss" in r:
            delta = r["peak_rss"] - r["base_rss"]
            ref_r = (rss or {}).get("infonce")
            rss_ratio = (
                _pct(delta / max(ref_r["peak_rss"] - ref_r["base_rss"], 1))
                if ref_r and "peak_rss" in ref_r
                else "n/a"
            )
            rss_cells = f"{_mib(delta)} | {rss_ratio}"
        else:
            rss_cells = "- | -" if not r else f"{r.get('error', '-')[:60]} | -"
        lines.append(f"| {name} | {med:.1f} | {ratio} | {loss_ms} | {mem_cells} | {rss_cells} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--batch_tiny", "--batch-tiny", type=int, default=MODELS["tiny"]["batch"])
    p.add_argument("--batch_htsat", "--batch-htsat", type=int, default=MODELS["htsat"]["batch"])
    p.add_argument("--repeats", type=int, default=None, help="timed rounds (default: tiny 30, htsat 7)")
    p.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    p.add_argument("--text_len", "--text-len", type=int, default=32, help="tokens per caption")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads; 0 leaves torch's default")
    p.add_argument(
        "--compile_loss",
        action="store_true",
        help="also time every variant with SupClapConfig.compile_loss (rows '<variant> (compiled)'; the "
        "warm-up rounds pay the compilation)",
    )
    p.add_argument("--memory", choices=["profiler", "rss", "both", "none"], default="both")
    p.add_argument(
        "--rss_steps", "--rss-steps", type=int, default=2, help="measured steps per RSS subprocess (after 1)"
    )
    p.add_argument("--timeout", type=float, default=1800, help="seconds per RSS subprocess")
    p.add_argument("--smoke", action="store_true", help="tiny only, 2 repeats, 1 warm-up, no RSS: seconds")
    p.add_argument("--json", type=Path, default=None, help="also write the raw results here")
    p.add_argument("--worker_variant", "--worker-variant", choices=list(VARIANTS), help=argparse.SUPPRESS)
    p.add_argument("--model", choices=list(MODELS), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.batch = {"tiny": args.batch_tiny, "htsat": args.batch_htsat}

    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.worker_variant:
        rss_worker(args)
        return 0
    if args.smoke:
        args.models, args.warmup, args.repeats = ["tiny"], 1, 2
        args.memory = "profiler" if args.memory in ("both", "profiler") else args.memory
    args.repeats = {m: args.repeats or MODELS[m]["repeats"] for m in MODELS}
    if args.device.startswith("cuda") and args.memory in ("rss", "both"):
        args.memory = "profiler"  # on CUDA memory comes from torch.cuda's allocator statistics

    load = os.getloadavg()
    print(f"# bench_loss_cost: {' '.join(sys.argv)}")
    print(
        f"# {platform.platform()}, {os.cpu_count()} CPUs, python {platform.python_version()}, torch "
        f"{torch.__version__}, device {args.device}, torch threads {torch.get_num_threads()}, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        flush=True,
    )
    all_results = []
    for model_name in args.models:
        result = bench_model(model_name, args)
        print(
            f"# {model_name}: {result['num_params'] / 1e6:.2f}M tower parameters, batch {result['batch']}, "
            f"input_features {tuple(result['input_features'])}, {args.text_len} tokens/caption; "
            f"{args.repeats[model_name]} rounds of {len(result['times'])} steps in {result['timed_s']:.1f}s "
            f"(build {result['build_s']:.1f}s, warm-up {result['warmup_s']:.1f}s), "
            f"live state {_mib(result['state_bytes'])} MiB",
            flush=True,
        )
        rss = run_rss(model_name, args) if args.memory in ("rss", "both") else None
        result["rss"] = rss
        load = os.getloadavg()
        print(f"\n## {model_name} (load average now {load[0]:.2f} {load[1]:.2f} {load[2]:.2f})\n")
        print(render(result, rss), flush=True)
        all_results.append(result)
    if args.json:
        args.json.write_text(json.dumps({"argv": sys.argv, "results": all_results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
