#!/usr/bin/env python
"""The dual encoder (any audio tower, any text tower) against the CLAP preset of the same size.

Two parts, each against ``SupClapModel`` measured in the same run:

**Quality** (``--part quality``): the demo corpus from scratch, the ``small`` CLAP preset (HTSAT + RoBERTa-
shaped text tower, 0.66M parameters) against a dual encoder of small random AST + BERT towers (0.61M), each
with InfoNCE and with bilateral DynamicSVR, 3 seeds; test R@1. Every run is the real command line, trained
by ``bench_quality.py``'s machinery (``run_jobs``: resumable, one folder per run with its command); the
dual encoder's runs add ``--audio_tower ast --text_tower bert``, nothing else changes (same preset size,
steps, batch, learning rate, data, seeds). Reported: mean ± std per (model, loss), and paired per seed
(same seed = same data order): DynamicSVR − InfoNCE within each model (``bench_quality.paired_against_base``)
and dual encoder − CLAP at each loss.

**Cost** (``--part cost``): one training step (forward with the loss, backward, AdamW step) of each tower
family at the same batch, on CPU: the CLAP preset, then a dual encoder per audio family (with BERT) and
per text family (with AST), all random at ``--size``. One batch per model, from that model's own processor
on the same clips and captions (2 s at 16 kHz; CLAP's HTSAT: its repeat-padded log-mel; AST: Kaldi fbank;
Whisper: log-mel; the wav2vec2 family: the waveform). Models are timed round-robin, in an order rotated
every round, so load from other jobs hits them alike; a model's ratio is the median over rounds of its
step time divided by the CLAP preset's in the same round (paired), with the interquartile range. Memory:
the tensor peak of one step (``bench_loss_cost._profiled_step_peak``: the profiler's allocation events on
CPU, ``torch.cuda.max_memory_allocated`` on CUDA) plus what is live between steps (parameters, AdamW state,
the batch), against the CLAP preset's.

On a GPU (``--part cost --device cuda``): ``--cost_models clap-htsat paper``, laion/clap-htsat-unfused's
shapes (HTSAT-tiny + RoBERTa-base, 10 s at 48 kHz) against paper-sized random towers: a CED-Base-like
audio tower (a ViT-Base over 64-mel 16x16 patches of 10 s at 16 kHz: CED-Base's shape, built as AST,
since CED itself is remote code on the Hub) with a SONAR-like text tower (an M2M100 encoder of SONAR's
shape: 24 layers, width 1024, NLLB-200's 256k vocabulary), projections of 1024; ``--batch 24 256``
(the paper's batch, and a large one). ``benchmarks/gpu_checks.sh`` runs it.

Usage::

    nohup python benchmarks/bench_towers.py --jobs 1 --threads 1 > bench_towers.log 2>&1 &   # docs run
    python benchmarks/bench_towers.py --part cost                      # CPU step time and memory only
    python benchmarks/bench_towers.py --part quality --report_only     # the table from finished runs
    python benchmarks/bench_towers.py --part cost --device cuda --threads 0 --cost_models clap-htsat paper \
        --batch 24 256 --json OUT/towers_paper.json                    # a lent GPU machine
    python benchmarks/bench_towers.py --smoke                          # both parts, tiny, seconds
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import bench_quality  # noqa: E402  (benchmarks/ is on sys.path when run as a script)
from bench_loss_cost import HTSAT_EXTRACTOR, _mib, _pct, _profiled_step_peak, _q, _sync, _tensor_bytes  # noqa: E402

# Quality: the model families compared, as train_supclap.py flags added to every run.
QUALITY_MODELS = {"clap": [], "ast+bert": ["--audio_tower", "ast", "--text_tower", "bert"]}
QUALITY_VARIANTS = ["infonce", "infonce+dynamic-bi"]
BASELINE = "clap"
# Cost: the CLAP preset, then one dual encoder per tower family (the other tower fixed).
AUDIO_FAMILIES = ("ast", "whisper", "wav2vec2", "hubert", "wavlm", "htsat")
TEXT_FAMILIES = ("roberta", "xlm-roberta", "modernbert", "m2m100", "t5")
COST_MODELS = ["clap", *(f"{a}+bert" for a in AUDIO_FAMILIES), *(f"ast+{t}" for t in TEXT_FAMILIES)]
SAMPLING_RATE, SECONDS, VOCAB_SIZE, TEXT_LEN = 16000, 2, 1000, 32
WORDS = "a dog barks loudly while two short high beeps and a low hum fade into rain and wind".split()


# ------------------------------------------------------------------------------------------------------------
# Quality: bench_quality's runs, once per model family
# ------------------------------------------------------------------------------------------------------------
def quality_args(args: argparse.Namespace, model: str) -> argparse.Namespace:
    """``bench_quality``'s arguments for ``model``'s runs: its own folder, its tower flags first."""
    model_args = copy.copy(args)
    model_args.out_dir = args.out_dir / model
    model_args.extra = [*QUALITY_MODELS[model], *args.extra]
    return model_args


def paired_between_models(per_model: dict[str, dict[str, Any]], key: str = "mean_R@1") -> dict[str, Any]:
    """Each model minus the CLAP preset at the same loss, seed by seed (same seed: same data order)."""
    out: dict[str, Any] = {}
    for model, per_variant in per_model.items():
        if model == BASELINE:
            continue
        for variant, summary in per_variant.items():
            base_runs = per_model[BASELINE].get(variant, {}).get("runs", {})
            seeds = sorted(set(summary["runs"]) & set(base_runs))
            if not seeds:
                continue
            differences = [summary["runs"][s][key] - base_runs[s][key] for s in seeds]
            out[f"{model} {variant}"] = {
                "base": f"{BASELINE} {variant}",
                "seeds": seeds,
                "differences": differences,
                "mean": statistics.fmean(differences),
                "std": statistics.stdev(differences) if len(differences) > 1 else float("nan"),
                "seeds_won": sum(d > 0 for d in differences),
                "p_sign_flip": bench_quality.sign_flip_p_value(differences),
                "learning_rates": [None, None],
            }
    return out


def run_quality(args: argparse.Namespace) -> dict[str, Any]:
    seeds = list(range(args.seeds))
    failures = []
    for seed in seeds:  # seed-major: a benchmark cut short still covers every model and loss
        for model in QUALITY_MODELS:
            jobs = [(variant, seed, None) for variant in args.variants]
            failures += bench_quality.run_jobs(jobs, quality_args(args, model), f"{model}")
    per_model = {
        model: bench_quality.aggregate(quality_args(args, model), args.variants, seeds)
        for model in QUALITY_MODELS
    }
    rows = {
        f"{model} {variant}": s
        for model, per_variant in per_model.items()
        for variant, s in per_variant.items()
    }
    within = {
        f"{model}: {name}": row
        for model, per_variant in per_model.items()
        for name, row in bench_quality.paired_against_base(per_variant).items()
    }
    between = paired_between_models(per_model)
    print(bench_quality.render(rows))
    print()
    print(bench_quality.render_paired({**within, **between}))
    return {
        "budget": bench_quality.budget_tag(args),
        "command_first_run": " ".join(
            bench_quality.run_command(args.variants[0], 0, Path("RUN_DIR"), quality_args(args, "ast+bert"))[
                1:
            ]
        ),
        "models": per_model,
        "paired_within_model": within,
        "paired_against_clap": between,
        "failures": failures,
    }


# ------------------------------------------------------------------------------------------------------------
# Cost: one training step per tower family, round-robin
# ------------------------------------------------------------------------------------------------------------
def _paper_towers() -> tuple[Any, Any]:
    """CED-Base-like audio (ViT-Base over 64-mel 16x16 patches of 10 s, as AST) and SONAR-like text
    (M2M100 encoder: 24 layers, width 1024, 16 heads, FFN 8192, NLLB-200's vocabulary) configs."""
    from transformers import AutoConfig

    audio = AutoConfig.for_model(
        "audio-spectrogram-transformer", hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
        intermediate_size=3072, num_mel_bins=64, max_length=1000, patch_size=16, frequency_stride=16,
        time_stride=16,
    )  # fmt: skip
    text = AutoConfig.for_model(
        "m2m_100", vocab_size=256206, d_model=1024, encoder_layers=24, encoder_attention_heads=16,
        encoder_ffn_dim=8192, decoder_layers=1, decoder_attention_heads=16, decoder_ffn_dim=8192,
        max_position_embeddings=514, scale_embedding=True, encoder_layerdrop=0.0, pad_token_id=1,
        bos_token_id=0, eos_token_id=2, decoder_start_token_id=2,
    )  # fmt: skip
    return audio, text


def build_cost_model(name: str, size: str, tokenizer, loss_settings: dict[str, Any]) -> tuple[Any, Any]:
    """(model, processor) of ``name``: ``clap`` (the ``size`` CLAP preset), ``clap-htsat`` (laion/clap-htsat-
    unfused's shapes), ``paper`` (CED-Base-like + SONAR-like) or ``<audio>+<text>`` random towers."""
    from transformers import ASTFeatureExtractor, ClapFeatureExtractor, ClapProcessor

    from modeling_supclap import (
        SupClapConfig,
        SupClapDualEncoderModel,
        SupClapDualEncoderProcessor,
        SupClapModel,
    )
    from modeling_supclap.data import build_processor_for_audio_config
    from modeling_supclap.model.configuration_supclap import PRESETS
    from modeling_supclap.model.modeling_supclap_dual_encoder import build_tower
    from modeling_supclap.training.model_setup import random_audio_tower, random_text_tower

    if name == "clap":
        config = SupClapConfig.from_preset(size, **loss_settings)
        config.text_config.vocab_size = VOCAB_SIZE
        return SupClapModel(config), build_processor_for_audio_config(
            tokenizer, config.audio_config, SAMPLING_RATE
        )
    if name == "clap-htsat":
        config = SupClapConfig(**loss_settings)  # the default ClapConfig sub-configs: laion's unfused shapes
        return SupClapModel(config), ClapProcessor(ClapFeatureExtractor(**HTSAT_EXTRACTOR), tokenizer)
    if name == "paper":
        audio_config, text_config = _paper_towers()
        model = SupClapDualEncoderModel.from_towers(
            build_tower(audio_config), build_tower(text_config), projection_dim=1024, **loss_settings
        )
        extractor = ASTFeatureExtractor(num_mel_bins=64, max_length=1000, sampling_rate=SAMPLING_RATE)
        return model, SupClapDualEncoderProcessor(extractor, tokenizer)
    audio_family, text_family = name.split("+")
    audio_model, extractor = random_audio_tower(audio_family, size, SAMPLING_RATE, SECONDS)
    text_model = random_text_tower(text_family, size, VOCAB_SIZE, TEXT_LEN)
    projection_dim = PRESETS[size]()["projection_dim"]
    model = SupClapDualEncoderModel.from_towers(
        audio_model, text_model, projection_dim=projection_dim, **loss_settings
    )
    return model, SupClapDualEncoderProcessor(extractor, tokenizer)


def _window_seconds(extractor) -> float:
    """The audio a feature extractor's fixed window holds (clips that fill it: no padding measured)."""
    if getattr(extractor, "max_length_s", None):  # CLAP
        return float(extractor.max_length_s)
    if type(extractor).__name__ == "ASTFeatureExtractor":  # frames of 10 ms
        return extractor.max_length / 100
    return float(getattr(extractor, "chunk_length", None) or SECONDS)  # Whisper; the waveform towers


def make_batch(processor, batch: int, device, max_distinct_clips: int = 16) -> dict[str, Any]:
    """The processor's inputs for ``batch`` noise clips (its own rate, ``SECONDS`` long; at most
    ``max_distinct_clips`` extracted, the rest copies plus small noise: extraction time is not measured)
    and ``batch`` captions of ``TEXT_LEN`` words."""
    import numpy as np
    import torch

    extractor = processor.feature_extractor
    rate = extractor.sampling_rate
    rng = np.random.default_rng(0)
    seconds = _window_seconds(extractor)
    distinct = min(batch, max_distinct_clips)
    clips = [(0.1 * rng.standard_normal(int(rate * seconds))).astype(np.float32) for _ in range(distinct)]
    captions = [" ".join(rng.choice(WORDS, TEXT_LEN)) for _ in range(batch)]
    np.random.seed(0)  # CLAP's random crops
    audio = dict(processor(audio=clips, sampling_rate=rate, return_tensors="pt"))
    copies = torch.arange(batch) % distinct
    jitter = torch.Generator().manual_seed(1)
    for key, value in audio.items():
        value = value[copies]
        if value.is_floating_point() and distinct < batch:
            value = value + 0.01 * torch.randn(value.shape, generator=jitter)
        audio[key] = value
    text = processor.tokenizer(
        captions, padding="max_length", truncation=True, max_length=TEXT_LEN, return_tensors="pt"
    )
    inputs = {**dict(text), **audio}
    return {k: v.to(device) for k, v in inputs.items()}


def training_step(model, optimizer, batch: dict[str, Any], device, bf16: bool):
    """One step as the training loop takes it: forward with the loss, backward, AdamW, zero_grad."""
    import torch

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = model(**batch, return_loss=True).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def measure_cost(args: argparse.Namespace, batch_size: int, tokenizer, device) -> dict[str, Any]:
    """Every model of ``--cost_models`` at ``batch_size``: step times (round-robin) and memory."""
    import torch

    loss_settings = {"base_loss": "infonce", "svr_mode": "dynamic", "svr_bilateral": True}
    names, steps, live = args.cost_models, {}, {}
    per_model: dict[str, Any] = {}
    for name in names:
        torch.manual_seed(0)
        model, processor = build_cost_model(name, args.size, tokenizer, loss_settings)
        model = model.to(device).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.01)
        batch = make_batch(processor, batch_size, device)
        steps[name] = training_step(model, optimizer, batch, device, args.bf16)
        live[name] = (model, optimizer, batch)
        tower_parameters = (p for n, p in model.named_parameters() if not n.startswith("loss_fn."))
        per_model[name] = {
            "num_params": sum(p.numel() for p in tower_parameters),
            "input": {k: list(v.shape) for k, v in batch.items()},
            "times": [],
            "cpu_times": [],
        }
    for _ in range(args.warmup):
        for name in names:
            steps[name]()
    for r in range(args.repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            _sync(device)
            start, cpu_start = time.perf_counter(), time.process_time()
            steps[name]()
            _sync(device)
            per_model[name]["times"].append(time.perf_counter() - start)
            per_model[name]["cpu_times"].append(time.process_time() - cpu_start)
    for name in names:
        model, optimizer, batch = live[name]
        state = _tensor_bytes(model.parameters()) + _tensor_bytes(batch.values())
        state += _tensor_bytes(v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            before = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            steps[name]()
            torch.cuda.synchronize(device)
            peak = torch.cuda.max_memory_allocated(device) - before
        else:
            peak = _profiled_step_peak(steps[name], device)
        per_model[name].update(step_peak=peak, total=state + peak)
    return per_model


def run_cost(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from modeling_supclap.data import train_caption_tokenizer

    device = torch.device(args.device)
    captions = [" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))] * 20
    tokenizer = train_caption_tokenizer(captions, vocab_size=300, model_max_length=TEXT_LEN)
    baseline, results = args.cost_models[0], {}
    for batch_size in args.batch:
        per_model = measure_cost(args, batch_size, tokenizer, device)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        results[str(batch_size)] = per_model
        print(f"\n## batch {batch_size} ({device}, load average now {_load()})\n", flush=True)
        print(render_cost(per_model, baseline, device.type == "cpu"), flush=True)
    return {
        "baseline": baseline,
        "batches": results,
        "threads": torch.get_num_threads(),
        "device": str(device),
    }


def render_cost(per_model: dict[str, Any], baseline: str, with_cpu_time: bool) -> str:
    ref = per_model[baseline]

    def paired(values: list[float], reference: list[float]) -> str:
        ratios = [a / b for a, b in zip(values, reference)]
        return f"{statistics.median(ratios):.2f}x ({_q(ratios, 0.25):.2f}..{_q(ratios, 0.75):.2f})"

    columns = ["model", "parameters", "median step (ms)", f"step time vs {baseline} (IQR)"]
    if with_cpu_time:
        columns.append(f"step CPU time vs {baseline} (IQR)")
    columns += ["tensor peak of step (MiB)", "total tensor memory (MiB)", f"total vs {baseline}"]
    lines = bench_quality._table_head(*columns)
    for name, row in per_model.items():
        cells = [name, f"{row['num_params'] / 1e6:.2f}M", f"{1000 * statistics.median(row['times']):.1f}"]
        cells.append(paired(row["times"], ref["times"]))
        if with_cpu_time:
            cells.append(paired(row["cpu_times"], ref["cpu_times"]))
        cells += [_mib(row["step_peak"]), _mib(row["total"]), _pct(row["total"] / ref["total"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=["quality", "cost", "both"], default="both")
    # Quality (bench_quality's options, same names)
    p.add_argument("--variants", nargs="+", default=QUALITY_VARIANTS, choices=list(bench_quality.VARIANTS))
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per model and loss")
    p.add_argument("--max_steps", type=int, default=1200, help="optimizer steps per run (the CLI's default)")
    p.add_argument("--preset", default="small", choices=["tiny", "small"], help="size of every model")
    p.add_argument("--per_device_train_batch_size", type=int, default=None, help="default: the CLI's")
    p.add_argument("--warmup_steps", type=int, default=None, help="default: the CLI's")
    p.add_argument("--dataloader_num_workers", type=int, default=None, help="default: the CLI's")
    p.add_argument("--demo_num_clips", type=int, default=None, help="demo corpus size (default: the CLI's)")
    p.add_argument("--cache_dir", type=Path, default=REPO_ROOT / ".cache" / "supclap")
    p.add_argument("--out_dir", type=Path, default=REPO_ROOT / "outputs" / "bench_towers")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per training run")
    p.add_argument(
        "--threads", type=int, default=None, help="OMP_NUM_THREADS of each run / torch threads (cost)"
    )
    p.add_argument("--jobs", type=int, default=1, help="training runs at a time")
    p.add_argument("--report_only", action="store_true", help="quality: run nothing, summarise finished runs")
    # Cost
    p.add_argument(
        "--cost_models", nargs="+", default=COST_MODELS, help="the first is the baseline of the ratios"
    )
    p.add_argument(
        "--size", default="small", choices=["tiny", "small"], help="cost: size of the random towers"
    )
    p.add_argument(
        "--batch", type=int, nargs="+", default=[32], help="cost: pairs per step (the CLI's default)"
    )
    p.add_argument("--repeats", type=int, default=15, help="cost: timed rounds")
    p.add_argument("--warmup", type=int, default=2, help="cost: untimed rounds first")
    p.add_argument("--device", default="cpu")
    p.add_argument("--bf16", action="store_true", help="cost: bf16 autocast (GPU)")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, 1 seed, 3 steps, 3 cost models: seconds")
    p.add_argument(
        "extra", nargs="*", help="after '--': more train_supclap.py arguments for every quality run"
    )
    args = p.parse_args(argv)
    if args.smoke:
        args.variants, args.seeds, args.preset, args.max_steps = ["infonce"], 1, "tiny", 3
        args.per_device_train_batch_size, args.warmup_steps = 8, 1
        args.demo_num_clips = args.demo_num_clips or 80
        args.jobs, args.threads = max(args.jobs, 2), args.threads or 1
        args.cost_models, args.size, args.batch, args.repeats, args.warmup = (
            ["clap", "ast+bert", "whisper+t5"],
            "tiny",
            [4],
            2,
            1,
        )

    import torch

    if args.threads is not None and args.threads > 0:
        torch.set_num_threads(args.threads)
    print(f"# bench_towers: {' '.join(sys.argv)}")
    print(
        f"# {platform.platform()}, {os.cpu_count()} CPUs, python {platform.python_version()}, torch "
        f"{torch.__version__}, load average {_load()}",
        flush=True,
    )
    summary: dict[str, Any] = {"argv": sys.argv, "platform": platform.platform(), "cpus": os.cpu_count()}
    failed = False
    if args.part in ("cost", "both"):
        summary["cost"] = run_cost(args)
    if args.part in ("quality", "both"):
        summary["quality"] = run_quality(args)
        failed = bool(summary["quality"]["failures"])
    summary["load_average_at_end"] = _load()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=1))
        print(f"# wrote {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
