"""Plain per-sample reference of the SupCLAP losses, written from svr-method.md with loops.

Nothing here is vectorised or shared with ``modeling_supclap.model.losses``: it reads the learnable
parameters of a ``SupClapLoss`` (so gradients can be compared) and recomputes every term one
anchor and one candidate at a time.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from modeling_supclap.model.losses import SupClapLoss


def _dot(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x * y).sum()


def anchor_loss(loss_fn: SupClapLoss, anchor, candidates, positive: int, scale) -> torch.Tensor:
    """The base loss of one anchor against every candidate."""
    logits = [scale * _dot(anchor, c) for c in candidates]
    if loss_fn.base_loss_name == "infonce":
        return -logits[positive] + torch.logsumexp(torch.stack(logits), dim=0)
    bias = loss_fn.base_loss.logit_bias
    total = torch.zeros((), dtype=anchor.dtype)
    for j, logit in enumerate(logits):
        sign = 1.0 if j == positive else -1.0
        total = total - F.logsigmoid(sign * (logit + bias))
    return total


def predicted_radius(loss_fn: SupClapLoss, anchor, candidates, positive: int) -> torch.Tensor:
    radius_module = loss_fn.radius
    if loss_fn.svr_mode == "static":
        return radius_module.radius
    sims = [_dot(anchor, c) for c in candidates]
    if radius_module.detach_input:
        sims = [s.detach() for s in sims]
    negatives = sorted((s for j, s in enumerate(sims) if j != positive), key=lambda s: -float(s))
    k = radius_module.top_k
    features = [sims[positive], *negatives[: k - 1]]
    features += [torch.tensor(-1.0, dtype=anchor.dtype)] * (k - len(features))
    h = torch.stack(features)
    for layer in radius_module.hidden:
        if isinstance(layer, torch.nn.Linear):
            h = torch.stack([_dot(w, h) + b for w, b in zip(layer.weight, layer.bias)])
        else:
            h = layer(h)
    return _dot(radius_module.output_weight, h) + radius_module.output_bias


def support_vector(anchor, positive, radius, clamp: bool):
    distance = torch.sqrt(sum((p - a) ** 2 for p, a in zip(positive, anchor)))
    if float(distance) < 1e-8:
        return anchor, torch.zeros((), dtype=anchor.dtype)
    used = torch.minimum(torch.clamp(radius, min=0.0), distance) if clamp else radius
    return anchor + used * (positive - anchor) / distance, distance


def reference_terms(loss_fn: SupClapLoss, text, audio, scale_t, scale_a) -> dict[str, torch.Tensor]:
    """Every named loss term of ``loss_fn`` on one process, computed one sample at a time."""
    n = text.shape[0]
    directions = [(text, audio, scale_t), (audio, text, scale_a)]
    contrastive = sum(
        anchor_loss(loss_fn, anchors[i], candidates, i, scale)
        for anchors, candidates, scale in directions
        for i in range(n)
    ) / (2 * n)
    terms = {"contrastive": contrastive}
    if loss_fn.radius is None:
        terms["loss"] = contrastive
        return terms
    used_directions = directions if loss_fn.svr_bilateral else directions[:1]
    svr, constraint = 0.0, 0.0
    for anchors, candidates, scale in used_directions:
        for i in range(n):
            radius = predicted_radius(loss_fn, anchors[i], candidates, i)
            sup, distance = support_vector(anchors[i], candidates[i], radius, loss_fn.radius_clamp)
            svr = svr + anchor_loss(loss_fn, sup, candidates, i, scale)
            constraint = constraint + torch.relu(radius - distance) + torch.relu(-radius)
    sides = len(used_directions)
    terms["svr"] = svr / (sides * n)
    terms["constraint"] = constraint / (sides * n)
    terms["loss"] = (
        contrastive + loss_fn.svr_weight * terms["svr"] + loss_fn.constraint_weight * terms["constraint"]
    )
    return terms


LOSS_VARIANTS = [
    dict(base_loss=base, svr_mode=mode, svr_bilateral=bilateral)
    for base in ("infonce", "siglip")
    for mode, bilateral in (
        ("none", True),
        ("static", False),
        ("static", True),
        ("dynamic", False),
        ("dynamic", True),
    )
]


def terms_and_grads(loss_fn: SupClapLoss, text, audio, use_reference: bool = False):
    """(terms, gradients of the total w.r.t. text, audio, both scales and the loss's parameters).

    ``use_reference``: the per-sample reference instead of ``loss_fn`` itself (same parameters).
    """
    text = text.clone().requires_grad_(True)
    audio = audio.clone().requires_grad_(True)
    dtype, device = text.dtype, text.device
    scale_t = torch.tensor(14.0, dtype=dtype, device=device, requires_grad=True)
    scale_a = torch.tensor(11.0, dtype=dtype, device=device, requires_grad=True)
    if use_reference:
        terms = reference_terms(loss_fn, text, audio, scale_t, scale_a)
    else:
        terms = loss_fn(text, audio, scale_t, scale_a)
    inputs = [text, audio, scale_t, scale_a, *loss_fn.parameters()]
    return terms, torch.autograd.grad(terms["loss"], inputs, allow_unused=True)


def variant_id(variant: dict) -> str:
    side = "bi" if variant["svr_bilateral"] else "uni"
    return f"{variant['base_loss']}-{variant['svr_mode']}" + (
        "" if variant["svr_mode"] == "none" else f"-{side}"
    )


def random_pairs(n: int, dim: int, seed: int, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    text = F.normalize(torch.randn(n, dim, generator=generator, dtype=dtype), dim=-1)
    audio = F.normalize(text + 0.8 * torch.randn(n, dim, generator=generator, dtype=dtype), dim=-1)
    return text, audio


def make_loss(variant: dict, seed: int = 0, dtype=torch.float64, **overrides) -> SupClapLoss:
    torch.manual_seed(seed)
    settings = dict(predictor_top_k=4, predictor_hidden_sizes=(8, 8), radius_init=0.3, **variant)
    settings.update(overrides)
    loss_fn = SupClapLoss(**settings).to(dtype)
    # Random (not initial) predictor output weights, so the radius really varies per pair.
    if loss_fn.svr_mode == "dynamic":
        with torch.no_grad():
            loss_fn.radius.output_weight.normal_(0, 0.3)
    return loss_fn


LOG_SCALE = math.log(1 / 0.07)
