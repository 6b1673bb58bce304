"""Building blocks of the training loop: the optimizer, and when validation runs."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from conftest import run_script, tiny_train_args

from modeling_supclap import SupClapConfig, SupClapModel
from modeling_supclap.training.arguments import TrainArguments
from modeling_supclap.training.loop import build_optimizer


def _tiny_model() -> SupClapModel:
    torch.manual_seed(0)
    return SupClapModel(SupClapConfig.tiny(svr_mode="dynamic", svr_bilateral=True))


def _give_gradients(model: torch.nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    for param in model.parameters():
        param.grad = torch.randn(param.shape, generator=generator)


def test_default_optimizer_is_fused_adamw_and_matches_per_tensor_adamw():
    fused_model = _tiny_model()
    loop_model = copy.deepcopy(fused_model)
    fused = build_optimizer(fused_model, TrainArguments())
    per_tensor = build_optimizer(loop_model, TrainArguments(optim="adamw_torch"))
    assert fused.defaults["fused"] is True
    assert not per_tensor.defaults["fused"]
    # Same groups: weight decay on matrices only, none on biases, norms, logit scales and loss parameters.
    for optimizer, model in ((fused, fused_model), (per_tensor, loop_model)):
        decay_ids = {id(p) for p in optimizer.param_groups[0]["params"]}
        assert optimizer.param_groups[0]["weight_decay"] == TrainArguments().weight_decay
        assert optimizer.param_groups[1]["weight_decay"] == 0.0
        for name, param in model.named_parameters():
            no_decay = param.ndim < 2 or "logit_scale" in name or "loss_fn" in name
            assert (id(param) in decay_ids) is not no_decay, name
    for step in range(3):
        _give_gradients(fused_model, step)
        _give_gradients(loop_model, step)
        fused.step()
        per_tensor.step()
    moved = 0
    for (name, a), (_, b) in zip(fused_model.named_parameters(), loop_model.named_parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=name)
        moved += int(not torch.equal(a, _tiny_model().state_dict()[name]))
    assert moved > 0


def test_unknown_optimizer_is_rejected_naming_the_flag():
    with pytest.raises(ValueError, match="--optim must be one of"):
        build_optimizer(_tiny_model(), TrainArguments(optim="sgd"))


@pytest.mark.slow
def test_eval_steps_zero_validates_once_at_the_end(small_corpus_cache, tmp_path):
    out = tmp_path / "run"
    args = tiny_train_args(
        small_corpus_cache, out, "--max_steps", "4", "--eval_steps", "0", "--save_steps", "0"
    )
    result = run_script(["train_supclap.py", *args, "--optim", "adamw_torch"])
    assert result.returncode == 0, result.stderr[-4000:]
    state = json.loads((out / "metrics.json").read_text())["train_state"]
    assert [entry["step"] for entry in state["validation"]] == [4]
    assert state["best_step"] == 4 and (out / "best" / "model.safetensors").exists()
    assert not list(out.glob("checkpoint-*"))  # --save_steps 0: no checkpoints


@pytest.mark.slow
def test_max_train_minutes_stops_early_then_validates_and_saves(small_corpus_cache, tmp_path):
    out = tmp_path / "run"
    args = tiny_train_args(
        small_corpus_cache, out, "--max_steps", "50", "--max_train_minutes", "0.0001", "--save_steps", "0"
    )
    result = run_script(["train_supclap.py", *args])
    assert result.returncode == 0, result.stderr[-4000:]
    state = json.loads((out / "metrics.json").read_text())["train_state"]
    # 6 ms of budget: the first step already exceeds it, so the run stops there, not at --max_steps.
    assert state["step"] == 1
    assert [entry["step"] for entry in state["validation"]] == [1]
    assert (out / "model.safetensors").exists()
