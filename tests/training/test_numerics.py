"""Numerics of training through the real CLI: non-finite losses, bf16 on CPU, logit-scale clamp, radius.

A non-finite loss is injected by running ``train_supclap``'s ``main`` (in the test process) with an
instrumented ``TrainStep`` subclass (the public way to change what a step does:
``train(..., step_class=...)``) and a forward hook on the loss: nothing is patched.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from helpers.cli import SMALL_CORPUS_CLIPS, run_in_process, tiny_train_args
from safetensors.torch import load_file

from modeling_supclap import SupClapConfig, SupClapModel
from modeling_supclap.cli.train import main as train_main
from modeling_supclap.demo import build_demo_processor
from modeling_supclap.training import TrainStep


def _instrumented_step(
    nan_at: int = 0, nan_in: str = "loss", dtype_log: Path | None = None
) -> type[TrainStep]:
    """A TrainStep that poisons its ``nan_at``-th training forward (1-based; 0: none) in the ``nan_in``
    ("loss", or "features": NaN activations), and logs the loss's input dtypes to ``dtype_log``."""

    class InstrumentedStep(TrainStep):
        forwards = 0
        embeds: list[str] = []

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            if dtype_log:
                self.supclap.loss_fn.register_forward_hook(self.log_dtype)

        def log_dtype(self, module, inputs, output):
            if module.training and torch.is_grad_enabled():  # training steps only (not probes)
                self.embeds.append(str(inputs[0].dtype))
                dtype_log.write_text(
                    json.dumps({"embeds": self.embeds, "autocast": torch.is_autocast_enabled("cpu")})
                )

        def forward(self, batch):
            InstrumentedStep.forwards += 1
            poison = InstrumentedStep.forwards == nan_at
            if poison and nan_in == "features":
                batch = {**batch, "input_features": batch["input_features"] * float("nan")}
            outputs = super().forward(batch)
            if poison and nan_in == "loss":
                outputs.loss = outputs.loss * float("nan")
            return outputs

    return InstrumentedStep


def _finite(weights: dict[str, torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in weights.values() if t.is_floating_point())


def _run(cache: Path, out: Path, *extra: str, **instrumented):
    args = tiny_train_args(
        cache,
        out,
        "--max_steps",
        "3",
        "--eval_steps",
        "0",
        "--save_steps",
        "1",
        "--save_total_limit",
        "5",
        *extra,
    )
    step_class = _instrumented_step(**instrumented)
    return run_in_process(lambda argv: train_main(argv, step_class=step_class), args)


@pytest.mark.slow
def test_nonfinite_loss_stops_naming_step_and_batch(small_corpus_cache, tmp_path):
    out = tmp_path / "run"
    result = _run(small_corpus_cache, out, nan_at=2)
    assert result.returncode != 0
    assert "NonFiniteLossError: non-finite loss at step 2 (epoch 0, batch 1): nan" in result.stderr
    assert "--skip_nonfinite" in result.stderr
    # Nothing written after the bad step: the last checkpoint is the healthy step 1, no final model.
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1"]
    assert _finite(load_file(out / "checkpoint-1" / "model.safetensors"))
    assert not (out / "model.safetensors").exists()


@pytest.mark.slow
@pytest.mark.parametrize("nan_in", ["loss", "features"])
def test_skip_nonfinite_skips_the_step_and_keeps_weights_finite(small_corpus_cache, tmp_path, nan_in):
    """``features``: NaN activations, which also reach the BatchNorm running stats during the forward."""
    out = tmp_path / "run"
    result = _run(small_corpus_cache, out, "--skip_nonfinite", nan_at=2, nan_in=nan_in)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "skipping step 2 (epoch 0, batch 1): non-finite loss" in result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_state"]["nonfinite_skipped"] == 1 and metrics["train_state"]["step"] == 3
    step1, step2, step3 = (load_file(out / f"checkpoint-{k}" / "model.safetensors") for k in (1, 2, 3))
    # The skipped step changed nothing (no optimizer step, no weight decay, BatchNorm stats put back);
    # the next one trained on.
    assert [k for k in step1 if not torch.equal(step1[k], step2[k])] == []
    assert any(not torch.equal(step2[k], step3[k]) for k in step2)
    assert _finite(step3) and _finite(load_file(out / "model.safetensors"))
    losses = [row["loss"] for row in metrics["history"] if "loss" in row]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)  # step 2 logged no loss
    assert "Test results" in result.stdout  # the final (eval-mode) evaluation saw finite embeddings


@pytest.fixture(scope="module")
def hot_model_dir(small_corpus_cache, tmp_path_factory) -> Path:
    """A tiny SupClap folder whose logit scales start at 1000, far above the clamp of 100."""
    folder = tmp_path_factory.mktemp("hot_model")
    config = SupClapConfig.tiny()
    torch.manual_seed(0)
    model = SupClapModel(config)
    with torch.no_grad():
        model.logit_scale_t.fill_(math.log(1000.0))
        model.logit_scale_a.fill_(math.log(1000.0))
    model.save_pretrained(folder)
    corpus = small_corpus_cache / f"demo_corpus_{SMALL_CORPUS_CLIPS}"
    build_demo_processor(corpus, config.audio_config, cache_dir=folder.parent / "processors").save_pretrained(
        folder
    )
    return folder


@pytest.fixture(scope="module")
def bf16_run(small_corpus_cache, hot_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("bf16") / "run"
    dtype_log = out.parent / "dtypes.json"
    result = _run(
        small_corpus_cache,
        out,
        "--model_name_or_path",
        str(hot_model_dir),
        "--mixed_precision",
        "bf16",
        "--max_steps",
        "4",
        dtype_log=dtype_log,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return out, json.loads((out / "metrics.json").read_text()), json.loads(dtype_log.read_text())


@pytest.mark.slow
def test_bf16_autocast_on_cpu_trains_with_finite_loss(bf16_run):
    out, metrics, dtypes = bf16_run
    # Logged by training-mode forwards only: 4 of them also shows the loaded model was put in train mode.
    assert dtypes["autocast"] is True and dtypes["embeds"] == ["torch.bfloat16"] * 4
    assert metrics["train_state"]["step"] == 4 and metrics["train_state"]["nonfinite_skipped"] == 0
    assert len(metrics["history"]) == 4
    assert all(math.isfinite(row["loss"]) and math.isfinite(row["grad_norm"]) for row in metrics["history"])
    weights = load_file(out / "model.safetensors")
    assert _finite(weights) and all(
        t.dtype != torch.bfloat16 for t in weights.values()
    )  # fp32 master weights


@pytest.mark.slow
def test_logit_scale_stays_clamped_during_training(bf16_run, hot_model_dir):
    out, metrics, _ = bf16_run
    start = load_file(hot_model_dir / "model.safetensors")
    assert float(start["logit_scale_t"]) == pytest.approx(math.log(1000.0))  # really forced above the clamp
    max_log = math.log(100.0)
    for step in range(1, 5):
        weights = load_file(out / f"checkpoint-{step}" / "model.safetensors")
        for name in ("logit_scale_t", "logit_scale_a"):
            assert float(weights[name]) <= max_log + 1e-6, (step, name, float(weights[name]))
    assert all(row["logit_scale"] <= 100.0 + 1e-4 for row in metrics["history"])


@pytest.mark.slow
def test_radius_constraint_activity_is_recorded(bf16_run):
    _, metrics, _ = bf16_run
    for row in metrics["history"]:
        assert 0.0 <= row["radius_constraint_active"] <= 1.0
        assert "radius_mean" in row and "loss_constraint" in row


def test_clamp_logit_scales_in_place():
    model = SupClapModel(SupClapConfig.tiny())
    with torch.no_grad():
        model.logit_scale_t.fill_(math.log(1e4))
        model.logit_scale_a.fill_(-3.0)
    with torch.no_grad():
        assert all(float(s) <= 100.0 + 1e-4 for s in model.logit_scales())  # clamped in the forward too
    model.clamp_logit_scales_()
    assert model.logit_scale_t.item() == pytest.approx(math.log(100.0))
    assert model.logit_scale_a.item() == -3.0  # only the maximum is clamped
