"""CUDA paths: the loss against the CPU reference, bf16 autocast, fused AdamW, the CLI and the pipeline.

Skipped where no GPU is present (CI has none); run on a GPU machine with ``python -m pytest -q
tests/model/test_cuda.py``.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from helpers.cli import run_script, tiny_train_args
from helpers.reference import LOSS_VARIANTS, make_loss, random_pairs, terms_and_grads, variant_id
from helpers.toy import SAMPLING_RATE, TOY_LABELS, toy_processor, toy_rows
from transformers import pipeline

from modeling_supclap import SupClapConfig, SupClapModel
from modeling_supclap.training.arguments import TrainArguments
from modeling_supclap.training.run import build_optimizer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CUDA = torch.device("cuda")


def _assert_cuda_matches_the_reference(reference_fn, cuda_fn, text, audio, dtype, atol: float) -> None:
    """``cuda_fn`` on CUDA in ``dtype`` against the per-sample reference of ``reference_fn`` (CPU)."""
    expected, expected_grads = terms_and_grads(reference_fn, text, audio, use_reference=True)
    got, got_grads = terms_and_grads(cuda_fn, text.to(CUDA, dtype), audio.to(CUDA, dtype))
    for name in expected:
        torch.testing.assert_close(got[name].double().cpu(), expected[name], atol=atol, rtol=0, msg=name)
    for got_grad, expected_grad in zip(got_grads, expected_grads):
        if got_grad is None or expected_grad is None:
            assert got_grad is None or not got_grad.any()
            assert expected_grad is None or not expected_grad.any()
            continue
        torch.testing.assert_close(got_grad.double().cpu(), expected_grad, atol=atol, rtol=0)


@pytest.mark.parametrize("variant", LOSS_VARIANTS, ids=variant_id)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_cuda_loss_matches_the_cpu_reference(variant, dtype):
    reference_fn = make_loss(variant)
    cuda_fn = copy.deepcopy(reference_fn).to(device=CUDA, dtype=dtype)
    text, audio = random_pairs(33, 16, seed=7)  # 33 > predictor top_k: the top-k path is taken
    atol = 1e-8 if dtype == torch.float64 else 2e-5
    _assert_cuda_matches_the_reference(reference_fn, cuda_fn, text, audio, dtype, atol)


@pytest.mark.parametrize("variant", LOSS_VARIANTS, ids=variant_id)
def test_cuda_compiled_loss_matches_the_cpu_reference(variant):
    """compile_loss on CUDA (inductor's Triton kernels): values and gradients of the per-sample reference."""
    torch._dynamo.reset()
    reference_fn = make_loss(variant)
    cuda_fn = copy.deepcopy(reference_fn).to(device=CUDA, dtype=torch.float32)
    cuda_fn.compile_loss = True
    for size, seed in ((33, 7), (40, 8)):  # two sizes, one compilation (dynamic shapes)
        text, audio = random_pairs(size, 16, seed=seed)
        _assert_cuda_matches_the_reference(reference_fn, cuda_fn, text, audio, torch.float32, atol=2e-5)
    assert "_compiled_batch_terms" in cuda_fn.__dict__


@pytest.mark.parametrize("variant", LOSS_VARIANTS, ids=variant_id)
def test_loss_forward_and_backward_never_wait_for_the_gpu(variant):
    # A host sync inside the loss (reading a value: .item(), int(tensor), bool(tensor)) would stall the
    # CPU's queueing of GPU work every step; sync debug mode "error" raises on any such read.
    loss_fn = make_loss(variant, dtype=torch.float32).to(CUDA)
    text, audio = random_pairs(40, 16, seed=3, dtype=torch.float32)
    text, audio = text.to(CUDA).requires_grad_(True), audio.to(CUDA).requires_grad_(True)
    scale = torch.tensor(14.0, device=CUDA, requires_grad=True)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(2):  # the second call takes the cached paths
            terms = loss_fn(text, audio, scale, scale)
            terms["loss"].backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(terms["loss"]).item()


def _toy_batch(config: SupClapConfig, num_clips: int = 12) -> dict[str, torch.Tensor]:
    rows = toy_rows(num_clips)
    processor = toy_processor(config)
    batch = processor(
        text=[row["captions"][0] for row in rows],
        audio=[row["audio"]["array"] for row in rows],
        sampling_rate=SAMPLING_RATE,
        return_tensors="pt",
        padding=True,
    )
    return {k: v.to(CUDA) for k, v in batch.items()}


def test_bf16_autocast_on_cuda_is_close_to_float32_and_trains():
    torch.manual_seed(0)
    config = SupClapConfig.tiny(svr_mode="dynamic", svr_bilateral=True)
    model = SupClapModel(config).to(CUDA).eval()  # eval: BatchNorm statistics do not move between calls
    batch = _toy_batch(config)
    full = model(**batch, return_loss=True)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        half = model(**batch, return_loss=True)
    assert torch.isfinite(half.loss)
    torch.testing.assert_close(half.loss.float(), full.loss, rtol=5e-2, atol=5e-2)
    half.loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(bool(torch.isfinite(g).all()) for g in grads)
    assert model.loss_fn.radius.output_weight.grad is not None  # the SVR predictor is trained too


def test_fused_adamw_on_cuda_matches_per_tensor_adamw():
    torch.manual_seed(0)
    fused_model = SupClapModel(SupClapConfig.tiny(svr_mode="static")).to(CUDA)
    loop_model = copy.deepcopy(fused_model)
    fused = build_optimizer(fused_model, TrainArguments())
    per_tensor = build_optimizer(loop_model, TrainArguments(optim="adamw_torch"))
    assert fused.defaults["fused"] is True
    generator = torch.Generator(device=CUDA).manual_seed(0)
    for _ in range(3):
        for a, b in zip(fused_model.parameters(), loop_model.parameters()):
            a.grad = torch.randn(a.shape, device=CUDA, generator=generator)
            b.grad = a.grad.clone()
        fused.step()
        per_tensor.step()
    for (name, a), (_, b) in zip(fused_model.named_parameters(), loop_model.named_parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=name)


def _train_on_cuda(cache, out, mixed_precision: str, *extra: str) -> dict:
    """A tiny CLI run on the GPU (the tiny test arguments without --use_cpu); returns its metrics.json."""
    args = [a for a in tiny_train_args(cache, out) if a != "--use_cpu"]
    result = run_script(["train_supclap.py", *args, "--mixed_precision", mixed_precision, *extra])
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.slow
def test_training_cli_on_cuda_with_bf16(small_corpus_cache, tmp_path):
    metrics = _train_on_cuda(small_corpus_cache, tmp_path / "run", "bf16")
    assert metrics["train_state"]["device"].startswith("cuda")
    assert metrics["train_state"]["step"] == 6
    assert all(np.isfinite(row["loss"]) for row in metrics["history"])
    assert 0.0 <= metrics["test"]["retrieval"]["t2a_R@1"] <= 100.0


@pytest.mark.slow
def test_training_cli_on_cuda_with_fp16_and_its_grad_scaler(small_corpus_cache, tmp_path):
    # fp16 starts with a large loss scale: inf gradients in the first steps are the GradScaler's to skip
    # (it lowers the scale); the loop must not stop on them or count them as non-finite steps.
    metrics = _train_on_cuda(small_corpus_cache, tmp_path / "run", "fp16")
    assert metrics["train_state"]["step"] == 6 and metrics["train_state"]["nonfinite_skipped"] == 0
    assert all(np.isfinite(row["loss"]) for row in metrics["history"])


@pytest.mark.slow
def test_cached_negatives_on_cuda_with_fp16_and_its_grad_scaler(small_corpus_cache, tmp_path):
    """The cached backward multiplies by the GradScaler's scale like a dense one (inf steps skipped)."""
    metrics = _train_on_cuda(small_corpus_cache, tmp_path / "run", "fp16", "--gradient_cache_chunk_size", "3")
    assert metrics["train_state"]["step"] == 6 and metrics["train_state"]["nonfinite_skipped"] == 0
    assert all(np.isfinite(row["loss"]) for row in metrics["history"])


def test_cached_negatives_gradients_on_cuda_match_the_dense_step():
    from helpers.cached import (
        assert_same_gradients,
        config_for,
        dense_chunked_loss,
        random_inputs,
        tiny_model,
    )
    from helpers.reference import LOSS_VARIANTS

    for variant in LOSS_VARIANTS:
        model = tiny_model(config_for(variant, gradient_cache_chunk_size=3)).to(CUDA)
        inputs = {k: v.to(CUDA) for k, v in random_inputs().items()}
        reference, cached = copy.deepcopy(model), copy.deepcopy(model)
        torch.manual_seed(7)
        dense_chunked_loss(reference, inputs, 3)["loss"].backward()
        torch.manual_seed(7)
        cached(**inputs, return_loss=True).loss.backward()
        assert_same_gradients(reference, cached)


def test_zero_shot_pipeline_on_cuda_matches_cpu(tmp_path):
    torch.manual_seed(0)
    config = SupClapConfig.tiny()
    SupClapModel(config).save_pretrained(tmp_path)
    toy_processor(config).save_pretrained(tmp_path)
    clip = toy_rows(1)[0]["audio"]["array"]
    labels = list(TOY_LABELS)
    on_cpu = pipeline("zero-shot-audio-classification", model=str(tmp_path), device="cpu")(
        clip, candidate_labels=labels
    )
    on_cuda_pipe = pipeline("zero-shot-audio-classification", model=str(tmp_path), device=0)
    assert on_cuda_pipe.model.device.type == "cuda"
    on_cuda = on_cuda_pipe(clip, candidate_labels=labels)
    cpu_scores = {s["label"]: s["score"] for s in on_cpu}
    for s in on_cuda:
        assert s["score"] == pytest.approx(cpu_scores[s["label"]], abs=1e-4)
