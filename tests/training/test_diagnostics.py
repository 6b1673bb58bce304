"""Drift measures on a hand-built example, and the plots saved with a run."""

from __future__ import annotations

import math

import pytest
import torch

from modeling_supclap.model.losses import InfoNCELoss, SupClapLoss
from modeling_supclap.training.diagnostics import (
    drift_measures,
    drift_of_gradient,
    pull_directions,
    radius_over_distance_histogram,
    representation_measures,
    save_training_plots,
)


def test_drift_on_hand_built_three_vectors():
    """t = (1, 0), positive a+ = (0, 1), negative a- = (0, -1), scale s.

    By hand: both logits are s t.a = 0, so P+ = P- = 1/2 and dL/dt = s[(P+ - 1) a+ + P- a-] = -2 s P- (0, 1):
    the update
    g = 2 s P- (0, 1). The pull is u = (-1, 1)/sqrt(2): cos(g, u) = 1/sqrt(2), and the perpendicular and
    parallel parts of g both have length 2 s P- / sqrt(2): ratio 1.
    """
    scale = 3.0
    anchor = torch.tensor([[1.0, 0.0]], dtype=torch.float64, requires_grad=True)
    candidates = torch.tensor([[0.0, 1.0], [0.0, -1.0]], dtype=torch.float64)
    loss = InfoNCELoss()(
        anchor, candidates, torch.tensor([0]), torch.tensor(scale, dtype=torch.float64)
    ).sum()
    (grad,) = torch.autograd.grad(loss, anchor)
    p_negative = 0.5
    torch.testing.assert_close(-grad[0], torch.tensor([0.0, 2 * scale * p_negative], dtype=torch.float64))
    pull = pull_directions(anchor.detach(), candidates[:1])
    torch.testing.assert_close(pull[0], torch.tensor([-1.0, 1.0], dtype=torch.float64) / math.sqrt(2))
    drift = drift_of_gradient(-grad, pull)
    assert float(drift["cosine"][0]) == pytest.approx(1 / math.sqrt(2))
    assert float(drift["perp_parallel_ratio"][0]) == pytest.approx(1.0)


def test_svr_lowers_the_sideways_push_on_the_same_embeddings():
    generator = torch.Generator().manual_seed(0)
    text = torch.nn.functional.normalize(torch.randn(16, 8, generator=generator), dim=-1)
    audio = torch.nn.functional.normalize(text + 0.7 * torch.randn(16, 8, generator=generator), dim=-1)
    loss_fn = SupClapLoss(svr_mode="static", radius_init=0.5, svr_bilateral=False)
    measures = drift_measures(loss_fn, text, audio, torch.tensor(14.0), torch.tensor(14.0))
    assert set(measures) >= {
        "cosine",
        "perp_parallel_ratio",
        "base_cosine",
        "base_perp_parallel_ratio",
        "radius_mean",
        "radius_constraint_active",
    }
    # The SVR term adds a push whose perpendicular part is scaled by (1 - R/D) < 1: less drift overall.
    assert measures["perp_parallel_ratio"] < measures["base_perp_parallel_ratio"]
    assert measures["cosine"] > measures["base_cosine"]


def test_representation_measures_of_a_collapsed_and_an_orthonormal_tower():
    """Collapsed text (every caption the same vector) vs audio on an orthonormal basis, by hand.

    Collapsed: distinct pairs at distance 0, so uniformity log mean exp(0) = 0, mean cosine 1, and the centred
    embeddings are zero: no direction at all. Orthonormal e_1..e_n: squared distance 2 between any two, so
    uniformity -4 and mean cosine 0; centring leaves n - 1 equal singular values: effective rank n - 1.
    Alignment: ||e_1 - e_i||^2 is 0 for i = 1 and 2 otherwise, so the mean is 2 (n - 1) / n.
    """
    n = 6
    audio = torch.eye(n, dtype=torch.float64)
    text = audio[:1].repeat(n, 1)
    measures = representation_measures(text, audio)
    assert measures["text_uniformity"] == pytest.approx(0.0)
    assert measures["text_mean_cosine"] == pytest.approx(1.0)
    assert measures["audio_uniformity"] == pytest.approx(-4.0)
    assert measures["audio_mean_cosine"] == pytest.approx(0.0, abs=1e-12)
    assert measures["audio_effective_rank"] == pytest.approx(n - 1)
    assert measures["alignment"] == pytest.approx(2 * (n - 1) / n)


def test_effective_rank_counts_the_directions_embeddings_vary_along():
    generator = torch.Generator().manual_seed(0)
    coefficients = torch.randn(64, 2, generator=generator, dtype=torch.float64)
    basis = torch.linalg.qr(torch.randn(16, 16, generator=generator, dtype=torch.float64))[0][:, :2]
    flat = torch.nn.functional.normalize(coefficients @ basis.t(), dim=-1)
    spread = torch.nn.functional.normalize(
        torch.randn(64, 16, generator=generator, dtype=torch.float64), dim=-1
    )
    flat_rank = representation_measures(flat, flat)["text_effective_rank"]
    spread_rank = representation_measures(spread, spread)["text_effective_rank"]
    assert 1.5 < flat_rank <= 2.0 + 1e-9  # unit vectors in a 2-d plane
    assert spread_rank > 12
    assert representation_measures(spread, spread)["alignment"] == pytest.approx(0.0)


@pytest.mark.parametrize(
    ("settings", "full_bin"),
    [
        (dict(svr_mode="ratio", radius_ratio=0.55), 6),  # R = 0.55 D: the [0.5, 0.6) bin
        (dict(svr_mode="spreading"), 11),  # R = D: saturated
        (dict(svr_mode="static", radius_init=10.0), 11),  # R beyond D (raw radii, before the clamp)
        (dict(svr_mode="static", radius_init=0.0), 0),  # trained below 0 (set below)
    ],
)
def test_radius_over_distance_histogram_bins_each_pair(settings, full_bin):
    generator = torch.Generator().manual_seed(0)
    text = torch.nn.functional.normalize(torch.randn(16, 8, generator=generator), dim=-1)
    audio = torch.nn.functional.normalize(torch.randn(16, 8, generator=generator), dim=-1)
    loss_fn = SupClapLoss(**settings)
    if full_bin == 0:
        with torch.no_grad():
            loss_fn.radius.radius.fill_(-0.5)
    histogram = radius_over_distance_histogram(loss_fn, text, audio)
    assert len(histogram) == 12 and sum(histogram) == pytest.approx(1.0)
    assert histogram[full_bin] == 1.0, histogram
    assert radius_over_distance_histogram(SupClapLoss(svr_mode="none"), text, audio) is None


def test_training_plots_are_written(tmp_path):
    results = {
        "history": [
            {"step": s, "loss": 3.0 / s, "loss_contrastive": 2.0 / s, "loss_svr": 1.0 / s} for s in (1, 2, 3)
        ],
        "train_state": {
            "validation": [{"step": 3, "t2a_R@1": 10.0, "a2t_R@1": 12.0, "mean_R@1": 11.0}],
            "drift": [
                {
                    "step": s,
                    "cosine": 0.5,
                    "base_cosine": 0.4,
                    "perp_parallel_ratio": 1.0,
                    "base_perp_parallel_ratio": 1.2,
                    **{
                        f"{tower}_{m}": 0.5
                        for tower in ("text", "audio")
                        for m in ("uniformity", "effective_rank", "mean_cosine")
                    },
                    "alignment": 0.3,
                    "radius_over_distance": [0.0] * 11 + [1.0],
                }
                for s in (1, 2, 3)
            ],
            "radius_values": [0.1, 0.2, 0.3],
        },
    }
    written = save_training_plots(results, tmp_path)
    assert [p.name for p in written] == [
        "training_curves.png",
        "drift.png",
        "representation.png",
        "radius_over_distance.png",
        "radius_histogram.png",
    ]
    assert all(p.stat().st_size > 1000 for p in written)


@pytest.mark.parametrize("svr_mode", ["none", "dynamic"])
def test_the_end_of_run_radii_forward_the_probe_batch_only_with_svr(svr_mode):
    """Without SVR there are no radii, and the probe batch (64 clips, ~18 s of HTSAT at 48 kHz on a CPU
    core) is not forwarded for nothing at the end of the run."""
    from helpers.cached import random_inputs

    from modeling_supclap import SupClapConfig, SupClapModel
    from modeling_supclap.training.diagnostics import DriftProbe

    torch.manual_seed(0)
    model = SupClapModel(SupClapConfig.tiny(svr_mode=svr_mode)).double()
    forwards = []
    model.register_forward_hook(lambda *_: forwards.append(1))
    radii = DriftProbe(random_inputs(5)).radii(model)
    if svr_mode == "none":
        assert radii is None and not forwards
    else:
        assert radii.shape == (5,) and torch.isfinite(radii).all() and len(forwards) == 1
