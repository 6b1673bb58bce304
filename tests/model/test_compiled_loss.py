"""The fused loss (``SupClapConfig.compile_loss``: ``torch.compile`` with inductor) equals the eager one.

Values and gradients of every term, for the 10 loss variants, at two batch sizes with one compilation
(dynamic shapes: a second size must not recompile), and one training step of a model using it (traced
with aot_eager).

Inductor compiles C++ kernels on CPU, 10-25 s per variant on 2 cores. The suite therefore runs inductor on
the two bilateral DynamicSVR variants, whose graphs contain every operation of the other eight (those are
their sub-graphs: no SVR, a static radius, one side), and traces the other eight with ``aot_eager`` (the
same graph capture and autograd, executed by eager kernels). ``SUPCLAP_COMPILE_TESTS=inductor`` runs all
10 under inductor (about 3 minutes). The CUDA version of the parity check is in tests/model/test_cuda.py.
"""

from __future__ import annotations

import copy
import os

import pytest
import torch
from helpers.reference import LOSS_VARIANTS, make_loss, random_pairs, terms_and_grads, variant_id

from modeling_supclap import SupClapConfig, SupClapModel
from modeling_supclap.model.losses import SupClapLoss

ATOL = 1e-10
INDUCTOR_EVERYWHERE = os.environ.get("SUPCLAP_COMPILE_TESTS") == "inductor"


def _backend(variant: dict) -> str:
    if INDUCTOR_EVERYWHERE or (variant["svr_mode"] == "dynamic" and variant["svr_bilateral"]):
        return "inductor"
    return "aot_eager"


def _assert_same(got, expected):
    (terms, grads), (expected_terms, expected_grads) = got, expected
    assert terms.keys() == expected_terms.keys()
    for name in expected_terms:
        torch.testing.assert_close(terms[name], expected_terms[name], atol=ATOL, rtol=0, msg=name)
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        assert (grad is None) == (expected_grad is None)
        if grad is not None:
            torch.testing.assert_close(grad, expected_grad, atol=ATOL, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("variant", LOSS_VARIANTS, ids=variant_id)
def test_compiled_loss_equals_eager_values_and_gradients(variant, monkeypatch):
    monkeypatch.setattr(SupClapLoss, "compile_backend", _backend(variant))
    torch._dynamo.reset()
    eager = make_loss(variant, predictor_detach_input=False)  # gradients through the predictor's input too
    compiled = copy.deepcopy(eager)
    compiled.compile_loss = True
    # 9 and 14 pairs: both above the predictor's top_k (4), so one graph serves both sizes.
    for size, seed in ((9, 1), (14, 2)):
        text, audio = random_pairs(size, 6, seed=seed)
        with torch._dynamo.config.patch(error_on_recompile=size != 9):
            got = terms_and_grads(compiled, text, audio)
        _assert_same(got, terms_and_grads(eager, text, audio))
    assert "_compiled_batch_terms" in compiled.__dict__  # the compiled path really ran


def test_compiled_loss_is_skipped_without_gradients():
    """Evaluation (no_grad) runs the eager loss: nothing to fuse a backward for, no compilation."""
    loss_fn = make_loss(LOSS_VARIANTS[4], compile_loss=True)
    text, audio = random_pairs(5, 6, seed=3)
    with torch.no_grad():
        loss_fn(text, audio, torch.tensor(14.0, dtype=text.dtype), torch.tensor(11.0, dtype=text.dtype))
    assert "_compiled_batch_terms" not in loss_fn.__dict__


@pytest.mark.slow
def test_a_model_with_compile_loss_trains_like_the_eager_model(monkeypatch):
    """One training step of a tiny model: the loss and every parameter's gradient equal the eager model's.

    Traced with aot_eager: inductor's numerics are the parity test's; this one checks that the compiled
    graph sits in the model's step (gradients reach every tower parameter through it)."""
    monkeypatch.setattr(SupClapLoss, "compile_backend", "aot_eager")
    torch._dynamo.reset()
    config = SupClapConfig.tiny(svr_mode="dynamic", svr_bilateral=True)
    torch.manual_seed(0)
    eager = SupClapModel(config).double().train()
    fused = copy.deepcopy(eager)
    fused.config.compile_loss = fused.loss_fn.compile_loss = True
    generator = torch.Generator().manual_seed(0)
    batch = {
        "input_ids": torch.randint(3, 1000, (6, 9), generator=generator),
        "attention_mask": torch.ones(6, 9, dtype=torch.long),
        "input_features": torch.randn(6, 1, 201, 16, generator=generator, dtype=torch.float64),
    }
    losses = []
    for model in (eager, fused):
        torch.manual_seed(1)  # the same dropout masks in both
        out = model(**batch)
        out.loss.backward()
        losses.append(out.loss.detach())
    torch.testing.assert_close(losses[1], losses[0], atol=ATOL, rtol=0)
    for (name, p_eager), p_fused in zip(eager.named_parameters(), fused.parameters(), strict=True):
        if p_eager.grad is None:
            assert p_fused.grad is None, name
        else:
            torch.testing.assert_close(p_fused.grad, p_eager.grad, atol=1e-9, rtol=0, msg=name)
    assert "_compiled_batch_terms" in fused.loss_fn.__dict__


def test_compile_loss_is_a_validated_config_field_and_a_flag():
    assert SupClapConfig.tiny(compile_loss=True).compile_loss is True
    with pytest.raises(ValueError, match="compile_loss"):
        SupClapConfig.tiny(compile_loss="yes")
    from modeling_supclap.cli.parsing import parse_arguments
    from modeling_supclap.training.arguments import ModelArguments

    (given,) = parse_arguments([ModelArguments], ["--compile_loss", "--text_pooling", "mean"])
    assert given.loss_overrides() == {"compile_loss": True, "text_pooling": "mean"}
    (default,) = parse_arguments([ModelArguments], [])
    assert "compile_loss" not in default.loss_overrides()
