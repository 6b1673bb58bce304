"""Optimization-drift diagnostics (the paper's measures) and the plots saved with every run.

Drift, as SupCLAP measures it: for each text anchor t_i, the update it receives is
``g_i = -dL/dt_i``; the pull direction is ``u_i = (a_i - t_i) / ||a_i - t_i||``. Without drift
the update points along the pull (cosine 1); the part of the negatives' push perpendicular to u_i
turns it sideways. We report, over a fixed probe batch:

* ``cosine``: mean cos(g_i, u_i) under the full training loss (higher = less drift);
* ``perp_parallel_ratio``: mean ``||(I - u u^T) g_i|| / |u^T g_i|`` (lower = less drift);
* the same two under the base loss alone (``base_cosine``, ``base_perp_parallel_ratio``), so a
  run shows what SVR changes on the same embeddings;
* radius statistics: mean, spread, how often R lies outside [0, D] (constraint active), and the
  histogram of R / D (``radius_over_distance``, :data:`RADIUS_OVER_DISTANCE_EDGES`);
* per tower, what the embeddings look like (:func:`representation_measures`): alignment and uniformity
  (Wang & Isola 2020), effective rank and mean pairwise cosine, to tell a collapsing tower from one that
  spreads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..lora import active_loss_fn
from ..model.losses import SupClapLoss, pair_distance


def pull_directions(text: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
    difference = audio - text
    return difference / difference.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def drift_of_gradient(update: torch.Tensor, pull: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-anchor cosine to the pull and perpendicular/parallel ratio of ``update`` (n, d)."""
    parallel = (update * pull).sum(dim=-1)
    perpendicular = (update - parallel.unsqueeze(-1) * pull).norm(dim=-1)
    cosine = parallel / update.norm(dim=-1).clamp_min(1e-12)
    return {"cosine": cosine, "perp_parallel_ratio": perpendicular / parallel.abs().clamp_min(1e-12)}


def drift_measures(
    loss_fn: SupClapLoss,
    text: torch.Tensor,
    audio: torch.Tensor,
    scale_t: torch.Tensor,
    scale_a: torch.Tensor,
) -> dict[str, float]:
    """The drift measures of one batch of (detached) embeddings under ``loss_fn``."""
    text = text.detach().float().clone().requires_grad_(True)
    audio = audio.detach().float()
    scale_t, scale_a = scale_t.detach().float(), scale_a.detach().float()
    pull = pull_directions(text.detach(), audio)
    gather = loss_fn.gather_across_processes
    loss_fn.gather_across_processes = False  # every process probes the same batch: no gathering
    try:
        terms = loss_fn(text, audio, scale_t, scale_a)
        (total_grad,) = torch.autograd.grad(terms["loss"], text, retain_graph=True)
        (base_grad,) = torch.autograd.grad(terms["contrastive"], text)
    finally:
        loss_fn.gather_across_processes = gather
    total = drift_of_gradient(-total_grad, pull)
    base = drift_of_gradient(-base_grad, pull)
    measures = {
        "cosine": float(total["cosine"].mean()),
        "perp_parallel_ratio": float(total["perp_parallel_ratio"].median()),
        "base_cosine": float(base["cosine"].mean()),
        "base_perp_parallel_ratio": float(base["perp_parallel_ratio"].median()),
    }
    for name in ("radius_mean", "radius_std", "radius_constraint_active"):
        if name in terms:
            measures[name] = float(terms[name])
    return measures


def representation_measures(text: torch.Tensor, audio: torch.Tensor) -> dict[str, float]:
    """Geometry of a batch of L2-normalised paired embeddings (n, d), per tower.

    * ``alignment``: mean ||t_i - a_i||^2 over pairs (lower = positives closer);
    * ``{tower}_uniformity``: log mean exp(-2 ||x_i - x_j||^2) over pairs i != j (lower = more spread;
      -4 is the limit of a uniform sphere, 0 a collapsed tower);
    * ``{tower}_effective_rank``: exp of the entropy of the normalised singular values of the centred
      embeddings (Roy & Vetterli 2007): 1 when they vary along one direction, up to min(n, d);
    * ``{tower}_mean_cosine``: mean cosine of distinct pairs (1 = collapsed).
    """
    text, audio = text.detach().float(), audio.detach().float()
    measures = {"alignment": float((text - audio).pow(2).sum(-1).mean())}
    n = text.shape[0]
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=text.device)
    for tower, x in (("text", text), ("audio", audio)):
        cosine = x @ x.t()
        squared_distance = (2 - 2 * cosine).clamp_min(0)[off_diagonal]
        measures[f"{tower}_uniformity"] = float(
            torch.logsumexp(-2 * squared_distance, 0) - math.log(n * n - n)
        )
        singular = torch.linalg.svdvals(x - x.mean(0, keepdim=True))
        p = singular / singular.sum().clamp_min(1e-12)
        entropy = -(p * p.clamp_min(1e-12).log()).sum()
        measures[f"{tower}_effective_rank"] = float(entropy.exp())
        measures[f"{tower}_mean_cosine"] = float(cosine[off_diagonal].mean())
    return measures


def radius_values(loss_fn: SupClapLoss, text: torch.Tensor, audio: torch.Tensor) -> torch.Tensor | None:
    """Raw radii R of the text anchors of a batch (for the histogram); None without SVR."""
    if loss_fn.radius is None:
        return None
    with torch.no_grad():
        positive_index = torch.arange(text.shape[0], device=text.device)
        radius = loss_fn.radius(text @ audio.t(), positive_index, pair_distance(text, audio))
        return radius.float().cpu()


# Bins of R / D in the probe's radius histogram: below 0, [0, 0.1), ..., [0.9, 1), and R >= D (saturated:
# there the support vector is the positive itself).
RADIUS_OVER_DISTANCE_EDGES = tuple(i / 10 for i in range(11))


def radius_over_distance_histogram(
    loss_fn: SupClapLoss, text: torch.Tensor, audio: torch.Tensor
) -> list[float] | None:
    """Share of the batch's pairs in each bin of raw R / D (:data:`RADIUS_OVER_DISTANCE_EDGES`, 12 bins)."""
    radii = radius_values(loss_fn, text, audio)
    if radii is None:
        return None
    distance = pair_distance(text.detach().float(), audio.detach().float()).cpu()
    ratio = radii.float() / distance.clamp_min(1e-12)
    bins = torch.bucketize(ratio, torch.tensor(RADIUS_OVER_DISTANCE_EDGES), right=True)
    counts = torch.bincount(bins, minlength=len(RADIUS_OVER_DISTANCE_EDGES) + 1)
    return (counts.float() / ratio.numel()).tolist()


class DriftProbe:
    """A fixed batch on which drift is measured during training (``TrainingSource.probe_batch``)."""

    def __init__(self, batch: dict[str, Any]) -> None:
        self.batch = {k: v for k, v in batch.items() if k != "return_loss"}

    @torch.no_grad()
    def embeddings(self, model) -> tuple[torch.Tensor, torch.Tensor]:
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in self.batch.items()}
        out = model(**batch, return_loss=False)
        model.train(was_training)
        return out.text_embeds, out.audio_embeds

    def measure(self, model) -> dict[str, float]:
        text, audio = self.embeddings(model)
        scale_t, scale_a = model.logit_scales()
        loss_fn = active_loss_fn(model)
        measures = {
            **drift_measures(loss_fn, text, audio, scale_t, scale_a),
            **representation_measures(text, audio),
        }
        histogram = radius_over_distance_histogram(loss_fn, text, audio)
        if histogram is not None:
            measures["radius_over_distance"] = histogram
        return measures

    def radii(self, model) -> torch.Tensor | None:
        """The probe batch's radii R, or None without SVR (then the batch is not even forwarded)."""
        loss_fn = active_loss_fn(model)
        if loss_fn.radius is None:
            return None
        text, audio = self.embeddings(model)
        return radius_values(loss_fn, text, audio)


def _series(rows: Sequence[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    points = [(row["step"], row[key]) for row in rows if key in row and row[key] is not None]
    return [p[0] for p in points], [p[1] for p in points]


def save_training_plots(results: dict[str, Any], output_dir: str | Path) -> list[Path]:
    """PNG plots: training/validation curves, drift over steps, radius histogram (where recorded)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    output_dir = Path(output_dir)
    state = results.get("train_state", {})
    history, validation = results.get("history", []), state.get("validation", [])
    drift, radii = state.get("drift", []), state.get("radius_values")
    written: list[Path] = []

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for key in ("loss", "loss_contrastive", "loss_svr"):
        steps, values = _series(history, key)
        if steps:
            axes[0].plot(steps, values, label=key)
    axes[0].set(xlabel="step", ylabel="loss", title="training loss")
    axes[0].legend()
    for key in ("t2a_R@1", "a2t_R@1", "mean_R@1"):
        steps, values = _series(validation, key)
        if steps:
            axes[1].plot(steps, values, marker="o", label=key)
    axes[1].set(xlabel="step", ylabel="%", title="validation recall")
    if validation:
        axes[1].legend()
    fig.tight_layout()
    written.append(output_dir / "training_curves.png")
    fig.savefig(written[-1], dpi=100)
    plt.close(fig)

    if drift:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for key, label in (("cosine", "training loss"), ("base_cosine", "base loss only")):
            axes[0].plot(*_series(drift, key), label=label)
        axes[0].set(xlabel="step", ylabel="cos(update, pull)", title="anchor update vs pull direction")
        axes[0].legend()
        for key, label in (
            ("perp_parallel_ratio", "training loss"),
            ("base_perp_parallel_ratio", "base loss only"),
        ):
            axes[1].plot(*_series(drift, key), label=label)
        axes[1].set(xlabel="step", ylabel="median |perp| / |parallel|", title="sideways push")
        axes[1].legend()
        fig.tight_layout()
        written.append(output_dir / "drift.png")
        fig.savefig(written[-1], dpi=100)
        plt.close(fig)

    if any("text_uniformity" in row for row in drift):
        fig, axes = plt.subplots(1, 4, figsize=(18, 4))
        panels = (
            ("uniformity", "log mean exp(-2 d^2) (lower = spread)"),
            ("effective_rank", "effective rank"),
            ("mean_cosine", "mean pairwise cosine"),
        )
        for ax, (measure, ylabel) in zip(axes, panels):
            for tower in ("text", "audio"):
                ax.plot(*_series(drift, f"{tower}_{measure}"), label=tower)
            ax.set(xlabel="step", ylabel=ylabel, title=measure.replace("_", " "))
            ax.legend()
        axes[3].plot(*_series(drift, "alignment"))
        axes[3].set(xlabel="step", ylabel="mean ||t - a||^2", title="alignment (lower = closer)")
        fig.tight_layout()
        written.append(output_dir / "representation.png")
        fig.savefig(written[-1], dpi=100)
        plt.close(fig)

    histograms = [
        (row["step"], row["radius_over_distance"]) for row in drift if "radius_over_distance" in row
    ]
    if histograms:
        fig, ax = plt.subplots(figsize=(7, 4))
        shares = torch.tensor([h for _, h in histograms]).t()  # (bins, probes)
        image = ax.imshow(shares, aspect="auto", origin="lower", vmin=0, vmax=1, cmap="viridis")
        ax.set_xticks(range(len(histograms)), [str(step) for step, _ in histograms], rotation=45, fontsize=7)
        labels = ["< 0"] + [
            f"{lo:.1f}-{hi:.1f}" for lo, hi in zip(RADIUS_OVER_DISTANCE_EDGES, RADIUS_OVER_DISTANCE_EDGES[1:])
        ]
        ax.set_yticks(range(len(labels) + 1), [*labels, ">= 1 (R = D)"], fontsize=7)
        ax.set(xlabel="step", ylabel="R / D", title="share of probe pairs per R / D bin")
        fig.colorbar(image, ax=ax)
        fig.tight_layout()
        written.append(output_dir / "radius_over_distance.png")
        fig.savefig(written[-1], dpi=100)
        plt.close(fig)

    if radii:
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.hist(radii, bins=30)
        ax.set(
            xlabel="radius R", ylabel="pairs", title="semantic radius on the probe batch (end of training)"
        )
        fig.tight_layout()
        written.append(output_dir / "radius_histogram.png")
        fig.savefig(written[-1], dpi=100)
        plt.close(fig)
    return written
