"""InfoNCE vs bilateral DynamicSVR per caption language on the seven-language demo corpus.

Every run is the real command line, ``train_supclap.py --demo_languages en fr de es ru zh ja``, with the
default job's budget (small preset, 1,200 steps, the CLI's learning rate and batch) and only the loss and
``--seed`` changing; the run's own test pass scores each language (``metrics.json: test.
retrieval_per_language``, cross-lingual consistency, zero-shot with each language's prompt). For contrast,
the same recipe trained on English captions only (the English demo corpus) is evaluated on the
multilingual test split with ``eval_supclap.py``: how far an English-only model carries to the others.

Reports, per language, T2A and A2T R@1 mean ± std over seeds for each loss, the paired per-seed
difference (seeds won), the English-only contrast, and the consistency measures, as markdown (also into
``--json``)::

    nohup python benchmarks/bench_multilingual.py --seeds 3 --threads 1 \\
        --json docs/results/multilingual.json > outputs/multilingual.log 2>&1 &
    python benchmarks/bench_multilingual.py --smoke        # tiny preset, 5 steps, 80 clips (seconds)

Resumable: a run whose ``metrics.json`` (or evaluation JSON) exists is not run again.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_quality import (  # noqa: E402
    _cell,
    budget_tag,
    run_dir_for,
    run_one,
    seed_statistics,
    sign_flip_p_value,
)

LANGUAGES = ("en", "fr", "de", "es", "ru", "zh", "ja")
VARIANTS = ("infonce", "infonce+dynamic-bi")


def english_only_eval(
    args: argparse.Namespace, variant: str, seed: int, corpus: Path
) -> dict[str, Any] | None:
    """Train ``variant`` on the English demo (same recipe), evaluate it on the multilingual test split."""
    english = argparse.Namespace(**{**vars(args), "out_dir": args.out_dir / "english_only", "extra": []})
    result = run_one(variant, seed, english, None)
    run_dir = run_dir_for(english, variant, seed)
    if "error" in result or not (run_dir / "metrics.json").exists():
        print(f"# english-only {variant} seed {seed}: FAILED {result.get('error', '')[:300]}", flush=True)
        return None
    out = run_dir / "multilingual_eval.json"
    if not out.exists():
        cmd = [sys.executable, str(REPO_ROOT / "eval_supclap.py"), "--model_name_or_path", str(run_dir),
               "--eval_data", str(corpus), "--output_json", str(out)]  # fmt: skip
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        if args.threads:
            env["OMP_NUM_THREADS"] = str(args.threads)
        proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            print(f"# english-only eval {variant} seed {seed}: FAILED {proc.stderr[-500:]}", flush=True)
            return None
    return json.loads(out.read_text())


def _mean_r1(metrics: dict[str, Any]) -> float:
    return (metrics["t2a_R@1"] + metrics["a2t_R@1"]) / 2


def train_seconds(args: argparse.Namespace, variant: str, seed: int) -> float:
    metrics = json.loads((run_dir_for(args, variant, seed) / "metrics.json").read_text())
    return float(metrics["train_state"]["train_seconds"])


def collect(results: dict[str, dict[int, dict[str, Any]]]) -> dict[str, Any]:
    """Per variant and language: T2A / A2T R@1 statistics; consistency and zero-shot."""
    summary: dict[str, Any] = {}
    for variant, runs in results.items():
        entry: dict[str, Any] = {"seeds": sorted(runs), "languages": {}}
        for language in (*LANGUAGES, "mean"):
            per_seed = [
                r["retrieval_per_language"][language] for r in runs.values() if "retrieval_per_language" in r
            ]
            if not per_seed:
                continue
            stats = {
                key: seed_statistics([m[key] for m in per_seed]) for key in ("t2a_R@1", "a2t_R@1", "t2a_R@10")
            }
            zero_shot = [
                r["zero_shot"]["per_language"][language]["accuracy"]
                for r in runs.values()
                if language in ((r.get("zero_shot") or {}).get("per_language") or {})
            ]
            if zero_shot:
                stats["zero_shot"] = seed_statistics(zero_shot)
            stats["by_seed"] = {
                seed: _mean_r1(r["retrieval_per_language"][language])
                for seed, r in runs.items()
                if "retrieval_per_language" in r
            }
            entry["languages"][language] = stats
        consistency = [
            r["crosslingual_consistency"] for r in runs.values() if r.get("crosslingual_consistency")
        ]
        if consistency:
            entry["top1_agreement"] = seed_statistics([c["top1_agreement"] for c in consistency])
            entry["rank_correlation"] = seed_statistics([c["rank_correlation"] for c in consistency])
        chance = [
            r["retrieval_per_language"]["en"]["chance"]
            for r in runs.values()
            if "retrieval_per_language" in r
        ]
        if chance:
            entry["chance"] = {k: chance[0][k] for k in ("t2a_R@1", "a2t_R@1")}
        summary[variant] = entry
    return summary


def render(summary: dict[str, Any], english_only: dict[str, Any]) -> str:
    lines = ["| language | " + " | ".join(f"{v} T2A / A2T R@1" for v in summary)
             + " | DynSVR - InfoNCE, mean R@1 (seeds won) | "
             + " | ".join(f"English-only {v} T2A / A2T R@1" for v in english_only) + " |",
             "|---" * (len(summary) + 2 + len(english_only)) + "|"]  # fmt: skip
    base, svr = VARIANTS
    for language in (*LANGUAGES, "mean"):
        cells = []
        for variant in summary:
            stats = summary[variant]["languages"].get(language, {})
            cells.append(f"{_cell(stats.get('t2a_R@1'))} / {_cell(stats.get('a2t_R@1'))}")
        paired = "-"
        if base in summary and svr in summary and language in summary[base]["languages"]:
            a = summary[base]["languages"][language]["by_seed"]
            b = summary.get(svr, {}).get("languages", {}).get(language, {}).get("by_seed", {})
            seeds = sorted(set(a) & set(b))
            if seeds:
                diffs = [b[s] - a[s] for s in seeds]
                paired = (
                    f"{statistics.fmean(diffs):+.1f} ({sum(d > 0 for d in diffs)}/{len(diffs)}, "
                    f"p {sign_flip_p_value(diffs):.2f})"
                )
        contrasts = []
        for variant in english_only:
            english = english_only[variant].get("languages", {}).get(language, {})
            contrasts.append(
                f"{_cell(english.get('t2a_R@1'))} / {_cell(english.get('a2t_R@1'))}" if english else "-"
            )
        lines.append(
            f"| {language} | " + " | ".join(cells) + f" | {paired} | " + " | ".join(contrasts) + " |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--english_seeds", type=int, default=1, help="seeds of the English-only contrast")
    p.add_argument("--max_steps", type=int, default=1200)
    p.add_argument("--preset", default="small", choices=["tiny", "small"])
    p.add_argument("--demo_num_clips", type=int, default=None)
    p.add_argument("--per_device_train_batch_size", type=int, default=None)
    p.add_argument("--warmup_steps", type=int, default=None)
    p.add_argument("--dataloader_num_workers", type=int, default=None)
    p.add_argument("--cache_dir", type=Path, default=REPO_ROOT / ".cache" / "supclap")
    p.add_argument("--out_dir", type=Path, default=REPO_ROOT / "outputs" / "bench_multilingual")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--smoke", action="store_true", help="tiny preset, 5 steps, 80 clips, 1 seed")
    args = p.parse_args(argv)
    if args.smoke:
        args.preset, args.max_steps, args.seeds = "tiny", 5, 1
        args.demo_num_clips = args.demo_num_clips or 80
        args.per_device_train_batch_size, args.warmup_steps = 8, 1
    args.report_only, args.jobs = False, 1
    args.extra = ["--demo_languages", *LANGUAGES]
    print(
        f"# bench_multilingual: {' '.join(sys.argv)}; {platform.platform()}, {os.cpu_count()} CPUs",
        flush=True,
    )

    results: dict[str, dict[int, dict[str, Any]]] = {v: {} for v in VARIANTS}
    for seed in range(args.seeds):
        for variant in VARIANTS:
            outcome = run_one(variant, seed, args, None)
            metrics = run_dir_for(args, variant, seed) / "metrics.json"
            status = "FAILED " + outcome["error"][:300] if "error" in outcome else "ok"
            print(f"# {variant} seed {seed}: {status}", flush=True)
            if metrics.exists():
                results[variant][seed] = json.loads(metrics.read_text())["test"]
    clips = args.demo_num_clips or 2400
    corpus = args.cache_dir / f"demo_corpus_{clips}_{'-'.join(LANGUAGES)}"
    english: dict[str, dict[int, dict[str, Any]]] = {variant: {} for variant in VARIANTS}
    for seed in range(args.english_seeds):
        for variant in VARIANTS:
            evaluated = english_only_eval(args, variant, seed, corpus)
            if evaluated is not None:
                english[variant][seed] = evaluated
    summary, english_summary = collect(results), collect(english)
    table = render(summary, english_summary)
    print(table)
    if chance := summary.get(VARIANTS[0], {}).get("chance"):
        print(
            f"# chance (English test captions): T2A R@1 {chance['t2a_R@1']:.2f}, "
            f"A2T R@1 {chance['a2t_R@1']:.2f}"
        )
    for variant, entry in summary.items():
        if "top1_agreement" in entry:
            print(f"# {variant}: cross-lingual top-1 agreement {_cell(entry['top1_agreement'])} %, "
                  f"rank correlation {entry['rank_correlation']['mean']:.3f}")  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "argv": sys.argv,
            "budget": budget_tag(args),
            "platform": platform.platform(),
            "variants": summary,
            "english_only": english_summary,
            "table": table,
            "train_seconds": {v: [train_seconds(args, v, s) for s in sorted(results[v])] for v in VARIANTS},
        }
        args.json.write_text(json.dumps(payload, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
