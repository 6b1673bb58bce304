"""Drift measures on a hand-built example, and the plots saved with a run."""

from __future__ import annotations

import math

import pytest
import torch

from modeling_supclap.diagnostics import (
    drift_measures,
    drift_of_gradient,
    pull_directions,
    save_training_plots,
)
from modeling_supclap.losses import InfoNCELoss, SupClapLoss


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
                }
                for s in (1, 2, 3)
            ],
            "radius_values": [0.1, 0.2, 0.3],
        },
    }
    written = save_training_plots(results, tmp_path)
    assert [p.name for p in written] == ["training_curves.png", "drift.png", "radius_histogram.png"]
    assert all(p.stat().st_size > 1000 for p in written)
