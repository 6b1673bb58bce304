#!/usr/bin/env python
"""Time of ``ClapFeatureExtractor.__call__`` vs the batched torch path ``fast_clap_features``.

Cases (``truncation="rand_trunc"``, ``padding="repeatpad"``):

* ``16k``: the project's default processor: 16 kHz, hop 160, 16 mel bins, fft 512, 2 s max length;
  a batch of ``--batch`` clips of exactly 2 s.
* ``48k``: laion/clap-htsat-unfused's extractor (48 kHz, hop 480, 64 mel bins, fft 1024, 50-14000 Hz,
  10 s) with ``truncation="rand_trunc"``; a batch of ``--batch`` clips of exactly 10 s.

Each repeat times the original then the fast paths on the same batch after ``np.random.seed(0)``
(interleaved, so that load from other processes hits both alike), after one untimed warm-up call each.
Fast paths: ``fast_clap_features(fe, audios)`` (``num_threads=1``, the default, as ``clap_features`` runs
it) and ``num_threads=None`` (torch's current intra-op thread count, ``--threads``).
The table reports the median over ``--repeats`` (wall clock, ``time.perf_counter``), the per-clip time,
the speed-ups (original / fast) and the largest |difference| of the features (dB) between the paths.

Usage::

    python benchmarks/bench_features.py                 # batch 32, 7 repeats (16k) / 3 repeats (48k)
    python benchmarks/bench_features.py --threads 1     # torch.set_num_threads(1), as in DataLoader workers
    python benchmarks/bench_features.py --smoke         # tiny sizes, a few seconds
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import ClapFeatureExtractor

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from modeling_supclap.data.features import fast_clap_features  # noqa: E402

CASES: dict[str, dict[str, Any]] = {
    "16k": dict(
        feature_size=16, sampling_rate=16000, hop_length=160, max_length_s=2, fft_window_size=512,
        frequency_max=8000.0,
    ),
    "48k": dict(
        feature_size=64, sampling_rate=48000, hop_length=480, max_length_s=10, fft_window_size=1024,
        frequency_min=50, frequency_max=14000,
    ),
}  # fmt: skip


def _time(fn: Callable[[], Any]) -> float:
    np.random.seed(0)
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_case(name: str, batch: int, seconds: int, repeats: int) -> dict[str, Any]:
    """Time both paths on one batch; returns the medians (seconds) and the max feature difference."""
    config = {**CASES[name], "max_length_s": seconds}
    fe = ClapFeatureExtractor(**config, truncation="rand_trunc", padding="repeatpad")
    rng = np.random.default_rng(0)
    n = fe.nb_max_samples
    audios = [(0.1 * rng.standard_normal(n)).astype(np.float32) for _ in range(batch)]

    def original() -> Any:
        return fe(audios, sampling_rate=fe.sampling_rate, return_tensors="pt")

    def fast() -> Any:
        return fast_clap_features(fe, audios)  # num_threads=1, the default (as clap_features calls it)

    def fast_threaded() -> Any:
        return fast_clap_features(fe, audios, num_threads=None)  # torch's current thread count

    np.random.seed(0)
    ref = original()["input_features"]
    np.random.seed(0)
    out = fast()["input_features"]
    max_diff = float((ref - out).abs().max())
    np.random.seed(0)
    out = fast_threaded()["input_features"]
    max_diff = max(max_diff, float((ref - out).abs().max()))
    t_orig, t_fast, t_threaded = [], [], []
    for _ in range(repeats):
        t_orig.append(_time(original))
        t_fast.append(_time(fast))
        t_threaded.append(_time(fast_threaded))
    return {
        "case": name,
        "sampling_rate": fe.sampling_rate,
        "seconds": seconds,
        "batch": batch,
        "hop": fe.hop_length,
        "n_mels": fe.feature_size,
        "n_fft": fe.fft_window_size,
        "original_s": statistics.median(t_orig),
        "fast_s": statistics.median(t_fast),
        "fast_threaded_s": statistics.median(t_threaded),
        "min_s": (min(t_orig), min(t_fast), min(t_threaded)),
        "threads": torch.get_num_threads(),
        "max_diff_db": max_diff,
        "repeats": repeats,
    }


def render(results: list[dict[str, Any]]) -> str:
    lines = [
        "| case | batch x clip | hop / mels / fft | original ms/batch (ms/clip) | fast, 1 thread ms/batch "
        "(ms/clip) | speed-up | fast, torch threads ms/batch (ms/clip) | speed-up | max abs diff (dB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        b = r["batch"]

        def cell(seconds: float, b: int = b) -> str:
            return f"{1000 * seconds:.1f} ({1000 * seconds / b:.2f})"

        lines.append(
            f"| {r['case']} | {b} x {r['seconds']} s @ {r['sampling_rate'] // 1000} kHz "
            f"| {r['hop']} / {r['n_mels']} / {r['n_fft']} "
            f"| {cell(r['original_s'])} | {cell(r['fast_s'])} | {r['original_s'] / r['fast_s']:.1f}x "
            f"| {cell(r['fast_threaded_s'])} ({r['threads']} threads) "
            f"| {r['original_s'] / r['fast_threaded_s']:.1f}x | {r['max_diff_db']:.2g} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=None, help="timed calls per path (default 7 / 3 for 48k)")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads for the threaded column (default: torch's)",
    )
    p.add_argument("--smoke", action="store_true", help="batch 4 of 1 s clips, 1 repeat: a few seconds")
    args = p.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    print(f"# bench_features: {' '.join(sys.argv)}")
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(
        f"# python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}, "
        f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    results = []
    for name in args.cases:
        if args.smoke:
            batch, seconds, repeats = 4, 1, 1
        else:
            batch = args.batch
            seconds = CASES[name]["max_length_s"]
            repeats = args.repeats if args.repeats is not None else (3 if name == "48k" else 7)
        results.append(run_case(name, batch, seconds, repeats))
        m = results[-1]["min_s"]
        print(
            f"# {name}: done; best of {repeats} (ms/batch): original {1000 * m[0]:.1f}, fast 1 thread "
            f"{1000 * m[1]:.1f}, fast torch threads {1000 * m[2]:.1f}",
            flush=True,
        )
    print(render(results))
    worst = max(r["max_diff_db"] for r in results)
    if worst > 1e-4:
        print(f"# PARITY FAILURE: max abs diff {worst:.3g} dB > 1e-4", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
