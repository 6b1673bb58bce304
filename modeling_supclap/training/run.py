"""Everything a training run needs, built once from the argument dataclasses: :func:`build_run`.

The pieces are separate functions (model, processor, LoRA, optimizer, scheduler) so that tests,
benchmarks and other scripts can build one of them alone; :func:`build_run` wires them in order:

1. the ``Accelerator`` (devices, processes, mixed precision, trackers), the output folder's lock (and,
   for a new run, no earlier run's checkpoints in it) and the seed;
2. the corpus (``--train_data`` or the demo), the model and its processor (``model_setup.py``: a
   checkpoint, towers of any family, or a preset from scratch), LoRA if asked;
3. the arguments of the data as a ``TrainingDataSpec``;
4. the data (``data.sources.build_training_data``: up-front checks, the training source);
5. optimizer and scheduler, everything prepared by Accelerate.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import InitProcessGroupKwargs, TorchDynamoPlugin, set_seed
from transformers import ProcessorMixin, get_scheduler

from ..data.features import resolve_log_mel_on_device
from ..data.sources import TrainingData, TrainingDataSpec, build_training_data
from ..demo import build_demo_corpus
from ..lora import unwrap_supclap
from ..model.modeling_supclap import SupClapModel
from ..model.modeling_supclap_dual_encoder import SupClapDualEncoderModel
from . import checkpointing
from .arguments import DataArguments, ModelArguments, TrainArguments
from .model_setup import Corpus, build_model_and_processor
from .resilience import OutputDirLock

logger = logging.getLogger(__name__)

OPTIMIZERS = ("adamw_torch_fused", "adamw_torch")
# Devices with a fused AdamW kernel in torch >= 2.4 (torch.utils._foreach_utils lists the same).
_FUSED_ADAMW_DEVICES = ("cpu", "cuda", "mps", "xpu")


def resolve_corpus(data_args: DataArguments, accelerator: Accelerator) -> Corpus:
    """``--train_data``, or the demo corpus (built once, by the main process first, and cached)."""
    if data_args.train_data is not None:
        return Corpus(data_args.train_data)
    languages = tuple(data_args.demo_languages or ("en",))
    name = f"demo_corpus_{data_args.demo_num_clips}"
    if languages != ("en",):
        name += "_" + "-".join(languages)
    corpus_dir = Path(data_args.cache_dir) / name
    with accelerator.main_process_first():
        build_demo_corpus(corpus_dir, num_clips=data_args.demo_num_clips, languages=languages)
    return Corpus(str(corpus_dir), is_demo=True)


def training_data_spec(
    data_args: DataArguments, location: str, batch_size: int, seed: int
) -> TrainingDataSpec:
    """The data layer's spec of a run's data, from its arguments (``log_mel_on_device`` is decided once the
    processor is known: :func:`~modeling_supclap.data.features.resolve_log_mel_on_device`)."""
    return TrainingDataSpec(
        location=location,
        columns=data_args.columns(),
        train_split=data_args.train_split,
        validation_data=data_args.validation_data,
        test_data=data_args.test_data,
        streaming=data_args.streaming,
        on_bad_sample=data_args.on_bad_sample,
        batch_size=batch_size,
        seed=seed,
        num_workers=data_args.dataloader_num_workers,
        max_text_length=data_args.max_text_length,
        caption_language_weights=data_args.caption_language_weights,
        shuffle_buffer_size=data_args.shuffle_buffer_size,
    )


@dataclass
class TrainingRun:
    """What the steps, validation and the final save share."""

    accelerator: Accelerator
    model: torch.nn.Module  # as prepared: DDP and PEFT wrappers included
    supclap: SupClapModel | SupClapDualEncoderModel  # the model inside those wrappers
    processor: ProcessorMixin
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    data: TrainingData
    model_args: ModelArguments
    data_args: DataArguments
    train_args: TrainArguments
    lock: OutputDirLock | None = field(default=None, repr=False)  # held by the main process

    @property
    def output_dir(self) -> Path:
        return Path(self.train_args.output_dir)


def build_accelerator(train_args: TrainArguments) -> Accelerator:
    report_to = [tracker for tracker in train_args.report_to if tracker != "none"]
    return Accelerator(
        cpu=train_args.use_cpu,
        mixed_precision=train_args.mixed_precision,
        log_with=report_to or None,
        project_dir=train_args.output_dir,
        # Collectives give up on a dead or hung peer after --ddp_timeout (resilience.py names it).
        kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(seconds=train_args.ddp_timeout))],
        # --torch_compile: Accelerate compiles the prepared model (dynamic shapes: captions vary in length).
        dynamo_plugin=TorchDynamoPlugin(backend="inductor", mode=train_args.torch_compile_mode, dynamic=True)
        if train_args.torch_compile
        else None,
    )


def apply_lora(model: torch.nn.Module, model_args: ModelArguments) -> torch.nn.Module:
    """Wrap the towers in LoRA adapters (PEFT); the loss parameters stay trainable."""
    if model_args.lora_r <= 0:
        return model
    from ..lora import get_lora_model

    return get_lora_model(
        model,
        model_args.lora_towers,
        r=model_args.lora_r,
        alpha=model_args.lora_alpha,
        dropout=model_args.lora_dropout,
    )


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


def build_scheduler(
    optimizer: torch.optim.Optimizer, train_args: TrainArguments, num_processes: int
) -> torch.optim.lr_scheduler.LRScheduler:
    # Accelerate steps a prepared scheduler once per process per optimizer step.
    return get_scheduler(
        train_args.lr_scheduler_type,
        optimizer=optimizer,
        num_warmup_steps=train_args.warmup_steps * num_processes,
        num_training_steps=train_args.max_steps * num_processes,
    )


def _start_clean(train_args: TrainArguments, accelerator: Accelerator) -> None:
    """A new run must not leave an earlier run's checkpoints beside its own (``--resume_from_checkpoint
    latest`` takes the newest step, whichever run wrote it): stop, or remove them with
    ``--overwrite_output_dir``."""
    earlier = ", ".join(path.name for path in checkpointing.list_checkpoints(train_args.output_dir))
    if not earlier:
        return
    if not train_args.overwrite_output_dir:
        raise ValueError(
            f"{train_args.output_dir} holds checkpoints of an earlier run ({earlier}): continue it with "
            "--resume_from_checkpoint latest, start over with --overwrite_output_dir (removes them), or pick "
            "another --output_dir"
        )
    if accelerator.is_main_process:
        checkpointing.remove_checkpoints(train_args.output_dir)
        logger.info("--overwrite_output_dir: removed the earlier run's %s", earlier)
    accelerator.wait_for_everyone()


def build_run(
    model_args: ModelArguments, data_args: DataArguments, train_args: TrainArguments
) -> TrainingRun:
    """Build and prepare everything (see the module docstring for the order)."""
    accelerator = build_accelerator(train_args)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    # First of all: refuse an output folder another run is using (before any slow data checks).
    lock = OutputDirLock(train_args.output_dir, take_over=train_args.take_over_output_dir)
    if accelerator.is_main_process:
        lock.acquire()
    if not train_args.resume_from_checkpoint:
        _start_clean(train_args, accelerator)
    set_seed(train_args.seed)

    corpus = resolve_corpus(data_args, accelerator)
    data_spec = training_data_spec(
        data_args, corpus.location, train_args.per_device_train_batch_size, train_args.seed
    )
    setup = build_model_and_processor(model_args, data_args, corpus, data_spec)
    model, processor, splits = setup.model, setup.processor, setup.splits
    on_device = resolve_log_mel_on_device(data_args.log_mel_on_device, accelerator.device.type, processor)
    data_spec = replace(data_spec, log_mel_on_device=on_device)
    model = apply_lora(model, model_args)
    model.train()  # from_pretrained returns the model in eval mode (BatchNorm, dropout)

    data = build_training_data(data_spec, processor, log_report=accelerator.is_main_process, splits=splits)
    optimizer = build_optimizer(model, train_args)
    scheduler = build_scheduler(optimizer, train_args, accelerator.num_processes)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    data.train.prepare(accelerator)
    return TrainingRun(
        accelerator=accelerator,
        model=model,
        supclap=unwrap_supclap(model),
        processor=processor,
        optimizer=optimizer,
        scheduler=scheduler,
        data=data,
        model_args=model_args,
        data_args=data_args,
        train_args=train_args,
        lock=lock,
    )
