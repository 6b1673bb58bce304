#!/usr/bin/env python
"""Whole-clip embeddings, batch extraction and search, measured (issue 27). Four parts (``--parts``):

* ``long_clip``: the long-clip effect. Each test clip of the demo corpus is placed at a random offset
  (seeded) inside ``--long_seconds`` (30 and 60) of quiet background (white noise ``--background_db`` dB
  below the median RMS of the clips); text-to-audio and audio-to-text R@1 of the long-audio policies
  ``windows``, ``first`` and ``random`` against the short originals (the same captions, the same model).
* ``speed``: clips/s on the same model and the same files, in one run: ``supclap-embed`` (the real command,
  a subprocess, its defaults: 2 DataLoader workers, batches of 32, on the CPU), the loop users write today
  (soundfile, then ``ClapProcessor``'s feature extractor + ``get_audio_features`` one file at a time; not
  ``processor(audio=...)``, which in transformers 5.25 truncates the clip to the tokenizer's
  ``model_max_length`` in samples) and the zero-shot pipeline (``pipeline("zero-shot-audio-classification")``
  one file at a time, one candidate label: its feature path plus one short text). ``supclap-embed`` is
  timed twice: the whole command (start-up, model load, index writing) and its own "this run" line
  (embedding only). The largest cosine distance between the loop's embeddings and the index's rows is
  reported too (they should agree).
* ``search``: latency per query over ``--search_rows`` random L2-normalised embeddings, exact chunked
  search (``exact_top_k``), one query at a time and in batches; FAISS (``FaissSearch``, the shipped
  inverted file, its default ``nprobe``) where faiss is installed, with its build time and recall@k
  against exact search.
* ``stages``: per-worker (one torch thread) clips/s of each stage of the input pipeline for 10 s and 60 s
  clips: decode (soundfile, 16-bit 44.1 kHz WAV), resample (``resample_poly`` 44.1 kHz to 16 or 48 kHz,
  as ``decode_audio`` does) and log-mel of the ``windows`` policy's windows (``audio_model_inputs``: at
  16 kHz the demo model's extractor, 2 s windows; at 48 kHz LAION's clap-htsat-unfused extractor, 10 s).

Usage::

    python train_supclap.py                       # the demo model, outputs/supclap-demo (once)
    python benchmarks/bench_embed.py --output_json docs/results/embed_cpu_2core.json
    python benchmarks/bench_embed.py --smoke      # a random tiny model and a 30-clip corpus: seconds
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from modeling_supclap.data.audio import decode_audio  # noqa: E402
from modeling_supclap.data.features import audio_model_inputs  # noqa: E402
from modeling_supclap.data.long_audio import LongAudioPolicy  # noqa: E402
from modeling_supclap.data.readers import load_records  # noqa: E402
from modeling_supclap.evaluation.encode import encode_audio_windows, encode_texts  # noqa: E402
from modeling_supclap.evaluation.metrics import compute_retrieval_metrics  # noqa: E402
from modeling_supclap.inference import load_model_and_processor  # noqa: E402
from modeling_supclap.inference.search import FaissSearch, exact_top_k  # noqa: E402

PARTS = ("long_clip", "speed", "search", "stages")
POLICIES = ("windows", "first", "random")
LAION_48K = dict(
    feature_size=64, sampling_rate=48000, hop_length=480, max_length_s=10, fft_window_size=1024,
    frequency_min=50, frequency_max=14000, truncation="rand_trunc", padding="repeatpad",
)  # fmt: skip


def _load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else []


def _smoke_material(root: Path) -> tuple[Path, Path]:
    """A 30-clip demo corpus and a random tiny SupClap model with its processor, saved under ``root``."""
    from modeling_supclap import SupClapConfig, SupClapModel
    from modeling_supclap.demo.corpus import build_demo_corpus
    from modeling_supclap.demo.processor import build_demo_processor

    corpus = build_demo_corpus(root / "corpus", num_clips=30)
    config = SupClapConfig.tiny()
    processor = build_demo_processor(corpus, config.audio_config, cache_dir=root / "processors")
    torch.manual_seed(0)
    model = SupClapModel(config).eval()
    model.save_pretrained(root / "model")
    processor.save_pretrained(root / "model")
    return corpus, root / "model"


# --- long_clip ---------------------------------------------------------------------------------------


def _placed(clip: np.ndarray, seconds: float, rate: int, noise_rms: float, seed: int, index: int):
    """``clip`` at a seeded random offset inside ``seconds`` of white noise of RMS ``noise_rms``."""
    rng = np.random.default_rng([seed, index, int(seconds * 1000)])
    total = int(seconds * rate)
    out = (noise_rms * rng.standard_normal(total)).astype(np.float32)
    offset = int(rng.integers(0, total - clip.shape[0] + 1))
    out[offset : offset + clip.shape[0]] += clip
    return out, offset / rate


def bench_long_clip(model, processor, corpus: Path, long_seconds, background_db: float, seed: int):
    rate = int(processor.feature_extractor.sampling_rate)
    records = load_records(corpus, "test")
    clips = [decode_audio(r.audio, rate, r.source) for r in records]
    captions = [c for r in records for c in r.captions]
    ids = torch.tensor([i for i, r in enumerate(records) for _ in r.captions])
    text = torch.nn.functional.normalize(encode_texts(model, processor, captions), dim=-1)
    median_rms = float(np.median([np.sqrt(np.mean(c.astype(np.float64) ** 2)) for c in clips]))
    noise_rms = median_rms * 10 ** (background_db / 20)

    def scores(audio: torch.Tensor) -> dict[str, float]:
        metrics = compute_retrieval_metrics(text, audio, ids)
        return {"t2a_R@1": float(metrics["t2a_R@1"]), "a2t_R@1": float(metrics["a2t_R@1"])}

    rows = []
    started = time.perf_counter()
    short = encode_audio_windows(model, processor, clips, "windows", seed)
    rows.append(
        {
            "corpus": "short originals",
            "policy": "(one window)",
            "windows_per_clip": 1.0,
            **scores(short.embeds),
        }
    )
    print(f"# long_clip: short originals done ({time.perf_counter() - started:.0f} s)", flush=True)
    for seconds in long_seconds:
        placed = [_placed(c, seconds, rate, noise_rms, seed, i) for i, c in enumerate(clips)]
        longs = [audio for audio, _ in placed]
        for policy in POLICIES:
            embeds, counts = [], []
            for start in range(0, len(longs), 32):  # the batches of evaluation (random: seed + batch)
                out = encode_audio_windows(model, processor, longs[start : start + 32], policy, seed + start)
                embeds.append(out.embeds)
                counts += out.num_windows
            rows.append(
                {
                    "corpus": f"{seconds:g} s, clip at a random offset",
                    "policy": policy,
                    "windows_per_clip": float(np.mean(counts)),
                    **scores(torch.cat(embeds)),
                }
            )
            print(
                f"# long_clip: {seconds:g} s {policy} done ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
        del placed, longs
    return {
        "num_clips": len(clips),
        "num_captions": len(captions),
        "clip_seconds": clips[0].shape[0] / rate,
        "window_seconds": processor.feature_extractor.nb_max_samples / rate,
        "background": f"white noise, RMS {background_db:g} dB re the clips' median RMS ({noise_rms:.2e})",
        "chance_R@1": 100.0 / len(clips),
        "rows": rows,
    }


# --- speed -------------------------------------------------------------------------------------------


def _user_loop(model_dir: Path, files: list[Path]) -> tuple[float, torch.Tensor]:
    from transformers import AutoModel, ClapProcessor

    processor = ClapProcessor.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    started, out = time.perf_counter(), []
    for path in files:
        audio, rate = sf.read(path, dtype="float32")
        # The feature extractor, as transformers' get_audio_features example calls it: ClapProcessor(
        # audio=...) (transformers 5.25) passes it the tokenizer's model_max_length as max_length.
        inputs = processor.feature_extractor(audio, sampling_rate=rate, return_tensors="pt")
        with torch.no_grad():
            out.append(model.get_audio_features(**inputs).pooler_output)
    return time.perf_counter() - started, torch.cat(out)


def _pipeline_loop(model_dir: Path, files: list[Path]) -> float:
    from transformers import AutoModel, ClapProcessor, pipeline

    processor = ClapProcessor.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    pipe = pipeline(
        "zero-shot-audio-classification",
        model=model,
        feature_extractor=processor.feature_extractor,
        tokenizer=processor.tokenizer,
    )
    started = time.perf_counter()
    for path in files:
        audio, _ = sf.read(path, dtype="float32")
        pipe(audio, candidate_labels=["a sound"])
    return time.perf_counter() - started


def bench_speed(model_dir: Path, corpus: Path, num_files: int, workdir: Path) -> dict[str, Any]:
    folder = workdir / "speed_files"
    folder.mkdir(parents=True)
    sources = sorted((corpus / "train").glob("*.wav"))[:num_files]
    files = []
    for source in sources:  # a plain folder of audio files (links to the corpus' clips)
        (folder / source.name).symlink_to(source.resolve())
        files.append(folder / source.name)
    load_before = _load_average()
    index_dir = workdir / "speed_index"
    command = [
        sys.executable, "-m", "modeling_supclap.cli.embed", "--model_name_or_path", str(model_dir),
        "--data", str(folder), "--output_dir", str(index_dir), "--use_cpu",
    ]  # fmt: skip
    started = time.perf_counter()
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=1800)
    embed_wall = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"supclap-embed failed:\n{result.stderr[-3000:]}")
    found = re.search(r"this run: (\d+) clips on the main process in ([\d.]+) s", result.stdout)
    embed_run = float(found.group(2))
    print(f"# speed: supclap-embed {embed_wall:.1f} s in all, {embed_run:.1f} s embedding", flush=True)
    loop_s, loop_embeds = _user_loop(model_dir, files)
    print(f"# speed: ClapProcessor + get_audio_features loop {loop_s:.1f} s", flush=True)
    pipe_s = _pipeline_loop(model_dir, files)
    print(f"# speed: zero-shot pipeline loop {pipe_s:.1f} s", flush=True)
    from modeling_supclap.inference import EmbeddingIndex

    index = EmbeddingIndex.load(index_dir)
    rows = {index.row(i)["key"]: index.embeddings[i] for i in range(len(index))}
    stored = torch.stack([rows[path.name] for path in files]).float()
    max_cos_distance = float((1 - (stored * loop_embeds).sum(-1)).abs().max())
    n = len(files)
    methods = [
        ("supclap-embed, whole command (start-up, load, write)", embed_wall),
        ("supclap-embed, embedding only (its 'this run' time)", embed_run),
        ("ClapProcessor + get_audio_features, one file at a time", loop_s),
        ("zero-shot pipeline, one file at a time (one label)", pipe_s),
    ]
    return {
        "num_files": n,
        "file": "2 s, 16 kHz mono 16-bit WAV (the demo corpus' train clips)",
        "load_average_before": load_before,
        "load_average_after": _load_average(),
        "max_cosine_distance_loop_vs_index": max_cos_distance,
        "rows": [
            {
                "method": name,
                "seconds": s,
                "clips_per_s": n / s,
                "vs_loop": loop_s / s,
                "vs_pipeline": pipe_s / s,
            }
            for name, s in methods
        ],
    }


# --- search ------------------------------------------------------------------------------------------


def _median_time(fn, repeats: int) -> float:
    """Median wall time of ``repeats`` calls after one untimed warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench_search(rows: int, dims, faiss_dims, k: int, repeats: int, batch: int) -> dict[str, Any]:
    out = []
    for dim in dims:
        generator = torch.Generator().manual_seed(dim)
        embeddings = torch.nn.functional.normalize(torch.randn(rows, dim, generator=generator), dim=-1)
        queries = torch.nn.functional.normalize(torch.randn(batch, dim, generator=generator), dim=-1)
        one = _median_time(partial(exact_top_k, queries[:1], embeddings, k), repeats)
        many = _median_time(partial(exact_top_k, queries, embeddings, k), max(1, repeats // 4))
        entry = {
            "rows": rows,
            "dim": dim,
            "k": k,
            "exact_ms_one_query": 1000 * one,
            f"exact_ms_per_query_batch_{batch}": 1000 * many / batch,
        }
        print(f"# search: {rows} x {dim}: exact {1000 * one:.1f} ms per query", flush=True)
        if dim in faiss_dims:
            try:
                started = time.perf_counter()
                searcher = FaissSearch(embeddings)
                entry["faiss_build_s"] = time.perf_counter() - started
                entry["faiss_nlist"], entry["faiss_nprobe"] = searcher.nlist, int(searcher.index.nprobe)
                entry["faiss_ms_one_query"] = 1000 * _median_time(
                    partial(searcher.search, queries[:1], k), repeats
                )
                _, approx = searcher.search(queries, k)
                _, exact = exact_top_k(queries, embeddings, k)
                hits = [len(set(a.tolist()) & set(e.tolist())) for a, e in zip(approx, exact)]
                entry[f"faiss_recall_at_{k}"] = sum(hits) / (k * batch)
                print(f"# search: faiss {entry['faiss_ms_one_query']:.2f} ms per query", flush=True)
                del searcher
            except ImportError:
                entry["faiss"] = "not installed"
        out.append(entry)
        del embeddings
    return {"rows": out}


# --- stages ------------------------------------------------------------------------------------------


def bench_stages(demo_processor, seconds_list, repeats: int, workdir: Path) -> dict[str, Any]:
    from types import SimpleNamespace

    from transformers import ClapFeatureExtractor

    torch.set_num_threads(1)  # as in a DataLoader worker
    source_rate = 44100
    extractors = {16000: demo_processor.feature_extractor, 48000: ClapFeatureExtractor(**LAION_48K)}
    policy = LongAudioPolicy("windows")
    out = []
    for seconds in seconds_list:
        rng = np.random.default_rng(int(seconds))
        path = workdir / f"clip_{seconds:g}s.wav"
        sf.write(path, 0.1 * rng.standard_normal(int(seconds * source_rate)), source_rate, subtype="PCM_16")
        decode = _median_time(partial(decode_audio, str(path), source_rate, str(path)), repeats)
        audio = decode_audio(str(path), source_rate, str(path))
        for rate, extractor in extractors.items():
            resample = _median_time(
                partial(decode_audio, {"array": audio, "sampling_rate": source_rate}, rate, "clip"), repeats
            )
            at_rate = decode_audio({"array": audio, "sampling_rate": source_rate}, rate, "clip")
            windows = policy.windows(at_rate, extractor)
            processor = SimpleNamespace(feature_extractor=extractor)
            log_mel = _median_time(partial(audio_model_inputs, processor, windows), repeats)
            window_s = extractor.nb_max_samples / rate
            out.append(
                {
                    "clip_seconds": seconds,
                    "rate": rate,
                    "window_seconds": window_s,
                    "windows": len(windows),
                    "decode_clips_per_s": 1 / decode,
                    "resample_clips_per_s": 1 / resample,
                    "log_mel_clips_per_s": 1 / log_mel,
                    "all_clips_per_s": 1 / (decode + resample + log_mel),
                }
            )
            print(f"# stages: {seconds:g} s at {rate} Hz done", flush=True)
    return {"source": "44.1 kHz mono 16-bit WAV", "torch_threads": 1, "repeats": repeats, "rows": out}


# --- tables ------------------------------------------------------------------------------------------


def render(results: dict[str, Any]) -> str:
    lines = []
    if "long_clip" in results:
        r = results["long_clip"]
        lines += [
            f"long_clip: {r['num_clips']} test clips of {r['clip_seconds']:g} s, {r['num_captions']} "
            f"captions, {r['window_seconds']:g} s windows; background {r['background']}; chance "
            f"R@1 {r['chance_R@1']:.2f} %",
            "",
            "| corpus | policy | windows per clip | T2A R@1 | A2T R@1 |",
            "|---|---|---|---|---|",
        ]
        for row in r["rows"]:
            lines.append(
                f"| {row['corpus']} | {row['policy']} | {row['windows_per_clip']:.1f} "
                f"| {row['t2a_R@1']:.1f} | {row['a2t_R@1']:.1f} |"
            )
        lines.append("")
    if "speed" in results:
        r = results["speed"]
        lines += [
            f"speed: {r['num_files']} files ({r['file']}); load average before {r['load_average_before']}, "
            f"after {r['load_average_after']}; max cosine distance loop vs index "
            f"{r['max_cosine_distance_loop_vs_index']:.1e}",
            "",
            "| method | seconds | clips/s | vs the processor loop | vs the pipeline loop |",
            "|---|---|---|---|---|",
        ]
        for row in r["rows"]:
            lines.append(
                f"| {row['method']} | {row['seconds']:.1f} | {row['clips_per_s']:.1f} "
                f"| {row['vs_loop']:.2f}x | {row['vs_pipeline']:.2f}x |"
            )
        lines.append("")
    if "search" in results:
        lines += [
            "| rows | dim | k | exact ms / query (1 query) | exact ms / query (batched) | FAISS build s "
            "| FAISS ms / query | FAISS recall@k |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in results["search"]["rows"]:
            batched = next(v for key, v in row.items() if key.startswith("exact_ms_per_query_batch"))
            recall = next((v for key, v in row.items() if key.startswith("faiss_recall")), None)
            faiss = (
                f"{row['faiss_build_s']:.1f} | {row['faiss_ms_one_query']:.2f} | {recall:.3f}"
                if "faiss_build_s" in row
                else "- | - | -"
            )
            lines.append(
                f"| {row['rows']:,} | {row['dim']} | {row['k']} | {row['exact_ms_one_query']:.1f} "
                f"| {batched:.2f} | {faiss} |"
            )
        lines.append("")
    if "stages" in results:
        lines += [
            "| clip | rate | windows | decode clips/s | resample clips/s | log-mel clips/s | all three "
            "clips/s |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in results["stages"]["rows"]:
            lines.append(
                f"| {row['clip_seconds']:g} s | {row['rate'] // 1000} kHz | {row['windows']} x "
                f"{row['window_seconds']:g} s | {row['decode_clips_per_s']:.1f} "
                f"| {row['resample_clips_per_s']:.1f} | {row['log_mel_clips_per_s']:.1f} "
                f"| {row['all_clips_per_s']:.1f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    p.add_argument("--model", default=str(REPO_ROOT / "outputs" / "supclap-demo"))
    p.add_argument("--corpus", default=str(REPO_ROOT / ".cache" / "supclap" / "demo_corpus_2400"))
    p.add_argument("--long_seconds", type=float, nargs="+", default=[30.0, 60.0])
    p.add_argument("--background_db", type=float, default=-30.0)
    p.add_argument("--speed_files", type=int, default=960)
    p.add_argument("--search_rows", type=int, default=1_000_000)
    p.add_argument("--search_dims", type=int, nargs="+", default=[512, 64])
    p.add_argument("--faiss_dims", type=int, nargs="+", default=[64])
    p.add_argument("--stage_seconds", type=float, nargs="+", default=[10.0, 60.0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output_json", default=None)
    p.add_argument("--smoke", action="store_true", help="random tiny model, 30-clip corpus, tiny sizes")
    args = p.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="bench_embed_"))
    try:
        if args.smoke:
            corpus, model_dir = _smoke_material(workdir)
            args.long_seconds, args.speed_files, args.search_rows = [6.0], 6, 2000
            args.search_dims, args.faiss_dims, args.stage_seconds, args.repeats = [16], [16], [3.0], 1
        else:
            corpus, model_dir = Path(args.corpus), Path(args.model)
            if not (model_dir / "config.json").is_file():
                p.error(f"{model_dir}: no model (train the demo model first: python train_supclap.py)")
        header = {
            "command": " ".join(sys.argv),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "model": str(model_dir),
            "load_average_start": _load_average(),
        }
        print(f"# bench_embed: {json.dumps(header)}", flush=True)
        model, processor = load_model_and_processor(str(model_dir))
        results: dict[str, Any] = {"header": header}
        if "long_clip" in args.parts:
            results["long_clip"] = bench_long_clip(
                model, processor, corpus, args.long_seconds, args.background_db, args.seed
            )
        if "speed" in args.parts:
            results["speed"] = bench_speed(model_dir, corpus, args.speed_files, workdir)
        if "search" in args.parts:
            results["search"] = bench_search(
                args.search_rows, args.search_dims, args.faiss_dims, 10, args.repeats * 4, 64
            )
        if "stages" in args.parts:
            results["stages"] = bench_stages(processor, args.stage_seconds, args.repeats, workdir)
        results["header"]["load_average_end"] = _load_average()
        print(render(results))
        if args.output_json:
            Path(args.output_json).write_text(json.dumps(results, indent=2) + "\n")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
