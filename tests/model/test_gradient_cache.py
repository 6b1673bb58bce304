"""Cached negatives (``gradient_cache_chunk_size``): the gradients of one loss over the whole batch.

The reference is the dense step on the same batch with the towers run chunk by chunk (keeping their
graph) and one loss on the concatenated embeddings: BatchNorm normalises by what it sees, so that is
the dense computation the cached one must equal, gradients and running statistics alike.
"""

from __future__ import annotations

import copy
import json
import os
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
from helpers.cached import (
    ATOL,
    BATCH,
    assert_same_gradients,
    config_for,
    dense_chunked_loss,
    random_inputs,
    tiny_model,
)
from helpers.cli import run_in_process, tiny_train_args
from helpers.processes import free_port, run_workers
from helpers.reference import LOSS_VARIANTS, variant_id
from helpers.toy import toy_processor, toy_rows

from modeling_supclap import SupClapModel
from modeling_supclap.cli.train import main as train_main
from modeling_supclap.data import SupClapCollator
from modeling_supclap.lora import get_lora_model
from modeling_supclap.model import gradient_cache


@pytest.mark.parametrize("variant", LOSS_VARIANTS, ids=variant_id)
@pytest.mark.parametrize("chunk", [1, 3, BATCH], ids=lambda c: f"chunk{c}")
def test_cached_gradients_equal_the_dense_step_with_dropout(variant, chunk):
    _assert_cached_step_equals_dense(variant, chunk)


@pytest.mark.parametrize("variant", LOSS_VARIANTS, ids=variant_id)
def test_the_loss_in_checkpointed_blocks_gives_the_same_step(variant, monkeypatch):
    # What a large batch gets (N x N above LOSS_BLOCK_ELEMENTS): the loss scored in blocks of `chunk` anchors.
    monkeypatch.setattr(gradient_cache, "LOSS_BLOCK_ELEMENTS", 1)
    _assert_cached_step_equals_dense(variant, 3)


def _assert_cached_step_equals_dense(variant: dict, chunk: int) -> None:
    model, inputs = tiny_model(config_for(variant, gradient_cache_chunk_size=chunk)), random_inputs()
    reference, cached = copy.deepcopy(model), copy.deepcopy(model)
    torch.manual_seed(7)  # dropout is active: both must draw the same masks
    expected = dense_chunked_loss(reference, inputs, chunk)
    expected["loss"].backward()
    torch.manual_seed(7)
    out = cached(**inputs, return_loss=True)
    out.loss.backward()
    torch.testing.assert_close(out.loss, expected["loss"], atol=ATOL, rtol=0)
    torch.testing.assert_close(out.loss_contrastive, expected["contrastive"], atol=ATOL, rtol=0)
    assert_same_gradients(reference, cached)
    # BatchNorm running statistics: updated once per chunk, as the reference did, not twice.
    for (name, a), b in zip(reference.named_buffers(), cached.buffers()):
        assert torch.equal(a, b), name


def test_the_rng_after_a_cached_step_is_where_one_forward_per_chunk_leaves_it():
    config = config_for(
        dict(base_loss="infonce", svr_mode="none", svr_bilateral=True), gradient_cache_chunk_size=3
    )
    model, inputs = tiny_model(config), random_inputs()
    torch.manual_seed(11)
    dense_chunked_loss(copy.deepcopy(model), inputs, 3)["loss"].backward()
    expected = torch.rand(4)
    torch.manual_seed(11)
    model(**inputs, return_loss=True).loss.backward()
    torch.testing.assert_close(torch.rand(4), expected, atol=0, rtol=0)


def test_the_loss_scale_reaches_every_gradient():
    """GradScaler and gradient accumulation scale the loss: the cached backward must follow."""
    config = config_for(
        dict(base_loss="siglip", svr_mode="dynamic", svr_bilateral=True), gradient_cache_chunk_size=2
    )
    model, inputs = tiny_model(config), random_inputs()
    plain, scaled = copy.deepcopy(model), copy.deepcopy(model)
    torch.manual_seed(3)
    plain(**inputs, return_loss=True).loss.backward()
    torch.manual_seed(3)
    (scaled(**inputs, return_loss=True).loss * 256.0).backward()
    for a, b in zip(plain.parameters(), scaled.parameters()):
        if a.grad is not None:
            torch.testing.assert_close(b.grad, 256.0 * a.grad, atol=1e-9, rtol=1e-9)


def test_eval_mode_and_no_grad_take_the_ordinary_forward():
    config = config_for(
        dict(base_loss="infonce", svr_mode="static", svr_bilateral=True), gradient_cache_chunk_size=2
    )
    model, inputs = tiny_model(config), random_inputs()
    with torch.no_grad():
        cached = model(**inputs, return_loss=True)
    assert cached.text_model_output is not None  # the dense path (towers' outputs kept)
    model.eval()
    dense = model(**inputs, return_loss=True)
    assert dense.loss.grad_fn is not None and dense.text_model_output is not None


def test_lora_adapters_get_the_dense_gradients():
    config = config_for(
        dict(base_loss="infonce", svr_mode="dynamic", svr_bilateral=True), gradient_cache_chunk_size=3
    )
    base = tiny_model(config)
    inputs = random_inputs()
    reference, cached = (
        get_lora_model(copy.deepcopy(base), "both", r=4),
        get_lora_model(copy.deepcopy(base), "both", r=4),
    )
    cached.load_state_dict(reference.state_dict())
    with torch.no_grad():  # non-zero LoRA B matrices, so A gets a gradient too
        for model in (reference, cached):
            torch.manual_seed(2)
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.normal_(0, 0.1)
    torch.manual_seed(5)
    dense_chunked_loss(reference.get_base_model(), inputs, 3)["loss"].backward()
    torch.manual_seed(5)
    cached(**inputs, return_loss=True).loss.backward()
    trainable = [n for n, p in cached.named_parameters() if p.requires_grad]
    assert any("lora_A" in n for n in trainable) and any("loss_fn" in n for n in trainable)
    assert_same_gradients(reference, cached)


# --- two processes -------------------------------------------------------------------------------
def _two_process_worker(rank: int, port: int, variant: dict, chunk: int, out_dir) -> None:
    """One rank (``helpers.processes.run_workers``: the process ends with ``os._exit`` after this)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    # A peer that never arrives fails the test in minutes (gloo waits 30 by default).
    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=timedelta(seconds=180))
    torch.set_num_threads(1)
    model = tiny_model(config_for(variant, dropout=False, gradient_cache_chunk_size=chunk))
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    rows = slice(0, 3) if rank == 0 else slice(3, BATCH)  # an uneven split
    inputs = {k: v[rows] for k, v in random_inputs().items()}
    ddp(**inputs, return_loss=True).loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    torch.save(grads, out_dir / f"rank{rank}.pt")
    dist.barrier()  # no rank leaves while the other still talks to it


@pytest.mark.slow
@pytest.mark.parametrize(
    "variant",
    [v for v in LOSS_VARIANTS if v["svr_bilateral"] and v["svr_mode"] in ("none", "dynamic")],
    ids=variant_id,
)
def test_two_processes_cached_and_gathered_equal_the_dense_global_batch(variant, tmp_path):
    chunk = 2
    run_workers(_two_process_worker, 2, (free_port(), variant, chunk, tmp_path))
    grads = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in range(2)]
    for name in grads[0]:  # DDP averaged them: both ranks hold the same
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-12, rtol=0)
    # One process, the global batch: the towers on the same chunks (each rank's rows, chunk by chunk).
    reference = tiny_model(config_for(variant, dropout=False))
    inputs = random_inputs()
    texts, audios = [], []
    for rows in (slice(0, 2), slice(2, 3), slice(3, 5), slice(5, 7)):
        out = reference._encode(**{k: v[rows] for k, v in inputs.items()})
        texts.append(out.text_embeds)
        audios.append(out.audio_embeds)
    reference.loss_fn(torch.cat(texts), torch.cat(audios), *reference.logit_scales())["loss"].backward()
    for name, param in reference.named_parameters():
        if param.grad is not None:
            torch.testing.assert_close(grads[0][name], param.grad, atol=ATOL, rtol=0, msg=name)


# --- transformers.Trainer ------------------------------------------------------------------------
@pytest.mark.slow
def test_trainer_with_cached_negatives_takes_the_dense_step_and_learns(tmp_path):
    from transformers import Trainer, TrainerCallback, TrainingArguments

    config = config_for(dict(svr_mode="dynamic"), dropout=False, gradient_cache_chunk_size=4)
    torch.manual_seed(0)
    model = SupClapModel(config)
    start = copy.deepcopy(model)
    processor = toy_processor(config)
    collator = SupClapCollator(processor, caption_choice="first")
    batches, first_grads = [], {}

    def recording_collator(rows):
        batches.append(collator(rows))
        return batches[-1]

    class FirstGradients(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
            if not first_grads:
                first_grads.update(
                    {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
                )

    args = TrainingArguments(
        str(tmp_path / "trainer"),
        per_device_train_batch_size=12,
        max_steps=40,
        learning_rate=3e-3,
        warmup_steps=2,
        max_grad_norm=1e9,  # the gradients are compared before clipping would matter
        report_to=[],
        remove_unused_columns=False,
        use_cpu=True,
        save_strategy="no",
        logging_steps=1,
        dataloader_num_workers=0,
        disable_tqdm=True,
        seed=0,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=toy_rows(24),
        data_collator=recording_collator,
        callbacks=[FirstGradients()],
    )
    trainer.train()
    # Step 1's gradients are the dense ones on the batch it saw (chunks of 4 through the towers).
    start.train()
    dense_chunked_loss(start, {k: v for k, v in batches[0].items() if k != "return_loss"}, 4)[
        "loss"
    ].backward()
    for name, param in start.named_parameters():
        if param.grad is not None:
            torch.testing.assert_close(first_grads[name], param.grad, atol=1e-5, rtol=1e-4, msg=name)
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    assert len(losses) >= 30
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.3


# --- the training CLI ----------------------------------------------------------------------------
@pytest.mark.slow
def test_the_cli_trains_with_cached_negatives_in_bf16(small_corpus_cache, tmp_path):
    out = tmp_path / "run"
    args = tiny_train_args(
        small_corpus_cache,
        out,
        "--gradient_cache_chunk_size",
        "3",
        "--mixed_precision",
        "bf16",
        "--max_steps",
        "4",
    )
    result = run_in_process(train_main, args)
    assert result.returncode == 0, result.stderr[-4000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_state"]["step"] == 4
    history = metrics["history"]
    assert all(row["loss"] == row["loss"] and row["grad_norm"] > 0 for row in history)  # finite, trained
    assert json.loads((out / "config.json").read_text())["gradient_cache_chunk_size"] == 3
