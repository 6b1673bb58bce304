#!/usr/bin/env python
"""Why plain InfoNCE stalls on the demo corpus: each tower's geometry over training, per recipe.

Every recipe is the default demo job (``train_supclap.py``: small preset, 1,200 steps, batch 32, seed 0)
with plain InfoNCE and one change to the recipe (learning rate, logit-scale initialisation, the text
tower's initialisation or depth); ``dynbi``, ``spreadbi`` and ``ratiobi`` are the default recipe with
bilateral DynamicSVR, the spreading control and the ratio radius, for reference. The recipes never
change the loss. Each run validates every 300 steps and probes a fixed training batch every 100
steps (``--drift_probe_steps 100``), which records per tower
(``modeling_supclap.training.diagnostics.representation_measures``): alignment, uniformity, effective rank
and mean pairwise cosine.

Output: a markdown table (test R@1 both directions, zero-shot accuracy, and the probe's measures at
step 100 and at the end), a JSON summary and a PNG of text/audio effective rank and mean cosine over
training, one line per recipe.

Usage::

    python benchmarks/diagnose_recipe.py --jobs 2          # every recipe (~5 min per run, 2 at a time)
    python benchmarks/diagnose_recipe.py --report_only     # table/plot from the finished runs
    python benchmarks/diagnose_recipe.py --smoke           # 2 recipes, tiny preset, a few steps

Resumable: a run whose ``metrics.json`` exists is not run again.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

INFONCE = ["--base_loss", "infonce", "--svr_mode", "none"]


def _bilateral(svr_mode: str) -> list[str]:
    return ["--base_loss", "infonce", "--svr_mode", svr_mode, "--svr_bilateral", "True"]


DYNBI = _bilateral("dynamic")
SIGLIP = ["--base_loss", "siglip", "--svr_mode", "none"]
SIGLIP_DYNBI = ["--base_loss", "siglip", "--svr_mode", "dynamic", "--svr_bilateral", "True"]
TOWERS = ("text_config", "audio_config")
# name -> (train_supclap.py flags, overrides of the preset's sub-configs {sub_config: {field: value}}).
_RECIPES: dict[str, tuple[list[str], dict[str, dict[str, Any]]]] = {
    "infonce": (INFONCE, {}),
    "lr3e-4": ([*INFONCE, "--learning_rate", "3e-4"], {}),
    "lr3e-3": ([*INFONCE, "--learning_rate", "3e-3"], {}),
    "scale30": ([*INFONCE, "--logit_scale_init_value", "30"], {}),
    # ClapTextModel initialises its linears with std initializer_factor / sqrt(hidden * 2 layers): at 1
    # the small preset's text tower maps every caption to nearly one vector (mean cosine 0.999 at init).
    "tfac3": (INFONCE, {"text_config": {"initializer_factor": 3.0}}),
    "tlayers1": (INFONCE, {"text_config": {"num_hidden_layers": 1}}),
    # Dropout (0.1 in both towers) is large noise beside the small input-dependent part of the text output.
    "nodrop": (
        INFONCE,
        {t: {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0} for t in TOWERS},
    ),
    "dynbi": (DYNBI, {}),
    # What the saturated radius reduces to (R = D), and a radius that never saturates (R = rho D).
    "spreadbi": (_bilateral("spreading"), {}),
    "ratiobi": (_bilateral("ratio"), {}),
    "staticbi": (_bilateral("static"), {}),
    # A radius rule with nothing to learn that aims at a margin instead of growing to D (docs/METHOD.md).
    "marginbi": (_bilateral("margin"), {}),
    "siglip": (SIGLIP, {}),
    "siglipdynbi": (SIGLIP_DYNBI, {}),
    # Mean-pooled text: the first-token pooler sees the same token in every caption (collapsed at init).
    "meanpool": ([*INFONCE, "--text_pooling", "mean"], {}),
    "meanpool_dynbi": ([*DYNBI, "--text_pooling", "mean"], {}),
    "meanpool_siglip": ([*SIGLIP, "--text_pooling", "mean"], {}),
    # The drift comparison on the current recipe (the small preset mean-pools by default).
    "meanpool_staticbi": ([*_bilateral("static"), "--text_pooling", "mean"], {}),
    "meanpool_spreadbi": ([*_bilateral("spreading"), "--text_pooling", "mean"], {}),
    "meanpool_ratiobi": ([*_bilateral("ratio"), "--text_pooling", "mean"], {}),
    "meanpool_siglipdynbi": ([*SIGLIP_DYNBI, "--text_pooling", "mean"], {}),
    # The base losses at their own tuned rate (docs/BENCHMARKS.md, tuned baselines) rather than 1e-3.
    "meanpool_lr6e-4": ([*INFONCE, "--text_pooling", "mean", "--learning_rate", "6e-4"], {}),
    "meanpool_siglip_lr6e-4": ([*SIGLIP, "--text_pooling", "mean", "--learning_rate", "6e-4"], {}),
    # Training the DynamicSVR predictor without its climb to R = D (benchmarks/predictor_rules.py).
    "meanpool_dynbi_beta1": ([*DYNBI, "--constraint_weight", "1", "--text_pooling", "mean"], {}),
    "meanpool_boundedbi": ([*_bilateral("bounded"), "--text_pooling", "mean"], {}),
    "meanpool_margintargetbi": ([*_bilateral("margin_target"), "--text_pooling", "mean"], {}),
    "meanpool_marginbi": ([*_bilateral("margin"), "--text_pooling", "mean"], {}),
}
# Every recipe without a pooling of its own was measured with CLAP's first-token pooler (the small
# preset's default until mean pooling replaced it): it keeps that pooler, so its numbers reproduce.
RECIPES = {
    name: (flags if "--text_pooling" in flags else [*flags, "--text_pooling", "pooler"], overrides)
    for name, (flags, overrides) in _RECIPES.items()
}
SVR_REFERENCES = (
    *("dynbi", "spreadbi", "ratiobi", "staticbi", "marginbi", "siglipdynbi", "meanpool_dynbi"),
    *("meanpool_dynbi_beta1", "meanpool_boundedbi", "meanpool_margintargetbi", "meanpool_marginbi"),
    *("meanpool_staticbi", "meanpool_spreadbi", "meanpool_ratiobi", "meanpool_siglipdynbi"),
)
# The paper's drift measures on the probe batch, under each run's own training loss (diagnostics.py).
DRIFT_KEYS = ("cosine", "perp_parallel_ratio", "base_cosine", "base_perp_parallel_ratio")
PROBE_KEYS = (
    "alignment",
    "text_uniformity",
    "audio_uniformity",
    "text_effective_rank",
    "audio_effective_rank",
    "text_mean_cosine",
    "audio_mean_cosine",
)


def train_arguments(name: str, run_dir: Path, args: argparse.Namespace) -> list[str]:
    flags, _ = RECIPES[name]
    return [
        "--preset", args.preset, "--max_steps", str(args.max_steps), "--seed", str(args.seed),
        "--eval_steps", str(args.eval_steps), "--save_steps", "0", "--report_to", "none",
        "--drift_probe_steps", str(args.probe_steps), "--dataloader_num_workers", "0",
        "--output_dir", str(run_dir), *flags, *args.extra,
    ]  # fmt: skip


def train_patched(overrides: dict[str, dict[str, Any]], argv: list[str]) -> None:
    """``train_supclap.py argv`` with the presets' sub-configs updated by ``overrides`` (and the
    experimental predictor rules of ``predictor_rules.py`` registered)."""
    import predictor_rules  # noqa: F401  (registers its svr modes)

    import modeling_supclap.model.configuration_supclap as configuration
    from modeling_supclap.cli.train import main

    for preset, make in list(configuration.PRESETS.items()):

        def patched(make=make) -> dict[str, Any]:
            sub_configs = make()
            for sub_config, fields in overrides.items():
                sub_configs[sub_config].update(fields)
            return sub_configs

        configuration.PRESETS[preset] = patched
    main(argv)


def run_one(name: str, args: argparse.Namespace) -> str:
    run_dir = args.out_dir / name
    if (run_dir / "metrics.json").exists():
        return f"{name}: done before"
    if args.report_only:
        return f"{name}: not run"
    _, overrides = RECIPES[name]
    cmd = [
        sys.executable,
        __file__,
        "--_train",
        json.dumps(overrides),
        "--",
        *train_arguments(name, run_dir, args),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out_dir / f"{name}.log", "w") as log:
        rc = subprocess.run(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=args.timeout
        ).returncode
    if rc != 0:
        raise RuntimeError(f"{name} failed (exit {rc}); see {args.out_dir / (name + '.log')}")
    return f"{name}: trained"


def summarise(name: str, args: argparse.Namespace) -> dict[str, Any] | None:
    path = args.out_dir / name / "metrics.json"
    if not path.exists():
        return None
    results = json.loads(path.read_text())
    drift = results["train_state"]["drift"]
    retrieval, zero_shot = results["test"]["retrieval"], results["test"]["zero_shot"]
    return {
        "flags": RECIPES[name][0],
        "sub_config_overrides": RECIPES[name][1],
        "t2a_R@1": retrieval["t2a_R@1"],
        "a2t_R@1": retrieval["a2t_R@1"],
        "zero_shot_acc": zero_shot["accuracy"],
        "first_probe": {"step": drift[0]["step"], **{k: drift[0][k] for k in PROBE_KEYS}} if drift else None,
        "last_probe": {"step": drift[-1]["step"], **{k: drift[-1][k] for k in PROBE_KEYS}} if drift else None,
        "probes": [
            {"step": row["step"], **{k: row[k] for k in (*PROBE_KEYS, *DRIFT_KEYS) if k in row}}
            for row in drift
        ],
        # Share of probe pairs per R / D bin (training/diagnostics.py: RADIUS_OVER_DISTANCE_EDGES).
        "radius_over_distance": [
            {"step": row["step"], "shares": row["radius_over_distance"]}
            for row in drift
            if "radius_over_distance" in row
        ],
    }


def markdown(summary: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| recipe | T2A R@1 | A2T R@1 | zero-shot | text mean cos (first probe -> end) | text eff. rank "
        "(end) | audio mean cos (end) | audio eff. rank (end) | text / audio uniformity (end) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in summary.items():
        first, last = row["first_probe"], row["last_probe"]
        lines.append(
            f"| {name} | {row['t2a_R@1']:.1f} | {row['a2t_R@1']:.1f} | {row['zero_shot_acc']:.1f} | "
            f"{first['text_mean_cosine']:.3f} -> {last['text_mean_cosine']:.3f} | "
            f"{last['text_effective_rank']:.1f} | {last['audio_mean_cosine']:.3f} | "
            f"{last['audio_effective_rank']:.1f} | "
            f"{last['text_uniformity']:.2f} / {last['audio_uniformity']:.2f} |"
        )
    return "\n".join(lines)


def plot(summary: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    panels = [
        (f"{t}_{m}", f"{t}: {m.replace('_', ' ')}")
        for m in ("effective_rank", "mean_cosine")
        for t in ("text", "audio")
    ]
    for ax, (key, title) in zip(axes, panels):
        for name, row in summary.items():
            steps = [p["step"] for p in row["probes"]]
            ax.plot(
                steps,
                [p[key] for p in row["probes"]],
                label=name,
                linestyle="--" if name in SVR_REFERENCES else "-",
            )
        ax.set(xlabel="step", title=title)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def drift_plot(summary: dict[str, dict[str, Any]], path: Path) -> None:
    """One figure, one line per recipe: cos(update, pull) and the perpendicular/parallel ratio of the
    update over training, on the same probe batch (the paper's drift claim: SVR raises the first and
    lowers the second)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for name, row in summary.items():
        probes = [p for p in row["probes"] if "cosine" in p]
        steps = [p["step"] for p in probes]
        style = "--" if name in SVR_REFERENCES else "-"
        axes[0].plot(steps, [p["cosine"] for p in probes], style, label=name)
        axes[1].plot(steps, [p["perp_parallel_ratio"] for p in probes], style, label=name)
    axes[0].set(xlabel="step", title="cos(update, pull), mean over probe pairs (higher: less drift)")
    axes[1].set(
        xlabel="step", yscale="log", title="||perpendicular|| / |parallel| of the update (lower: less drift)"
    )
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def drift_markdown(summary: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| recipe | cos(update, pull): step 100 / mid / end | perp/parallel: step 100 / mid / end |",
        "|---|---|---|",
    ]
    for name, row in summary.items():
        probes = [p for p in row["probes"] if "cosine" in p]
        if not probes:
            continue
        picks = [probes[0], probes[len(probes) // 2], probes[-1]]
        cosines = " / ".join(f"{p['cosine']:.3f}" for p in picks)
        ratios = " / ".join(f"{p['perp_parallel_ratio']:.2f}" for p in picks)
        lines.append(f"| {name} | {cosines} | {ratios} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    p.add_argument("--preset", default="small", choices=["tiny", "small"])
    p.add_argument("--max_steps", type=int, default=1200)
    p.add_argument("--eval_steps", type=int, default=300)
    p.add_argument("--probe_steps", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=2, help="runs side by side")
    p.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of every run")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per run")
    p.add_argument("--out_dir", type=Path, default=REPO_ROOT / "outputs" / "recipe_diagnosis")
    p.add_argument("--json", type=Path, default=REPO_ROOT / "docs" / "results" / "recipe_diagnosis.json")
    p.add_argument("--plot", type=Path, default=REPO_ROOT / "docs" / "results" / "recipe_diagnosis.png")
    p.add_argument(
        "--drift_plot", type=Path, default=None, help="also a PNG of cos(update, pull) and perp/parallel"
    )
    p.add_argument("--report_only", action="store_true", help="run nothing; summarise the finished runs")
    p.add_argument("--smoke", action="store_true", help="2 recipes, tiny preset, 4 steps (for the tests)")
    p.add_argument("extra", nargs="*", help="after '--': more train_supclap.py arguments for every run")
    args = p.parse_args(argv)
    if args.smoke:
        args.recipes, args.preset, args.max_steps, args.eval_steps, args.probe_steps = (
            ["infonce", "tfac3"], "tiny", 4, 4, 2,
        )  # fmt: skip
        args.extra = [
            *args.extra,
            "--per_device_train_batch_size",
            "8",
            "--demo_num_clips",
            "80",
            "--warmup_steps",
            "1",
        ]
    return args


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--_train"]:  # one run, in this subprocess
        train_patched(json.loads(argv[1]), argv[3:])
        return
    args = parse_args(argv)
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for message in pool.map(lambda name: run_one(name, args), args.recipes):
            print(f"# {message}", flush=True)
    summary = {name: row for name in args.recipes if (row := summarise(name, args)) is not None}
    if not summary:
        print("no finished runs")
        return
    print(markdown(summary))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"argv": argv, "recipes": summary}, indent=1))
    plot(summary, args.plot)
    print(f"# wrote {args.json} and {args.plot}")
    if args.drift_plot:
        print(drift_markdown(summary))
        drift_plot(summary, args.drift_plot)
        print(f"# wrote {args.drift_plot}")


if __name__ == "__main__":
    main()
