"""Property-based tests (hypothesis) of ``SupClapLoss`` over every variant (base x SVR mode x sides).

Small batches and dimensions, float64 unless stated; ``deadline=None`` (first calls pay for torch
kernel warm-up) and few examples per property, so the file runs in seconds.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers.reference import LOSS_VARIANTS, make_loss, random_pairs, variant_id
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modeling_supclap.model.losses import SupClapLoss, radius_constraint

PROPERTY_SETTINGS = settings(
    max_examples=15, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
TERMS = ("loss", "contrastive", "svr", "constraint")
VARIANTS = pytest.mark.parametrize("variant", LOSS_VARIANTS, ids=variant_id)

sizes = st.integers(min_value=2, max_value=6)
dims = st.integers(min_value=2, max_value=8)
seeds = st.integers(min_value=0, max_value=2**16)
log_scales = st.floats(min_value=0.0, max_value=math.log(100.0))


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tensors of a few dozen numbers: extra threads only wait on each other (46 s vs 10 s, 2 busy cores)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _terms(loss_fn: SupClapLoss, text, audio, log_scale_t: float, log_scale_a: float) -> dict:
    scale_t = torch.tensor(math.exp(log_scale_t), dtype=text.dtype)
    scale_a = torch.tensor(math.exp(log_scale_a), dtype=text.dtype)
    return loss_fn(text, audio, scale_t, scale_a)


def _assert_terms_close(a: dict, b: dict, rtol: float, atol: float) -> None:
    for name in TERMS:
        if name in a or name in b:
            torch.testing.assert_close(a[name], b[name].to(a[name].dtype), rtol=rtol, atol=atol, msg=name)


@VARIANTS
@PROPERTY_SETTINGS
@given(data=st.data(), n=sizes, dim=dims, seed=seeds, log_t=log_scales, log_a=log_scales)
def test_invariant_to_permuting_the_batch(variant, data, n, dim, seed, log_t, log_a):
    permutation = torch.tensor(data.draw(st.permutations(range(n)), label="permutation"))
    loss_fn = make_loss(variant, seed=seed % 7)
    text, audio = random_pairs(n, dim, seed)
    original = _terms(loss_fn, text, audio, log_t, log_a)
    permuted = _terms(loss_fn, text[permutation], audio[permutation], log_t, log_a)
    _assert_terms_close(original, permuted, rtol=1e-9, atol=1e-12)
    for name in ("radius_mean", "radius_std", "radius_constraint_active"):
        if name in original:
            torch.testing.assert_close(original[name], permuted[name], rtol=1e-9, atol=1e-12, msg=name)


@VARIANTS
@PROPERTY_SETTINGS
@given(n=sizes, dim=dims, seed=seeds, log_t=log_scales, log_a=log_scales)
def test_zero_radius_reduces_svr_to_the_base_loss(variant, n, dim, seed, log_t, log_a):
    loss_fn = make_loss(variant, seed=seed % 7)
    if loss_fn.radius is None:
        return  # no SVR term: the loss is the base loss by construction (checked in test_losses.py)
    with torch.no_grad():  # R = 0 for every pair
        if variant["svr_mode"] == "static":
            loss_fn.radius.radius.zero_()
        else:
            loss_fn.radius.output_weight.zero_()
            loss_fn.radius.output_bias.zero_()
    text, audio = random_pairs(n, dim, seed)
    terms = _terms(loss_fn, text, audio, log_t, log_a)
    scale_t = torch.tensor(math.exp(log_t), dtype=text.dtype)
    index = torch.arange(n)
    # Support vectors at R = 0 are the anchors themselves: the SVR term is the base loss of its sides.
    expected = (
        terms["contrastive"]
        if variant["svr_bilateral"]
        else loss_fn.base_loss(text, audio, index, scale_t).mean()
    )
    torch.testing.assert_close(terms["svr"], expected, rtol=1e-12, atol=1e-12)
    assert float(terms["constraint"].detach()) == 0.0 and float(terms["radius_constraint_active"]) == 0.0
    torch.testing.assert_close(
        terms["loss"], terms["contrastive"] + loss_fn.svr_weight * terms["svr"], rtol=1e-12, atol=1e-12
    )


finite = {"allow_nan": False, "allow_infinity": False}


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    radius=st.one_of(st.floats(-10, 10, **finite), st.sampled_from([0.0, -0.0, 1e-300, -1e-300])),
    distance=st.one_of(st.floats(0, 10, **finite), st.sampled_from([0.0, 1e-300])),
)
def test_radius_constraint_is_zero_exactly_inside_zero_to_distance(radius, distance):
    r = torch.tensor([radius, distance], dtype=torch.float64)  # also R == D exactly
    d = torch.tensor([distance, distance], dtype=torch.float64)
    value = radius_constraint(r, d)
    assert bool((value >= 0).all())
    inside = (r >= 0) & (r <= d)
    assert torch.equal(value == 0, inside), (radius, distance, value)


def _collapsed(kind: str, n: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    text, audio = random_pairs(n, dim, seed)
    if kind == "text-equals-audio":  # D = 0 for every pair
        return text.clone(), text.clone()
    if kind == "all-identical":  # every embedding the same point: no direction, every logit tied
        return text[:1].expand(n, dim).clone(), text[:1].expand(n, dim).clone()
    if kind == "duplicated-captions":  # two clips share one caption (identical text rows)
        text = text.clone()
        text[1] = text[0]
        return text, audio
    raise ValueError(kind)


@VARIANTS
@PROPERTY_SETTINGS
@given(
    kind=st.sampled_from(["text-equals-audio", "all-identical", "duplicated-captions"]),
    n=sizes,
    dim=dims,
    seed=seeds,
    log_t=log_scales,
)
def test_finite_loss_and_gradients_for_degenerate_batches(variant, kind, n, dim, seed, log_t):
    loss_fn = make_loss(variant, seed=seed % 7, dtype=torch.float32)
    text, audio = (x.float().requires_grad_(True) for x in _collapsed(kind, n, dim, seed))
    scale = torch.tensor(math.exp(log_t), requires_grad=True)
    terms = loss_fn(text, audio, scale, scale)
    for name, value in terms.items():
        assert torch.isfinite(value).all(), (name, value)
    params = [p for p in loss_fn.parameters() if p.requires_grad]
    grads = torch.autograd.grad(terms["loss"], [text, audio, scale, *params], allow_unused=True)
    for grad in grads:
        assert grad is None or torch.isfinite(grad).all()


@VARIANTS
@PROPERTY_SETTINGS
@given(n=sizes, dim=dims, seed=seeds, log_t=log_scales, log_a=log_scales)
def test_float32_agrees_with_float64(variant, n, dim, seed, log_t, log_a):
    loss64 = make_loss(variant, seed=seed % 7, dtype=torch.float64)
    loss32 = make_loss(variant, seed=seed % 7, dtype=torch.float64).float()
    loss32.load_state_dict({k: v.float() for k, v in loss64.state_dict().items()})
    text, audio = random_pairs(n, dim, seed)
    # Re-normalise in float32 so both losses see unit vectors of their own precision.
    text32, audio32 = F.normalize(text.float(), dim=-1), F.normalize(audio.float(), dim=-1)
    terms64 = _terms(loss64, text, audio, log_t, log_a)
    terms32 = _terms(loss32, text32, audio32, log_t, log_a)
    # Logits reach 100 * cos: float32 rounding of the cosines (~1e-7) moves them by ~1e-5.
    _assert_terms_close(terms64, terms32, rtol=1e-4, atol=2e-5)
