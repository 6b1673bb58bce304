"""The ratio radius (R = rho D) and the spreading control (R = D): what each does to the gradients."""

from __future__ import annotations

import pytest
import torch
from helpers.reference import make_loss, random_pairs

from modeling_supclap import SupClapConfig

BASE_LOSSES = ["infonce", "siglip"]
SIDES = ["text->audio", "audio->text"]


def _roles(side: str, text: torch.Tensor, audio: torch.Tensor):
    """(anchors, positives, candidates) of one direction; candidates are separate leaves."""
    return (text, audio, audio.clone()) if side == "text->audio" else (audio, text, text.clone())


@pytest.mark.parametrize("base_loss", BASE_LOSSES)
@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("rho", [0.2, 0.7])
def test_ratio_mode_scales_the_perpendicular_push_by_exactly_one_minus_rho(base_loss, side, rho):
    loss_fn = make_loss(dict(base_loss=base_loss, svr_mode="ratio", svr_bilateral=True), radius_ratio=rho)
    text, audio = random_pairs(5, 6, seed=11)
    anchors, positives, candidates = _roles(side, text, audio)
    anchors = anchors.clone().requires_grad_(True)
    scale = torch.tensor(9.0, dtype=torch.float64)
    index = torch.arange(5)

    # The gradient the base loss would push into the support vector itself...
    terms = loss_fn.anchor_terms(anchors, positives, candidates, scale, index, part="svr")
    (through_anchor,) = torch.autograd.grad(terms["svr"].sum(), anchors)
    sup = (anchors.detach() + rho * (positives - anchors.detach())).requires_grad_(True)
    (at_support_vector,) = torch.autograd.grad(loss_fn.base_loss(sup, candidates, index, scale).sum(), sup)
    torch.testing.assert_close(terms["radius"], rho * terms["distance"])  # strictly inside (0, D)
    for i in range(5):
        pull = (positives[i] - anchors[i].detach()) / terms["distance"][i]
        g, g_sup = through_anchor[i], at_support_vector[i]
        torch.testing.assert_close(g @ pull, g_sup @ pull, atol=1e-12, rtol=0)  # parallel: kept
        torch.testing.assert_close(
            g - (g @ pull) * pull, (1 - rho) * (g_sup - (g_sup @ pull) * pull), atol=1e-12, rtol=0
        )  # perpendicular: times (1 - rho)


@pytest.mark.parametrize("base_loss", BASE_LOSSES)
@pytest.mark.parametrize("bilateral", [True, False])
def test_the_spreading_control_equals_the_saturated_svr_term(base_loss, bilateral):
    variant = dict(base_loss=base_loss, svr_bilateral=bilateral)
    spreading = make_loss(dict(svr_mode="spreading", **variant))
    saturated = make_loss(dict(svr_mode="static", **variant), radius_init=50.0)  # clamped to D everywhere
    text, audio = random_pairs(6, 5, seed=3)
    scale_t, scale_a = torch.tensor(12.0, dtype=torch.float64), torch.tensor(8.0, dtype=torch.float64)
    if base_loss == "siglip":
        with torch.no_grad():
            saturated.base_loss.logit_bias.copy_(spreading.base_loss.logit_bias)
    a, b = spreading(text, audio, scale_t, scale_a), saturated(text, audio, scale_t, scale_a)
    torch.testing.assert_close(a["svr"], b["svr"], atol=1e-12, rtol=0)
    torch.testing.assert_close(a["contrastive"], b["contrastive"], atol=1e-12, rtol=0)
    assert float(a["constraint"]) == 0.0
    # ... which is the base loss of same-modality pairs (audio against audio; text against text).
    index = torch.arange(6)
    same_modality = [spreading.base_loss(audio, audio, index, scale_t).mean()]
    if bilateral:
        same_modality.append(spreading.base_loss(text, text, index, scale_a).mean())
    torch.testing.assert_close(a["svr"], sum(same_modality) / len(same_modality), atol=1e-12, rtol=0)


def test_the_spreading_control_gives_the_anchor_no_gradient():
    loss_fn = make_loss(dict(base_loss="infonce", svr_mode="spreading", svr_bilateral=False))
    text, audio = random_pairs(4, 5, seed=8)
    anchors = text.clone().requires_grad_(True)
    terms = loss_fn.anchor_terms(anchors, audio, audio.clone(), torch.tensor(10.0, dtype=torch.float64),
                                 torch.arange(4), part="svr")  # fmt: skip
    (grad,) = torch.autograd.grad(terms["svr"].sum(), anchors, allow_unused=True)
    assert grad is None or float(grad.abs().max()) < 1e-12  # zero up to rounding (x + D (p - x) / D)


@pytest.mark.parametrize("value", [0.0, 1.0, -0.2, 1.5])
def test_radius_ratio_must_lie_strictly_between_zero_and_one(value):
    with pytest.raises(ValueError, match="SupClapConfig.radius_ratio must be"):
        SupClapConfig.tiny(svr_mode="ratio", radius_ratio=value)


def test_margin_radius_is_the_move_that_would_lift_the_positive_m_above_the_hardest_negative():
    from modeling_supclap.model.losses import MarginRadius, pair_distance, support_vectors

    text, audio = random_pairs(6, 4, seed=5)
    similarities = text @ audio.t()
    index = torch.arange(6)
    distance = pair_distance(text, audio)
    radius = MarginRadius(0.2)(similarities, index, distance)
    masked = similarities.clone()
    masked[index, index] = -2.0
    gap = similarities[index, index] - masked.max(dim=1).values
    torch.testing.assert_close(radius, 2 * (0.2 - gap) / distance)
    # Along the pull, the similarity to the positive rises by exactly R D / 2 (unit vectors).
    sup, _, used = support_vectors(text, audio, radius, clamp=False, distance=distance)
    torch.testing.assert_close((sup * audio).sum(-1), similarities[index, index] + radius * distance / 2)
    assert not radius.requires_grad


def test_margin_radius_is_zero_where_the_margin_is_met_and_d_where_far_from_it():
    from modeling_supclap.model.losses import MarginRadius, support_vectors

    similarities = torch.tensor([[0.9, 0.1, 0.0], [0.3, 0.5, 0.45]], dtype=torch.float64)
    distance = torch.sqrt(2 - 2 * similarities[[0, 1], [0, 1]])
    radius = MarginRadius(0.2)(similarities, torch.tensor([0, 1]), distance)
    assert radius[0] < 0  # gap 0.8 >= 0.2: no support vector
    torch.testing.assert_close(radius[1], 2 * (0.2 - 0.05) / distance[1])
    anchors = torch.eye(3, dtype=torch.float64)[:2]
    positives = torch.eye(3, dtype=torch.float64)[[1, 2]]
    _, _, used = support_vectors(anchors, positives, torch.tensor([-0.5, 9.0], dtype=torch.float64))
    assert used[0] == 0 and used[1] == pytest.approx(2**0.5)  # the loss clamps to [0, D]


@pytest.mark.parametrize("base_loss", BASE_LOSSES)
def test_margin_mode_trains_both_sides_and_reports_its_radius(base_loss):
    loss_fn = make_loss(dict(base_loss=base_loss, svr_mode="margin", svr_bilateral=True), radius_margin=0.3)
    text, audio = random_pairs(8, 6, seed=2)
    text.requires_grad_(True)
    terms = loss_fn(
        text, audio, torch.tensor(10.0, dtype=torch.float64), torch.tensor(10.0, dtype=torch.float64)
    )
    assert torch.isfinite(terms["loss"]) and float(terms["svr"].detach()) > 0
    (grad,) = torch.autograd.grad(terms["loss"], text)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    with pytest.raises(ValueError, match="radius_margin"):
        SupClapConfig.tiny(svr_mode="margin", radius_margin=0.0)


@pytest.fixture
def experimental_predictor_rules(monkeypatch):
    """Imports benchmarks/predictor_rules.py (registers "bounded" and "margin_target") for one test only:
    the registry is process-wide, and other tests in this pytest worker check its exact contents."""
    import sys

    from helpers.cli import REPO

    from modeling_supclap.model.losses import SVR_MODES

    registered = dict(SVR_MODES)
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import predictor_rules

    yield predictor_rules
    SVR_MODES.clear()
    SVR_MODES.update(registered)
    sys.modules.pop("predictor_rules", None)


def test_the_experimental_predictor_rules_do_what_method_md_says(experimental_predictor_rules):
    """benchmarks/predictor_rules.py: ``bounded`` keeps R strictly inside (0, D); ``margin_target`` is trained
    by regression on the margin radius alone, whatever gradient the SVR loss sends it."""
    from modeling_supclap.model.losses import MarginRadius, pair_distance

    text, audio = random_pairs(8, 6, seed=3)
    scale = torch.tensor(10.0, dtype=torch.float64)
    similarities, index, distance = text @ audio.t(), torch.arange(8), pair_distance(text, audio)

    bounded = make_loss(dict(base_loss="infonce", svr_mode="bounded", svr_bilateral=True))
    with torch.no_grad():
        bounded.radius.output_weight.normal_(0, 3.0)  # outputs far from 0: still inside (0, D)
    radius = bounded.radius(similarities, index, distance)
    assert ((radius > 0) & (radius < distance)).all()

    target_loss = make_loss(dict(base_loss="infonce", svr_mode="margin_target", svr_bilateral=True))
    predictor = target_loss.radius

    def regression_gradient(anchors, positives):
        """d/d(output bias) of 1/2 (R - R*)^2, mean over one side's pairs."""
        sims, dist = anchors @ positives.t(), pair_distance(anchors, positives)
        target = torch.minimum(MarginRadius(0.2)(sims, index, dist).clamp(min=0), dist)
        loss = 0.5 * (predictor(sims, index, dist) - target).pow(2).mean()
        return torch.autograd.grad(loss, predictor.output_bias)[0]

    expected = regression_gradient(text, audio) + regression_gradient(audio, text)  # both sides
    for weight in (1.0, 50.0):  # the SVR term's weight changes the loss, not the predictor's gradient
        predictor.zero_grad()
        target_loss.svr_weight = weight
        target_loss(text, audio, scale, scale)["loss"].backward()
        torch.testing.assert_close(predictor.output_bias.grad, expected)
