"""The Accelerate training loop behind ``train_supclap.py``.

Where a batch is *made* (``data/collator.py``), *encoded and scored* (``SupClapModel.forward``,
whose loss gathers negatives across processes) is decided elsewhere; this file only drives:
data order, optimisation, validation, checkpoints, logging and the final save.

Determinism: data order comes from a per-epoch permutation seeded by ``seed + epoch``, captions
and crops from ``(seed, epoch, clip indices)``, and the DataLoader has its own generator so that
starting an iterator never draws from the global RNG. With the RNG states restored from the
checkpoint, a resumed run takes the same steps as an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm
from transformers import AutoProcessor, ClapProcessor, get_scheduler

from ..configuration_supclap import LOSS_TERM_OUTPUTS, SupClapConfig
from ..data import AudioTextDataset, SupClapCollator, build_demo_corpus, build_demo_processor, load_records
from ..data.checks import check_splits, format_data_report
from ..data.loading import AudioTextRecord, MissingSplitError
from ..evaluation import evaluate_records, format_results, mean_recall_at_1
from ..modeling_supclap import SupClapModel
from . import checkpointing
from .arguments import DataArguments, ModelArguments, TrainArguments

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """A step produced a non-finite loss or gradient (and --skip_nonfinite was not given)."""


class EpochPermutationSampler(torch.utils.data.Sampler[int]):
    """A fresh permutation each epoch, seeded by ``seed + epoch`` (reproducible across resumes)."""

    def __init__(self, num_samples: int, seed: int) -> None:
        self.num_samples, self.seed, self.epoch = num_samples, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.num_samples, generator=generator).tolist())

    def __len__(self) -> int:
        return self.num_samples


# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------
def resolve_data(data_args: DataArguments, accelerator: Accelerator) -> tuple[str, bool]:
    """(path of the training corpus, whether it is the demo corpus), building the demo if needed."""
    if data_args.train_data is not None:
        return data_args.train_data, False
    corpus_dir = Path(data_args.cache_dir) / f"demo_corpus_{data_args.demo_num_clips}"
    with accelerator.main_process_first():
        build_demo_corpus(corpus_dir, num_clips=data_args.demo_num_clips)
    return str(corpus_dir), True


def _records(data_args: DataArguments, data: str, split: str) -> list[AudioTextRecord]:
    return load_records(
        data,
        split=split,
        audio_column=data_args.audio_column,
        caption_columns=data_args.caption_columns,
        label_column=data_args.label_column,
    )


def load_splits(data_args: DataArguments, train_data: str) -> dict[str, list[AudioTextRecord] | None]:
    """Train records, and validation/test records where they exist."""
    splits: dict[str, list[AudioTextRecord] | None] = {
        "train": _records(data_args, train_data, data_args.train_split)
    }
    for split, explicit in (("validation", data_args.validation_data), ("test", data_args.test_data)):
        if explicit is not None:
            splits[split] = _records(data_args, explicit, split)
            continue
        if Path(train_data).is_file():
            # A single .csv/.jsonl has no splits: load_records would return the training rows again.
            logger.info("no %s split: %s is one table, its rows are the training set", split, train_data)
            splits[split] = None
            continue
        try:
            splits[split] = _records(data_args, train_data, split)
        except (MissingSplitError, FileNotFoundError) as error:
            logger.info("no %s split in %s (%s)", split, train_data, error)
            splits[split] = None
    return splits


def build_model(model_args: ModelArguments) -> SupClapModel:
    overrides = model_args.loss_overrides()
    if model_args.model_name_or_path:
        return SupClapModel.from_pretrained(
            model_args.model_name_or_path, trust_remote_code=model_args.trust_remote_code, **overrides
        )
    presets = {"tiny": SupClapConfig.tiny, "small": SupClapConfig.small}
    if model_args.preset not in presets:
        raise ValueError(f"--preset must be one of {sorted(presets)}, got {model_args.preset!r}")
    return SupClapModel(presets[model_args.preset](**overrides))


def build_processor(
    model_args: ModelArguments, data_args: DataArguments, model: SupClapModel, corpus: str, is_demo: bool
) -> ClapProcessor:
    if model_args.model_name_or_path:
        return AutoProcessor.from_pretrained(
            model_args.model_name_or_path, trust_remote_code=model_args.trust_remote_code
        )
    if not is_demo:
        raise ValueError(
            "training from scratch on your own data needs a processor: pass --model_name_or_path of a CLAP "
            "checkpoint (its tokenizer and feature extractor are used), or train on the demo corpus"
        )
    return build_demo_processor(
        corpus,
        model.config.audio_config,
        cache_dir=Path(data_args.cache_dir) / "processors",
        max_length_s=data_args.max_audio_seconds,
    )


def apply_lora(model: SupClapModel, model_args: ModelArguments) -> torch.nn.Module:
    """Wrap the towers in LoRA adapters (PEFT); the loss parameters stay trainable."""
    if model_args.lora_r <= 0:
        return model
    from ..peft_utils import get_lora_model

    return get_lora_model(
        model,
        model_args.lora_towers,
        r=model_args.lora_r,
        alpha=model_args.lora_alpha,
        dropout=model_args.lora_dropout,
    )


def _unwrap_supclap(accelerator: Accelerator, model: torch.nn.Module) -> SupClapModel:
    """The SupClapModel inside DDP / PEFT wrappers."""
    inner = accelerator.unwrap_model(model)
    return inner.get_base_model() if hasattr(inner, "get_base_model") else inner


OPTIMIZERS = ("adamw_torch_fused", "adamw_torch")
# Devices with a fused AdamW kernel in torch >= 2.4 (torch.utils._foreach_utils lists the same).
_FUSED_ADAMW_DEVICES = ("cpu", "cuda", "mps", "xpu")


def build_optimizer(model: torch.nn.Module, train_args: TrainArguments) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases, norms, logit scales and loss parameters (as CLIP does).

    ``--optim adamw_torch_fused`` (default, as the Trainer's) updates every parameter in one fused kernel;
    torch's default per-tensor loop costs ~6 ms per step on the small preset (docs/BENCHMARKS.md).
    """
    if train_args.optim not in OPTIMIZERS:
        raise ValueError(f"--optim must be one of {OPTIMIZERS}, got {train_args.optim!r}")
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        scalar_or_vector = param.ndim < 2 or "logit_scale" in name or "loss_fn" in name
        (no_decay if scalar_or_vector else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": train_args.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    fused = train_args.optim == "adamw_torch_fused"
    params = decay + no_decay
    if fused and not all(p.device.type in _FUSED_ADAMW_DEVICES and p.is_floating_point() for p in params):
        logger.warning("--optim adamw_torch_fused: no fused kernel for these parameters, using adamw_torch")
        fused = False
    return torch.optim.AdamW(
        groups,
        lr=train_args.learning_rate,
        betas=(train_args.adam_beta1, train_args.adam_beta2),
        eps=train_args.adam_epsilon,
        fused=fused or None,
    )


def _any_process(accelerator: Accelerator, flag: bool) -> bool:
    """True on every process if ``flag`` is True on any (so all processes take the same branch)."""
    value = torch.tensor([1.0 if flag else 0.0], device=accelerator.device)
    return bool(accelerator.reduce(value, reduction="sum").item() > 0)


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------
@dataclass
class _Run:
    """What the steps, validation and the final save share (one object instead of ten arguments)."""

    accelerator: Accelerator
    model: torch.nn.Module  # as prepared: DDP and PEFT wrappers included
    supclap: SupClapModel  # the SupClapModel inside those wrappers
    processor: ClapProcessor
    splits: dict[str, list[AudioTextRecord] | None]
    model_args: ModelArguments
    data_args: DataArguments
    train_args: TrainArguments
    corpus: str
    data_report: dict[str, Any] | None = None

    @property
    def output_dir(self) -> Path:
        return Path(self.train_args.output_dir)


def train(model_args: ModelArguments, data_args: DataArguments, train_args: TrainArguments) -> dict[str, Any]:
    """Train, validate, checkpoint, test and save. Returns the final metrics (also in metrics.json)."""
    if data_args.on_bad_sample not in ("error", "skip"):
        raise ValueError(f"--on_bad_sample must be 'error' or 'skip', got {data_args.on_bad_sample!r}")
    report_to = [t for t in train_args.report_to if t != "none"]
    output_dir = Path(train_args.output_dir)
    accelerator = Accelerator(
        cpu=train_args.cpu,
        mixed_precision=train_args.mixed_precision,
        gradient_accumulation_steps=train_args.gradient_accumulation_steps,
        log_with=report_to or None,
        project_dir=str(output_dir),
    )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    set_seed(train_args.seed)

    corpus, is_demo = resolve_data(data_args, accelerator)
    splits = load_splits(data_args, corpus)
    model = build_model(model_args)
    processor = build_processor(model_args, data_args, model, corpus, is_demo)
    model = apply_lora(model, model_args)
    model.train()  # from_pretrained returns the model in eval mode (BatchNorm, dropout)

    splits, data_report = _check_data(splits, processor, data_args, accelerator, corpus)
    dataset = AudioTextDataset(
        splits["train"], processor.feature_extractor.sampling_rate, on_bad_sample=data_args.on_bad_sample
    )
    if len(dataset) < 2:
        raise ValueError(
            f"the training set {corpus} has {len(dataset)} usable clip(s) "
            f"({data_report['skipped_samples']['by_split'].get('train', 0)} bad skipped); "
            "contrastive training needs >= 2"
        )
    collator = SupClapCollator(processor, max_text_length=data_args.max_text_length, seed=train_args.seed)
    sampler = EpochPermutationSampler(len(dataset), train_args.seed)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=train_args.per_device_train_batch_size,
        sampler=sampler,
        collate_fn=collator,
        num_workers=data_args.num_workers,
        drop_last=len(dataset) >= train_args.per_device_train_batch_size * accelerator.num_processes,
        generator=torch.Generator().manual_seed(train_args.seed),
    )
    optimizer = build_optimizer(model, train_args)
    scheduler = get_scheduler(
        train_args.lr_scheduler_type,
        optimizer=optimizer,
        # Accelerate steps a prepared scheduler once per process per optimizer step.
        num_warmup_steps=train_args.warmup_steps * accelerator.num_processes,
        num_training_steps=train_args.max_steps * accelerator.num_processes,
    )
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    run = _Run(
        accelerator=accelerator,
        model=model,
        supclap=_unwrap_supclap(accelerator, model),
        processor=processor,
        splits=splits,
        model_args=model_args,
        data_args=data_args,
        train_args=train_args,
        corpus=corpus,
        data_report=data_report,
    )
    state = _initial_state(run, optimizer, scheduler)

    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
    if report_to:
        accelerator.init_trackers("runs", config=_flat_config(model_args, data_args, train_args))
    probe = None
    if train_args.drift_probe_steps > 0:
        from ..diagnostics import DriftProbe

        probe = DriftProbe.from_dataset(dataset, collator, size=min(64, len(dataset)))

    _train_steps(run, loader, sampler, dataset, optimizer, scheduler, state, probe)
    state["num_processes"] = accelerator.num_processes
    state["device"] = str(accelerator.device)
    if probe is not None:
        radii = probe.radii(run.supclap)
        state["radius_values"] = radii.tolist() if radii is not None else None
    return _finish(run, state)


def _check_data(splits, processor, data_args, accelerator, corpus):
    """Decode every clip of every split once, before the first step.

    With --on_bad_sample error a bad sample stops the run here, naming it; with skip it is dropped,
    counted and reported at the end (counts taken in DataLoader workers would be lost). Also reports
    duplicate clips and train/test leakage.
    """
    splits, data_report = check_splits(
        splits, processor.feature_extractor.sampling_rate, data_args.on_bad_sample
    )
    if accelerator.is_main_process and (summary := format_data_report(data_report)):
        logger.warning("data checks:\n%s", summary)
    if splits["train"] is None:
        raise ValueError(f"every sample of the training set {corpus} is bad: nothing to train on")
    return splits, data_report


def _initial_state(run: _Run, optimizer, scheduler) -> dict[str, Any]:
    """A fresh run's state, or the one of --resume_from_checkpoint (which also restores weights, RNGs)."""
    state: dict[str, Any] = {
        "step": 0,
        "epoch": 0,
        "batch_in_epoch": 0,
        "best_score": None,
        "best_step": None,
        "history": [],
        "validation": [],
        "nonfinite_skipped": 0,
        "train_seconds": 0.0,
    }
    resume = run.train_args.resume_from_checkpoint
    if not resume:
        return state
    path = checkpointing.latest_checkpoint(run.output_dir) if resume == "latest" else Path(resume)
    if path is None:
        logger.info(
            "--resume_from_checkpoint latest: no complete checkpoint in %s, starting fresh", run.output_dir
        )
        return state
    state = checkpointing.load_checkpoint(path, run.accelerator, run.model, optimizer, scheduler)
    logger.info("resumed from %s at step %d", path, state["step"])
    return state


class _NonFiniteGuard:
    """One optimizer step's watch for non-finite losses and gradients, with one host sync per step.

    Each micro-batch's loss is checked on the device (no sync: the CPU keeps queueing GPU work); at the
    optimizer step the flags of every micro-batch and of the gradient norm are reduced over processes and
    read once. A non-finite value stops the run naming the step and batch, or (``--skip_nonfinite``)
    skips the whole step and puts back the buffers its forwards changed (BatchNorm running statistics),
    so nothing non-finite reaches the weights or the saved model. Under fp16 a non-finite gradient is
    the GradScaler's business (it skips the step and lowers the scale), not an error.
    """

    def __init__(self, model: torch.nn.Module, train_args: TrainArguments) -> None:
        self.model, self.train_args = model, train_args
        self._losses: list[tuple[str, torch.Tensor]] = []
        self._saved_buffers: dict[str, torch.Tensor] | None = None

    def before_forward(self) -> None:
        if self.train_args.skip_nonfinite and self._saved_buffers is None:
            self._saved_buffers = _buffers(self.model)

    def note_loss(self, loss: torch.Tensor, where: str) -> None:
        self._losses.append((where, loss.detach().float().reshape(())))

    def step_is_bad(self, accelerator: Accelerator, grad_norm: torch.Tensor | None, where: str) -> bool:
        """Whether the step must be skipped (raises NonFiniteLossError unless --skip_nonfinite)."""
        flags = [~torch.isfinite(loss) for _, loss in self._losses]
        if grad_norm is not None:
            flags.append(~torch.isfinite(torch.as_tensor(grad_norm, device=accelerator.device).float()))
        if not flags:
            return False
        bad = accelerator.reduce(torch.stack(flags).float(), reduction="sum").gt(0).tolist()  # the sync
        for (batch_where, loss), loss_bad in zip(self._losses, bad):
            if loss_bad:
                _stop_or_skip(
                    self.train_args,
                    f"loss at {batch_where}: {float(loss)}",
                    f"{batch_where}: non-finite loss",
                )
                return True
        if grad_norm is not None and bad[-1]:
            _stop_or_skip(self.train_args, f"gradient norm at {where}", f"{where}: non-finite gradient")
            return True
        return False

    @property
    def num_micro_batches(self) -> int:
        return len(self._losses)

    def undo_buffers(self) -> None:
        _restore_buffers(self.model, self._saved_buffers)

    def next_step(self) -> None:
        self._losses, self._saved_buffers = [], None


def _train_steps(run: _Run, loader, sampler, dataset, optimizer, scheduler, state, probe) -> None:
    """Optimizer steps until --max_steps or --max_train_minutes (validating and checkpointing on the way)."""
    accelerator, train_args = run.accelerator, run.train_args
    progress = tqdm(
        total=train_args.max_steps,
        initial=state["step"],
        disable=not accelerator.is_local_main_process,
        desc="training",
    )
    started = time.monotonic() - state["train_seconds"]
    running: dict[str, list[torch.Tensor]] = {}  # loss terms since the last log, on the device
    guard = _NonFiniteGuard(run.model, train_args)
    stop = state["step"] >= train_args.max_steps
    while not stop:
        sampler.set_epoch(state["epoch"])
        dataset.set_epoch(state["epoch"])
        epoch_loader = (
            accelerator.skip_first_batches(loader, state["batch_in_epoch"])
            if state["batch_in_epoch"]
            else loader
        )
        for batch in epoch_loader:
            guard.before_forward()
            with accelerator.accumulate(run.model):
                _forward_backward(run, batch, state, running, guard)
                if accelerator.sync_gradients:
                    _optimizer_step(run, optimizer, scheduler, state, running, guard)
            state["batch_in_epoch"] += 1
            if not accelerator.sync_gradients:
                continue
            guard.next_step()
            run.supclap.clamp_logit_scales_()
            state["step"] += 1
            progress.update(1)
            state["train_seconds"] = time.monotonic() - started
            if stop := _after_step(run, optimizer, scheduler, state, running, probe, progress):
                break
        else:
            state["epoch"] += 1
            state["batch_in_epoch"] = 0
    progress.close()


def _forward_backward(run: _Run, batch, state, running, guard: _NonFiniteGuard) -> None:
    """One micro-batch: forward (the model computes and gathers the loss), backward, keep its terms.

    A non-finite loss is only noted here (checked at the optimizer step): its gradients are discarded
    with the step, and checking now would stall the GPU queue once per micro-batch.
    """
    outputs = run.model(**batch)
    guard.note_loss(
        outputs.loss, f"step {state['step'] + 1} (epoch {state['epoch']}, batch {state['batch_in_epoch']})"
    )
    run.accelerator.backward(outputs.loss)
    _accumulate(running, outputs)


def _optimizer_step(run: _Run, optimizer, scheduler, state, running, guard: _NonFiniteGuard) -> None:
    """Clip and step, or skip a step whose loss or gradient was non-finite."""
    accelerator = run.accelerator
    grad_norm = accelerator.clip_grad_norm_(
        run.model.parameters(), run.train_args.max_grad_norm or float("inf")
    )
    # Under fp16 the GradScaler skips steps with inf/NaN gradients itself (and lowers its scale).
    checked_norm = grad_norm if accelerator.scaler is None else None
    where = f"step {state['step'] + 1} (epoch {state['epoch']})"
    if guard.step_is_bad(accelerator, checked_norm, where):
        state["nonfinite_skipped"] += 1
        guard.undo_buffers()
        _forget_micro_batches(running, guard.num_micro_batches)
    else:
        if grad_norm is not None:
            running.setdefault("grad_norm", []).append(torch.as_tensor(grad_norm).detach().float())
        optimizer.step()
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def _after_step(run: _Run, optimizer, scheduler, state, running, probe, progress) -> bool:
    """Log, probe, validate and checkpoint after step ``state['step']``; True when the run is over."""
    accelerator, train_args, step = run.accelerator, run.train_args, state["step"]
    if step % train_args.logging_steps == 0 or step == train_args.max_steps:
        record: dict[str, Any] = _log_record(accelerator, running)
        record.update(
            step=step,
            lr=scheduler.get_last_lr()[0],
            logit_scale=float(run.supclap.logit_scales()[0].detach()),
        )
        running.clear()
        state["history"].append(record)
        accelerator.log({f"train/{k}": v for k, v in record.items() if k != "step"}, step=step)
        progress.set_postfix(loss=f"{record.get('loss', float('nan')):.3f}")
    if probe is not None and step % train_args.drift_probe_steps == 0:
        drift = probe.measure(run.supclap)
        state.setdefault("drift", []).append({"step": step, **drift})
        accelerator.log({f"drift/{k}": v for k, v in drift.items()}, step=step)

    stop = step >= train_args.max_steps
    if not stop and train_args.max_train_minutes is not None:
        # Clocks differ between processes: a collective makes them agree (only needed with a time budget).
        stop = _any_process(accelerator, state["train_seconds"] > 60 * train_args.max_train_minutes)
    if run.splits["validation"] and (stop or (train_args.eval_steps and step % train_args.eval_steps == 0)):
        _validate(run, state)
    if train_args.save_steps and (stop or step % train_args.save_steps == 0):
        checkpointing.save_checkpoint(
            accelerator, run.model, optimizer, scheduler, state, run.output_dir, train_args.save_total_limit
        )
    return stop


def _stop_or_skip(train_args: TrainArguments, error: str, warning: str) -> None:
    """A non-finite step: stop naming it, or (with --skip_nonfinite) log that it is skipped."""
    if not train_args.skip_nonfinite:
        raise NonFiniteLossError(
            f"non-finite {error}. Lower the learning rate, check the inputs of this batch, or pass "
            "--skip_nonfinite to skip such steps."
        )
    logger.warning("skipping %s", warning)


def _buffers(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: buffer.detach().clone() for name, buffer in model.named_buffers()}


@torch.no_grad()
def _restore_buffers(model: torch.nn.Module, saved: dict[str, torch.Tensor] | None) -> None:
    """Put back the buffers of the start of a skipped step (BatchNorm running stats and counts)."""
    for name, buffer in model.named_buffers():
        if saved is not None and name in saved:
            buffer.copy_(saved[name])


def _accumulate(running: dict[str, list[torch.Tensor]], outputs) -> None:
    """Keep this micro-batch's loss terms as device tensors (read once per logging step, not per batch)."""
    for name in LOSS_TERM_OUTPUTS:
        value = getattr(outputs, name, None)
        if value is not None:
            running.setdefault(name, []).append(value.detach().float().reshape(()))


def _forget_micro_batches(running: dict[str, list[torch.Tensor]], count: int) -> None:
    """Drop the terms of a skipped step's ``count`` micro-batches (the last ones noted)."""
    for name in LOSS_TERM_OUTPUTS:
        if count and name in running:
            del running[name][-count:]


def _log_record(accelerator: Accelerator, running: dict[str, list[torch.Tensor]]) -> dict[str, float]:
    """Mean of each term since the last log, averaged over processes: one reduce, one host sync."""
    names = [name for name, values in running.items() if values]
    if not names:
        return {}
    means = torch.stack([torch.stack(running[name]).to(accelerator.device).mean() for name in names])
    return dict(zip(names, accelerator.reduce(means, reduction="mean").tolist()))


def _validate(run: _Run, state: dict[str, Any]) -> None:
    """Validation R@1 on the main process; keeps ``best/`` when the mean R@1 improves."""
    accelerator, train_args = run.accelerator, run.train_args
    if accelerator.is_main_process:
        results = evaluate_records(
            run.supclap,
            run.processor,
            run.splits["validation"],
            batch_size=train_args.per_device_eval_batch_size,
            seed=train_args.seed,
            zero_shot=False,
            on_bad_sample=run.data_args.on_bad_sample,
        )
        score = mean_recall_at_1(results)
        retrieval = results["retrieval"]
        entry = {
            "step": state["step"],
            "mean_R@1": score,
            "t2a_R@1": retrieval["t2a_R@1"],
            "a2t_R@1": retrieval["a2t_R@1"],
        }
        state["validation"].append(entry)
        accelerator.log({f"validation/{k}": v for k, v in entry.items() if k != "step"}, step=state["step"])
        if state["best_score"] is None or score > state["best_score"]:
            state["best_score"], state["best_step"] = score, state["step"]
            run.supclap.save_pretrained(run.output_dir / "best", safe_serialization=True)
        logger.info(
            "validation at step %d: mean R@1 %.2f (best %.2f at step %s)",
            state["step"],
            score,
            state["best_score"],
            state["best_step"],
        )
    accelerator.wait_for_everyone()
    # Every process needs the same best score in its state (it is saved in the checkpoint).
    state.update(
        _broadcast_json(accelerator, {k: state[k] for k in ("best_score", "best_step", "validation")})
    )


def _broadcast_json(accelerator: Accelerator, payload: dict) -> dict:
    if accelerator.num_processes == 1:
        return payload
    import torch.distributed as dist

    holder = [payload]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def _finish(run: _Run, state: dict[str, Any]) -> dict[str, Any]:
    """Test the best validation model, save it with processor, card, metrics and plots, push if asked."""
    accelerator, train_args, output_dir = run.accelerator, run.train_args, run.output_dir
    accelerator.wait_for_everyone()
    results: dict[str, Any] = {"train_state": {k: v for k, v in state.items() if k != "history"}}
    if run.data_report is not None:
        results["skipped_samples"] = run.data_report["skipped_samples"]
        results["data_checks"] = {k: v for k, v in run.data_report.items() if k != "skipped_samples"}
    if accelerator.is_main_process:
        best = output_dir / "best"
        if state["best_step"] is not None and best.is_dir():
            # The final model is the best on validation, not merely the last.
            from safetensors.torch import load_file

            run.supclap.load_state_dict(load_file(best / "model.safetensors"), strict=False)
        final_model = run.supclap
        if run.model_args.lora_r > 0:
            final_model = accelerator.unwrap_model(run.model).merge_and_unload()
        if run.splits.get("test"):
            results["test"] = evaluate_records(
                final_model,
                run.processor,
                run.splits["test"],
                batch_size=train_args.per_device_eval_batch_size,
                seed=train_args.seed,
                template=run.data_args.zero_shot_template,
                on_bad_sample=run.data_args.on_bad_sample,
            )
            print(f"\nTest results ({run.corpus}, test split):\n" + format_results(results["test"]))
        final_model.save_pretrained(output_dir, safe_serialization=True)
        run.processor.save_pretrained(output_dir)
        results["history"] = state["history"]
        (output_dir / "metrics.json").write_text(json.dumps(results, indent=2, default=str))
        _write_card_plots_and_push(run, final_model, results)
        if summary := format_data_report(run.data_report):
            print("\nData checks:\n" + summary)
        print(f"\nSaved model, processor, model card and metrics to {output_dir}")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return results


def _write_card_plots_and_push(run: _Run, final_model: SupClapModel, results: dict[str, Any]) -> None:
    from ..hub import write_model_card

    write_model_card(
        run.output_dir,
        final_model.config,
        train_args=asdict(run.train_args),
        data_description=str(run.corpus),
        results=results.get("test"),
        base_model=run.model_args.model_name_or_path,
    )
    try:
        from ..diagnostics import save_training_plots

        save_training_plots(results, run.output_dir)
    except ImportError:  # plotting is optional (matplotlib)
        logger.info("matplotlib not installed: no plots")
    if run.train_args.push_to_hub:
        from ..hub import push_output_folder

        push_output_folder(
            run.output_dir, run.train_args.hub_model_id, private=run.train_args.hub_private_repo
        )


def _flat_config(*argument_sets) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for arguments in argument_sets:
        for key, value in asdict(arguments).items():
            flat[key] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return flat
