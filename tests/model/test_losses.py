"""The loss family against a plain per-sample reference, and the SVR mechanism itself."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers.reference import LOSS_VARIANTS, make_loss, random_pairs, reference_terms, variant_id
from transformers import ClapConfig, ClapModel

from modeling_supclap import SupClapConfig, SupClapModel
from modeling_supclap.model.configuration_supclap import _tiny_sub_configs
from modeling_supclap.model.losses import pair_distance, predictor_features, support_vectors

ATOL = 1e-5


def _scales(dtype=torch.float64):
    scale_t = torch.tensor(14.0, dtype=dtype, requires_grad=True)
    scale_a = torch.tensor(11.0, dtype=dtype, requires_grad=True)
    return scale_t, scale_a


def _grads(value, tensors):
    return torch.autograd.grad(value, tensors, allow_unused=True)


def _compare(loss_fn, text, audio, dtype=torch.float64):
    text = text.clone().requires_grad_(True)
    audio = audio.clone().requires_grad_(True)
    scale_t, scale_a = _scales(dtype)
    fast = loss_fn(text, audio, scale_t, scale_a)
    slow = reference_terms(loss_fn, text, audio, scale_t, scale_a)
    assert set(slow) <= set(fast)
    for name in slow:
        torch.testing.assert_close(fast[name], slow[name], atol=ATOL, rtol=0, msg=f"term {name}")
    inputs = [text, audio, scale_t, scale_a, *loss_fn.parameters()]
    for fast_grad, slow_grad in zip(_grads(fast["loss"], inputs), _grads(slow["loss"], inputs)):
        if fast_grad is None or slow_grad is None:
            assert fast_grad is None or torch.all(fast_grad == 0)
            assert slow_grad is None or torch.all(slow_grad == 0)
            continue
        torch.testing.assert_close(fast_grad, slow_grad, atol=ATOL, rtol=0)


@pytest.mark.parametrize("variant", LOSS_VARIANTS, ids=variant_id)
@pytest.mark.parametrize("batch_size", [1, 3, 9], ids=lambda n: f"n{n}")
def test_vectorised_loss_matches_per_sample_reference(variant, batch_size):
    # top_k = 4: a batch of 9 has more negatives than the predictor reads, a batch of 1 or 3 fewer.
    loss_fn = make_loss(variant)
    text, audio = random_pairs(batch_size, 6, seed=batch_size)
    _compare(loss_fn, text, audio)


@pytest.mark.parametrize("variant", LOSS_VARIANTS, ids=variant_id)
def test_reference_parity_with_duplicate_embeddings(variant):
    loss_fn = make_loss(variant)
    text, audio = random_pairs(5, 6, seed=3)
    text = torch.cat([text, text[:2]])  # duplicated captions: identical text rows
    audio = torch.cat([audio, audio[:1], audio[1:2]])  # and their clips duplicated too
    _compare(loss_fn, text, audio)


@pytest.mark.parametrize("variant", LOSS_VARIANTS, ids=variant_id)
def test_reference_parity_float32(variant):
    loss_fn = make_loss(variant, dtype=torch.float32)
    text, audio = random_pairs(6, 8, seed=5, dtype=torch.float32)
    _compare(loss_fn, text, audio, dtype=torch.float32)


def test_predictor_with_trainable_input_matches_reference():
    variant = dict(base_loss="infonce", svr_mode="dynamic", svr_bilateral=True)
    loss_fn = make_loss(variant, predictor_detach_input=False)
    text, audio = random_pairs(7, 6, seed=11)
    _compare(loss_fn, text, audio)


def test_predictor_features_are_batch_order_and_size_independent():
    text, audio = random_pairs(10, 6, seed=2)
    sims = text @ audio.t()
    features = predictor_features(sims, torch.arange(10), top_k=4)
    assert features.shape == (10, 4)
    permutation = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    permuted = predictor_features(sims[permutation][:, permutation], torch.arange(10), top_k=4)
    torch.testing.assert_close(permuted, features[permutation])
    small = predictor_features(sims[:2, :2], torch.arange(2), top_k=4)
    assert small.shape == (2, 4)
    assert torch.all(small[:, 2:] == -1.0)  # padding where the batch has too few negatives


# --- 2. the audio->text term is really trained --------------------------------------------------
def test_audio_to_text_term_is_trained_unlike_transformers_builtin():
    config = SupClapConfig.tiny(svr_mode="none")
    torch.manual_seed(0)
    ours = SupClapModel(config).eval()
    theirs = ClapModel(ClapConfig(**_tiny_sub_configs())).eval()
    theirs.load_state_dict(ours.state_dict(), strict=False)
    with torch.no_grad():  # different scales make the two CE directions differ visibly
        for model in (ours, theirs):
            model.logit_scale_t.fill_(2.0)
            model.logit_scale_a.fill_(2.5)
    generator = torch.Generator().manual_seed(1)
    inputs = dict(
        input_ids=torch.randint(3, 1000, (5, 9), generator=generator),
        input_features=torch.randn(5, 1, 201, 16, generator=generator),
    )
    with torch.no_grad():
        builtin = theirs(**inputs, return_loss=True)
        mine = ours(**inputs, return_loss=True)
    torch.testing.assert_close(mine.text_embeds, builtin.text_embeds)
    t, a = mine.text_embeds, mine.audio_embeds
    labels = torch.arange(5)
    text_to_audio = F.cross_entropy(math.exp(2.0) * t @ a.t(), labels)
    audio_to_text = F.cross_entropy(math.exp(2.5) * a @ t.t(), labels)
    torch.testing.assert_close(mine.loss, (text_to_audio + audio_to_text) / 2)
    # transformers' loss: text->audio twice (once per scale); audio->text never.
    twice = (text_to_audio + F.cross_entropy(math.exp(2.5) * t @ a.t(), labels)) / 2
    torch.testing.assert_close(builtin.loss, twice)
    assert abs(float(builtin.loss) - float(mine.loss)) > 1e-3


# --- 3. the mechanism -------------------------------------------------------------------------
def test_support_vector_jacobian_scales_only_the_perpendicular_push():
    text, audio = random_pairs(1, 5, seed=7)
    anchor = text[0].clone().requires_grad_(True)
    positive = audio[0]
    radius = torch.tensor(0.3, dtype=torch.float64)
    distance = float(pair_distance(anchor.detach()[None], positive[None]))
    jacobian = torch.autograd.functional.jacobian(
        lambda x: support_vectors(x[None], positive[None], radius)[0][0], anchor.detach()
    )
    pull = (positive - anchor.detach()) / distance
    perpendicular = torch.randn(5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    perpendicular = perpendicular - (perpendicular @ pull) * pull
    torch.testing.assert_close(jacobian @ pull, pull)
    torch.testing.assert_close(jacobian @ perpendicular, (1 - 0.3 / distance) * perpendicular)
    expected = torch.outer(pull, pull) + (1 - 0.3 / distance) * (
        torch.eye(5, dtype=torch.float64) - torch.outer(pull, pull)
    )
    torch.testing.assert_close(jacobian, expected)


def test_svr_loss_gradient_components_through_the_support_vector():
    """d L_svr / d t = J^T dL/dt_sup: parallel part kept, perpendicular part times (1 - R/D)."""
    loss_fn = make_loss(dict(base_loss="infonce", svr_mode="static", svr_bilateral=False), radius_init=0.4)
    text, audio = random_pairs(4, 6, seed=9)
    text = text.clone().requires_grad_(True)
    scale = torch.tensor(10.0, dtype=torch.float64)
    sup, distance, used = support_vectors(text, audio, loss_fn.radius.radius.expand(4))
    sup.retain_grad()
    loss = loss_fn.base_loss(sup, audio, torch.arange(4), scale).sum()
    loss.backward()
    for i in range(4):
        pull = (audio[i] - text[i].detach()) / distance[i].detach()
        g_sup, g_anchor = sup.grad[i], text.grad[i]
        # Only the anchor's own support vector depends on it (candidates are audio), so:
        torch.testing.assert_close(g_anchor @ pull, g_sup @ pull)
        perp_sup = g_sup - (g_sup @ pull) * pull
        perp_anchor = g_anchor - (g_anchor @ pull) * pull
        torch.testing.assert_close(perp_anchor, (1 - used[i].detach() / distance[i].detach()) * perp_sup)


@pytest.mark.parametrize("base_loss", ["infonce", "siglip"])
@pytest.mark.parametrize("bilateral", [True, False])
def test_zero_radius_reduces_svr_to_the_base_loss(base_loss, bilateral):
    loss_fn = make_loss(
        dict(base_loss=base_loss, svr_mode="static", svr_bilateral=bilateral), radius_init=0.0
    )
    text, audio = random_pairs(6, 5, seed=4)
    scale_t, scale_a = _scales()
    terms = loss_fn(text, audio, scale_t, scale_a)
    if bilateral:
        torch.testing.assert_close(terms["svr"], terms["contrastive"])
    else:
        text_only = loss_fn.base_loss(text, audio, torch.arange(6), scale_t).mean()
        torch.testing.assert_close(terms["svr"], text_only)
    assert float(terms["constraint"]) == 0.0


@pytest.mark.parametrize("variant", LOSS_VARIANTS, ids=variant_id)
def test_coinciding_text_and_audio_give_finite_values(variant):
    loss_fn = make_loss(variant)
    text, audio = random_pairs(4, 5, seed=1)
    audio = audio.clone()
    audio[1] = text[1]  # D = 0 for pair 1
    text = text.clone().requires_grad_(True)
    audio = audio.requires_grad_(True)
    terms = loss_fn(text, audio, *_scales())
    assert all(torch.isfinite(v).all() for v in terms.values())
    terms["loss"].backward()
    assert torch.isfinite(text.grad).all() and torch.isfinite(audio.grad).all()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in loss_fn.parameters())


def test_radius_is_clamped_to_the_pair_distance_where_used():
    text, audio = random_pairs(3, 5, seed=2)
    sup, distance, used = support_vectors(text, audio, torch.tensor([-0.5, 0.2, 10.0], dtype=torch.float64))
    torch.testing.assert_close(
        used,
        torch.stack(
            [torch.zeros((), dtype=torch.float64), torch.tensor(0.2, dtype=torch.float64), distance[2]]
        ),
    )
    torch.testing.assert_close(sup[2], audio[2])  # R = D lands on the positive, never beyond


# --- 4. gradcheck ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "variant",
    [v for v in LOSS_VARIANTS if v["svr_mode"] != "none" or v["base_loss"] == "siglip"],
    ids=variant_id,
)
def test_gradcheck(variant):
    loss_fn = make_loss(variant, predictor_detach_input=False)
    text, audio = random_pairs(4, 5, seed=6)
    params = list(loss_fn.parameters())

    def total(text, audio, scale_t, scale_a, *_):
        return loss_fn(text, audio, scale_t, scale_a)["loss"]

    inputs = (text.requires_grad_(True), audio.requires_grad_(True), *_scales(), *params)
    assert torch.autograd.gradcheck(total, inputs, eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("variant", LOSS_VARIANTS, ids=variant_id)
def test_anchor_chunks_give_the_same_terms_and_gradients(variant):
    """anchor_chunk_size (checkpointed chunks of anchors, used by cached negatives) changes nothing."""
    loss_fn = make_loss(variant, predictor_detach_input=False)
    text, audio = random_pairs(7, 5, seed=12)
    results = []
    for chunk in (None, 3):
        t, a = text.clone().requires_grad_(True), audio.clone().requires_grad_(True)
        scale_t, scale_a = _scales()
        terms = loss_fn(t, a, scale_t, scale_a, anchor_chunk_size=chunk)
        inputs = [t, a, scale_t, scale_a, *loss_fn.parameters()]
        results.append((terms, _grads(terms["loss"], inputs)))
    (full, full_grads), (chunked, chunked_grads) = results
    assert full.keys() == chunked.keys()
    for name in full:
        torch.testing.assert_close(chunked[name], full[name], atol=1e-12, rtol=0, msg=name)
    for g_full, g_chunked in zip(full_grads, chunked_grads):
        if g_full is not None:
            torch.testing.assert_close(g_chunked, g_full, atol=1e-12, rtol=0)
