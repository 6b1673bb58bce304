"""Numerics of training through the real CLI: non-finite losses, bf16 on CPU, logit-scale clamp, radius.

A non-finite loss is injected by a test-only driver script (written below, run in a subprocess) that
runs ``train_supclap``'s ``main`` with an instrumented ``TrainStep`` subclass (the public way to change
what a step does: ``train(..., step_class=...)``) and a forward hook on the loss: nothing is patched.
"""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import pytest
import torch
from helpers.cli import SMALL_CORPUS_CLIPS, run_script, tiny_train_args
from safetensors.torch import load_file

from modeling_supclap import SupClapConfig, SupClapModel
from modeling_supclap.demo import build_demo_processor

DRIVER = textwrap.dedent(
    '''
    """Test driver: train_supclap.py with an instrumented TrainStep (NaN injection, dtype log)."""
    import json
    import os
    import sys

    import torch

    from modeling_supclap.cli.train import main
    from modeling_supclap.training import TrainStep

    NAN_AT = int(os.environ.get("SUPCLAP_TEST_NAN_AT", "0"))  # 1-based training forward to poison
    NAN_IN = os.environ.get("SUPCLAP_TEST_NAN_IN", "loss")  # "loss", or "features" (NaN activations)
    DTYPE_LOG = os.environ.get("SUPCLAP_TEST_DTYPE_LOG")


    class InstrumentedStep(TrainStep):
        forwards = 0
        embeds = []

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            if DTYPE_LOG:
                self.supclap.loss_fn.register_forward_hook(self.log_dtype)

        def log_dtype(self, module, inputs, output):
            if module.training and torch.is_grad_enabled():  # training steps only (not probes)
                self.embeds.append(str(inputs[0].dtype))
                with open(DTYPE_LOG, "w") as f:
                    json.dump({"embeds": self.embeds, "autocast": torch.is_autocast_enabled("cpu")}, f)

        def forward(self, batch):
            InstrumentedStep.forwards += 1
            poison = InstrumentedStep.forwards == NAN_AT
            if poison and NAN_IN == "features":
                batch = {**batch, "input_features": batch["input_features"] * float("nan")}
            outputs = super().forward(batch)
            if poison and NAN_IN == "loss":
                outputs.loss = outputs.loss * float("nan")
            return outputs


    main(sys.argv[1:], step_class=InstrumentedStep)
    '''
)


@pytest.fixture(scope="module")
def driver(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("driver") / "train_with_hooks.py"
    path.write_text(DRIVER)
    return path


def _finite(weights: dict[str, torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in weights.values() if t.is_floating_point())


def _run(driver: Path, cache: Path, out: Path, *extra: str, env: dict | None = None):
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
    return run_script([str(driver), *args], env=env or {})


@pytest.mark.slow
def test_nonfinite_loss_stops_naming_step_and_batch(driver, small_corpus_cache, tmp_path):
    out = tmp_path / "run"
    result = _run(driver, small_corpus_cache, out, env={"SUPCLAP_TEST_NAN_AT": "2"})
    assert result.returncode != 0
    assert "NonFiniteLossError: non-finite loss at step 2 (epoch 0, batch 1): nan" in result.stderr
    assert "--skip_nonfinite" in result.stderr
    # Nothing written after the bad step: the last checkpoint is the healthy step 1, no final model.
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1"]
    assert _finite(load_file(out / "checkpoint-1" / "model.safetensors"))
    assert not (out / "model.safetensors").exists()


@pytest.mark.slow
@pytest.mark.parametrize("nan_in", ["loss", "features"])
def test_skip_nonfinite_skips_the_step_and_keeps_weights_finite(driver, small_corpus_cache, tmp_path, nan_in):
    """``features``: NaN activations, which also reach the BatchNorm running stats during the forward."""
    out = tmp_path / "run"
    env = {"SUPCLAP_TEST_NAN_AT": "2", "SUPCLAP_TEST_NAN_IN": nan_in}
    result = _run(driver, small_corpus_cache, out, "--skip_nonfinite", env=env)
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
def bf16_run(driver, small_corpus_cache, hot_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("bf16") / "run"
    dtype_log = out.parent / "dtypes.json"
    result = _run(
        driver,
        small_corpus_cache,
        out,
        "--model_name_or_path",
        str(hot_model_dir),
        "--mixed_precision",
        "bf16",
        "--max_steps",
        "4",
        env={"SUPCLAP_TEST_DTYPE_LOG": str(dtype_log)},
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
