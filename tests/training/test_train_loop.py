"""Building blocks of the training loop: the optimizer, and when validation runs."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from helpers.cli import run_in_process, tiny_train_args

from modeling_supclap import SupClapConfig, SupClapModel
from modeling_supclap.cli.train import main as train_main
from modeling_supclap.training.arguments import TrainArguments
from modeling_supclap.training.run import build_optimizer


def _tiny_model() -> SupClapModel:
    torch.manual_seed(0)
    return SupClapModel(SupClapConfig.tiny(svr_mode="dynamic", svr_bilateral=True))


def _give_gradients(model: torch.nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    for param in model.parameters():
        param.grad = torch.randn(param.shape, generator=generator)


@pytest.mark.slow
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
    result = run_in_process(train_main, [*args, "--optim", "adamw_torch"])
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
    result = run_in_process(train_main, args)
    assert result.returncode == 0, result.stderr[-4000:]
    state = json.loads((out / "metrics.json").read_text())["train_state"]
    # 6 ms of budget: the first step already exceeds it, so the run stops there, not at --max_steps.
    assert state["step"] == 1
    assert [entry["step"] for entry in state["validation"]] == [1]
    assert (out / "model.safetensors").exists()


def _drive_the_train_step(argv: list[str]) -> None:
    """build_run + TrainStep outside the loop, as a script using the package would (printed as JSON)."""
    from modeling_supclap.cli.train import parse_args
    from modeling_supclap.training import StepPosition, TrainStep, build_run

    run = build_run(*parse_args(argv))

    class SameDropout(TrainStep):  # every forward draws the same dropout masks: micro-batches comparable
        def forward(self, batch):
            torch.manual_seed(0)
            return super().forward(batch)

    step = SameDropout.from_run(run)
    batch = next(run.data.train.batches(epoch=0))

    def snapshot():
        return {k: v.detach().clone() for k, v in run.model.state_dict().items()}

    def same(a, b):
        return all(torch.equal(a[k], b[k]) for k in a)

    # A poisoned batch (NaN features: also NaN BatchNorm statistics) is skipped and undone.
    start = snapshot()
    poisoned = {**batch, "input_features": batch["input_features"] * float("nan")}
    skipped = step([poisoned], StepPosition(1, 0, 0))
    after_skip = snapshot()
    # One batch, and the same batch as two micro-batches (averaged): the same update.
    optimizer_state = copy.deepcopy(run.optimizer.state_dict())
    single = step([batch], StepPosition(1, 0, 0))
    after_single = snapshot()
    run.model.load_state_dict(start)
    run.optimizer.load_state_dict(optimizer_state)
    run.scheduler.scheduler.last_epoch -= 1
    double = step([batch, batch], StepPosition(1, 0, 0))
    after_double = snapshot()
    result = {
        "skipped": skipped.skipped,
        "skip_changed_nothing": same(start, after_skip),
        "single_changed": not same(start, after_single),
        "terms": sorted(single.terms),
        "loss_single": float(single.terms["loss"]),
        "loss_double": float(double.terms["loss"]),
        # Parameters only: BatchNorm buffers rightly see two updates from two micro-batches.
        "max_diff": max(
            float((after_single[k].float() - after_double[k].float()).abs().max())
            for k, _ in run.model.named_parameters()
        ),
    }
    print(json.dumps(result))


@pytest.mark.slow
def test_the_train_step_is_driven_directly(small_corpus_cache, tmp_path):
    """build_run + TrainStep outside the loop: skip a non-finite step, average micro-batches."""
    args = tiny_train_args(small_corpus_cache, tmp_path / "run", "--skip_nonfinite", "--svr_mode", "dynamic")
    result = run_in_process(_drive_the_train_step, args)
    assert result.returncode == 0, result.stderr[-4000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["skipped"] is True and out["skip_changed_nothing"] is True
    assert out["single_changed"] is True
    assert {"loss", "loss_contrastive", "loss_svr", "grad_norm"} <= set(out["terms"])
    assert out["loss_double"] == pytest.approx(out["loss_single"], abs=1e-6)
    assert out["max_diff"] < 1e-6


def _batch_orders(argv: list[str]) -> None:
    """The training batches' order (hashes of their captions' token ids) of two epochs, in full and as
    after a resume mid-epoch 0 (printed as JSON)."""
    import hashlib

    from modeling_supclap.cli.train import parse_args
    from modeling_supclap.training import build_run

    source = build_run(*parse_args(argv)).data.train

    def order(batches):
        return [hashlib.sha1(b["input_ids"].numpy().tobytes()).hexdigest() for b in batches]

    full = [order(source.batches(0)), order(source.batches(1))]
    resumed = [order(source.batches(0, skip=3)), order(source.batches(1))]  # as after a resume mid-epoch 0
    print(json.dumps({"full": full, "resumed": resumed}))


@pytest.mark.slow
def test_resuming_mid_epoch_keeps_the_next_epochs_order(small_corpus_cache, tmp_path):
    """Regression: Accelerate's loader reset the sampler epoch to its own iteration count, so the epoch
    after a resumed (skipped) one repeated epoch 0's order."""
    args = tiny_train_args(small_corpus_cache, tmp_path / "run")
    result = run_in_process(_batch_orders, args)
    assert result.returncode == 0, result.stderr[-4000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["resumed"][0] == out["full"][0][3:]
    assert out["resumed"][1] == out["full"][1] != out["full"][0]


def _dynamo_plugin(argv: list[str]) -> None:
    """The backend and shape mode Accelerate is told to compile with (printed)."""
    from modeling_supclap.training.run import build_accelerator

    arguments = TrainArguments(torch_compile=argv[0] == "yes", use_cpu=True, report_to=["none"])
    plugin = build_accelerator(arguments).state.dynamo_plugin
    print(plugin.backend.value.lower(), plugin.dynamic)


@pytest.mark.slow
def test_torch_compile_flag_makes_accelerate_compile_the_model_with_dynamic_shapes():
    """The flag's wiring (compiling itself takes minutes on CPU: measured in benchmarks/bench_overhead.py)."""
    on = run_in_process(_dynamo_plugin, ["yes"])
    assert on.returncode == 0, on.stderr[-2000:]
    assert on.stdout.split() == ["inductor", "True"]
    off = run_in_process(_dynamo_plugin, ["no"])
    assert off.returncode == 0 and off.stdout.split()[0] == "no"


def test_logit_scale_init_flags_set_a_new_models_scales():
    from modeling_supclap.cli.train import parse_args
    from modeling_supclap.training.model_setup import build_model

    model_args, _, _ = parse_args(["--preset", "tiny", "--logit_scale_init_value", "30"])
    assert [float(s) for s in build_model(model_args).logit_scales()] == pytest.approx([30.0, 30.0])
    model_args, _, _ = parse_args(
        ["--preset", "tiny", "--base_loss", "siglip", "--siglip_logit_scale_init", "5"]
    )
    assert [float(s) for s in build_model(model_args).logit_scales()] == pytest.approx([5.0, 5.0])


@pytest.mark.slow
def test_log_mel_on_the_device_trains_to_the_same_weights_as_in_the_workers(
    small_corpus_cache, tmp_path, monkeypatch
):
    """``--log_mel_on_device`` (the GPU's default) leaves CLAP's log-mel to the model's device; here the CPU
    is that device, so the same run with and without it must end with the same weights, bit for bit."""
    from safetensors.torch import load_file

    from modeling_supclap.data import collator as collator_module
    from modeling_supclap.data.features import WAVEFORMS_KEY

    finished, finish = [], collator_module.finish_on_device
    monkeypatch.setattr(
        collator_module,
        "finish_on_device",
        lambda processor, batch: finished.append(WAVEFORMS_KEY in batch) or finish(processor, batch),
    )
    weights, waveform_batches = {}, {}
    for name, extra in (("workers", ["--log_mel_on_device", "false"]), ("device", ["--log_mel_on_device"])):
        finished.clear()
        args = tiny_train_args(small_corpus_cache, tmp_path / name, "--max_steps", "3", "--save_steps", "0")
        result = run_in_process(train_main, [*args, *extra])
        assert result.returncode == 0, result.stderr[-3000:]
        assert json.loads((tmp_path / name / "metrics.json").read_text())["train_state"]["step"] == 3
        weights[name] = load_file(tmp_path / name / "model.safetensors")
        waveform_batches[name] = sum(finished)
    assert waveform_batches["workers"] == 0 and waveform_batches["device"] >= 3  # the path each run took
    assert weights["device"].keys() == weights["workers"].keys()
    for key, value in weights["workers"].items():
        assert torch.equal(weights["device"][key], value), key
