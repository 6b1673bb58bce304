#!/usr/bin/env python
"""Time and peak memory of the retrieval metric vs the one-matmul floor and a full-matrix argsort.

Methods (each run in its OWN subprocess, so each gets its own peak-memory figure):

* ``one_pass``: ``modeling_supclap.evaluation.metrics.load_metric("retrieval").compute(...)`` -- the
  shipped evaluate module: both directions from one chunked pass over ``text @ audio.T`` (chunks of
  ``--chunk_size`` captions), exact capped ranks, pessimistic ties.
* ``floor``: the bare chunked matmul the metric cannot beat: ``audio.T.contiguous()``, then for every
  chunk ``torch.matmul(text[chunk], audio_t, out=buf)`` into one reused buffer, each result consumed by a
  ``.sum()`` (one read, so nothing is optimised away).  Every exact R@k in both directions needs each
  caption-clip score once, so this is the floor; ``time vs floor`` is each method's ratio to it.
* ``floor_alloc``: the same with a fresh ``text[chunk] @ audio_t`` tensor per chunk (not run by default);
  on VMs where page faults are expensive this is much slower than ``floor``.
* ``two_pass``: the previous implementation of the module (``tests/helpers/retrieval_reference.py``: one
  chunked matmul per direction, a top-(k+1) of every score row).
* ``naive``: the LAION-CLAP-style evaluation: full ``text @ audio.T`` score matrix, ``torch.argsort`` of the
  whole (Nt, Na) matrix for text->audio and of its (Na, Nt) transpose for audio->text.

Data: ``N`` caption embeddings (dim ``--dim``), ``N / c`` clips (``c = --captions_per_clip``), captions are
noisy copies of their clip so the metrics are informative; float32, L2-normalised, fixed seed.

Memory: ``peak RSS`` is the worker's ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` at the end (whole process:
interpreter, torch, evaluate, data); ``delta peak`` is that minus ``ru_maxrss`` measured just before the first
timed call (after imports, data generation and metric loading), i.e. the extra peak memory the method needs.
Time: median over ``--repeats`` calls x ``--rounds`` (wall clock, ``time.perf_counter``), data already in
memory; with ``--rounds R`` the methods run in turn R times (one subprocess each time), so a neighbour's
load drifting over the run hits every method alike.  Threads: torch's default (set ``OMP_NUM_THREADS``).
The naive method is skipped (and reported as such) when its estimated peak (~17 bytes per score-matrix entry:
scores + argsort values + int64 indices + comparison mask) exceeds ``--max_naive_gb``.

Usage::

    python benchmarks/bench_eval_scaling.py                     # N = 10k, 50k, dim 512, 5 captions per clip
    python benchmarks/bench_eval_scaling.py --smoke             # N = 200, seconds
    python benchmarks/bench_eval_scaling.py --captions_per_clip 1 --sizes 10000 50000 --repeats 1
    OMP_NUM_THREADS=2 python benchmarks/bench_eval_scaling.py --methods floor two_pass one_pass \
        --captions_per_clip 1 --sizes 20000 --repeats 3 --rounds 2   # vs the floor, 20k x 20k
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
KS = (1, 5, 10)
MAP_K = 10
NAIVE_BYTES_PER_ENTRY = 17  # float32 scores + float32 sorted values + int64 indices + bool mask
METHODS = ["naive", "floor", "floor_alloc", "two_pass", "one_pass"]
DEFAULT_METHODS = ["naive", "floor", "two_pass", "one_pass"]


def _maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def make_data(num_captions: int, captions_per_clip: int, dim: int, seed: int = 0):
    """Captions = clip embedding + noise (cosine to own clip ~0.16 at dim 512), both L2-normalised."""
    import torch

    g = torch.Generator().manual_seed(seed)
    num_audio = num_captions // captions_per_clip
    ids = torch.arange(num_audio).repeat_interleave(captions_per_clip)
    audio = torch.nn.functional.normalize(torch.randn(num_audio, dim, generator=g), dim=1)
    text = audio[ids] + 6.0 * torch.randn(len(ids), dim, generator=g) / dim**0.5
    text = torch.nn.functional.normalize(text, dim=1)
    return text, audio, ids


def naive_full_matrix(text, audio, ids, ks=KS, map_k=MAP_K) -> dict[str, float]:
    """LAION-CLAP-style baseline: full score matrix + full argsort per direction (ties in argsort order).

    Written the obvious way, but freeing what is no longer needed, so its peak is ~17 bytes per score-matrix
    entry (float32 scores + sort's float32 values and int64 indices + a bool mask).
    """
    import torch

    num_audio = audio.shape[0]
    scores = text @ audio.T  # (Nt, Na)
    ranking = torch.argsort(scores, dim=1, descending=True)  # (Nt, Na): clip indices, best first
    t2a = torch.where(ranking == ids[:, None])[1] + 1  # one hit per row, rows in order
    del ranking
    ranking = torch.argsort(scores.T, dim=1, descending=True)  # (Na, Nt): caption indices, best first
    del scores
    ranked_clip = ids[ranking]  # clip of every ranked caption
    del ranking
    rows, cols = torch.where(ranked_clip == torch.arange(num_audio)[:, None])  # all (clip, position) hits
    del ranked_clip
    positions = cols + 1
    best = torch.full((num_audio,), torch.iinfo(torch.long).max).scatter_reduce(0, rows, positions, "amin")
    pair_recip = torch.where(positions <= map_k, 1.0 / positions.double(), 0.0)
    out = {f"t2a_R@{k}": float((t2a <= k).double().mean() * 100) for k in ks}
    out |= {f"a2t_R@{k}": float((best <= k).double().mean() * 100) for k in ks}
    out[f"t2a_mAP@{map_k}"] = float(torch.where(t2a <= map_k, 1.0 / t2a.double(), 0.0).mean() * 100)
    out[f"a2t_mAP@{map_k}"] = float(pair_recip.mean() * 100)
    return out


def floor_matmul(text, audio, chunk_size: int, reuse_buffer: bool = True) -> float:
    """The one-matmul floor: chunked ``text @ audio.T``, each chunk consumed by one ``.sum()``."""
    import torch

    audio_t = audio.T.contiguous()  # (d, Na): the fastest layout for the matmul
    buf = torch.empty(chunk_size, audio.shape[0], dtype=text.dtype) if reuse_buffer else None
    total = 0.0
    for start in range(0, text.shape[0], chunk_size):
        chunk = text[start : start + chunk_size]
        if buf is None:
            scores = chunk @ audio_t
        else:
            scores = torch.matmul(chunk, audio_t, out=buf[: chunk.shape[0]])
        total += float(scores.sum())
    return total


def worker(args: argparse.Namespace) -> None:
    """Run one method ``--repeats`` times on one size; print one JSON line."""
    sys.path.insert(0, str(REPO_ROOT))
    import torch

    text, audio, ids = make_data(args.n, args.captions_per_clip, args.dim)
    load_s = 0.0
    if args.worker == "one_pass":
        from modeling_supclap.evaluation.metrics import load_metric

        t0 = time.perf_counter()
        metric = load_metric("retrieval")
        load_s = time.perf_counter() - t0

        def run() -> dict[str, Any]:
            return metric.compute(
                caption_audio_ids=ids, text_embeds=text, audio_embeds=audio, ks=KS, chunk_size=args.chunk_size
            )
    elif args.worker == "two_pass":
        sys.path.insert(0, str(REPO_ROOT / "tests"))
        from helpers.retrieval_reference import retrieval_scores

        def run() -> dict[str, Any]:
            return retrieval_scores(text, audio, ids, KS, MAP_K, args.chunk_size)
    elif args.worker in ("floor", "floor_alloc"):

        def run() -> dict[str, Any]:
            with torch.inference_mode():
                floor_matmul(text, audio, args.chunk_size, reuse_buffer=args.worker == "floor")
            return {}
    else:

        def run() -> dict[str, Any]:
            with torch.inference_mode():
                return naive_full_matrix(text, audio, ids)

    base = _maxrss_bytes()
    times, out = [], {}
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - t0)
    result = {
        "method": args.worker,
        "n": args.n,
        "num_audio": int(audio.shape[0]),
        "times": times,
        "load_s": load_s,
        "base_rss": base,
        "peak_rss": _maxrss_bytes(),
        "metrics": {k: v for k, v in out.items() if isinstance(v, float)},
        "threads": torch.get_num_threads(),
    }
    print("RESULT " + json.dumps(result), flush=True)


def _mem_available_gb() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 8.0


def run_worker(method: str, n: int, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", method, "--n", str(n)]
    cmd += ["--dim", str(args.dim), "--captions_per_clip", str(args.captions_per_clip)]
    cmd += ["--repeats", str(args.repeats), "--chunk_size", str(args.chunk_size)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, cwd=REPO_ROOT)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    tail = (proc.stderr or proc.stdout)[-500:].strip().replace("\n", " / ")
    return {"method": method, "n": n, "error": f"exit {proc.returncode}: {tail}"}


def _mib(nbytes: float) -> str:
    return f"{nbytes / 2**20:,.0f}"


def render(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    head = (
        "| N captions | N clips | method | median time (s) | time vs floor | time vs naive | peak RSS (MiB) "
        "| delta peak (MiB) | delta vs naive | max abs metric diff vs naive |"
    )
    lines = [head, "|" + "|".join("---" for _ in range(head.count("|") - 1)) + "|"]
    by_key = {(r["n"], r["method"]): r for r in results}
    for r in results:
        naive = by_key.get((r["n"], "naive"))
        naive_ok = naive is not None and "times" in naive
        floor = by_key.get((r["n"], "floor"))
        clips = r.get("num_audio", r["n"] // args.captions_per_clip)
        if "times" not in r:
            msg = r.get("error", "skipped")
            lines.append(f"| {r['n']:,} | {clips:,} | {r['method']} | {msg} | | | | | | |")
            continue
        med = statistics.median(r["times"])
        delta = r["peak_rss"] - r["base_rss"]
        if floor is not None and "times" in floor:
            f_ratio = "1x" if r is floor else f"{med / statistics.median(floor['times']):.3f}x"
        else:
            f_ratio = "n/a"
        if naive_ok and r is not naive:
            t_ratio = f"{med / statistics.median(naive['times']):.3f}x"
            m_ratio = f"{delta / max(naive['peak_rss'] - naive['base_rss'], 1):.3f}x"
        else:
            t_ratio = m_ratio = "1x" if r is naive else "n/a"
        if naive_ok and r is not naive and r["metrics"]:
            diff = max(abs(r["metrics"][k] - naive["metrics"][k]) for k in naive["metrics"])
            diff_s = f"{diff:.2g}"
        else:
            diff_s = "-"
        lines.append(
            f"| {r['n']:,} | {clips:,} | {r['method']} | {med:.3f} | {f_ratio} | {t_ratio} "
            f"| {_mib(r['peak_rss'])} | {_mib(delta)} | {m_ratio} | {diff_s} |"
        )
    return "\n".join(lines)


def _merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from the rounds of one (size, method): all times, the largest memory figures."""
    ok = [r for r in runs if "times" in r]
    if len(ok) < len(runs):
        return next(r for r in runs if "times" not in r)
    out = dict(ok[0])
    out["times"] = [t for r in ok for t in r["times"]]
    out["peak_rss"] = max(r["peak_rss"] for r in ok)
    out["base_rss"] = min(r["base_rss"] for r in ok)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000], help="numbers of captions N")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--captions_per_clip", "--captions-per-clip", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3, help="timed calls per method and size (median reported)")
    p.add_argument("--rounds", type=int, default=1, help="run the methods in turn this many times")
    p.add_argument("--chunk_size", "--chunk-size", type=int, default=1024)
    p.add_argument("--methods", nargs="+", default=DEFAULT_METHODS, choices=METHODS)
    p.add_argument(
        "--max_naive_gb",
        "--max-naive-gb",
        type=float,
        default=None,
        help="skip naive above this estimated peak (default: 60%% of MemAvailable)",
    )
    p.add_argument("--timeout", type=float, default=1800, help="seconds per worker subprocess")
    p.add_argument("--smoke", action="store_true", help="N=200, 1 repeat: a few seconds")
    p.add_argument("--json", type=Path, default=None, help="also write the raw results here")
    p.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    if args.smoke:
        args.sizes, args.repeats, args.rounds = [200], 1, 1
    max_naive_gb = args.max_naive_gb if args.max_naive_gb is not None else 0.6 * _mem_available_gb()

    print(f"# bench_eval_scaling: {' '.join(sys.argv)}")
    print(
        f"# {platform.platform()}, {os.cpu_count()} CPUs, python {platform.python_version()}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, dim={args.dim}, "
        f"captions/clip={args.captions_per_clip}, repeats={args.repeats}, rounds={args.rounds}, "
        f"chunk_size={args.chunk_size}, ks={KS}, mAP@{MAP_K}, naive limit {max_naive_gb:.1f} GB",
        flush=True,
    )
    results = []
    for n in args.sizes:
        runs: dict[str, list[dict[str, Any]]] = {m: [] for m in args.methods}
        for _ in range(args.rounds):
            for method in args.methods:
                if method == "naive":
                    est_gb = n * (n // args.captions_per_clip) * NAIVE_BYTES_PER_ENTRY / 2**30
                    if est_gb > max_naive_gb:
                        msg = f"skipped: est. {est_gb:.1f} GB > {max_naive_gb:.1f} GB limit"
                        runs[method] = [{"method": method, "n": n, "error": msg}]
                        print(f"# N={n} {method}: {msg}", flush=True)
                        continue
                t0 = time.perf_counter()
                r = run_worker(method, n, args)
                runs[method].append(r)
                took = time.perf_counter() - t0
                times = " ".join(f"{t:.3f}" for t in r.get("times", []))
                print(f"# N={n} {method}: done in {took:.1f}s, times {times} {r.get('error', '')}".rstrip())
        results += [_merge(runs[m]) for m in args.methods]
    table = render(results, args)
    print(table)
    if args.json:
        args.json.write_text(json.dumps({"argv": sys.argv, "results": results}, indent=1))
    return 0 if all("times" in r or r.get("error", "").startswith("skipped") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
