"""Everything a training run needs, built once from the argument dataclasses: :func:`build_run`.

The pieces are separate functions (model, processor, LoRA, optimizer, scheduler) so that tests,
benchmarks and other scripts can build one of them alone; :func:`build_run` wires them in order:

1. the ``Accelerator`` (devices, processes, mixed precision, trackers), the output folder's lock and
   the seed;
2. the corpus (``--train_data`` or the demo) and the model (``--model_name_or_path`` or ``--preset``);
3. its processor (the checkpoint's; from scratch, one trained on the corpus), LoRA if asked;
4. the data (the arguments as a ``TrainingDataSpec``; ``data.sources.build_training_data``: up-front
   checks, the training source);
5. optimizer and scheduler, everything prepared by Accelerate.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import InitProcessGroupKwargs, TorchDynamoPlugin, set_seed
from transformers import AutoProcessor, ClapProcessor, get_scheduler

from ..data.processor import processor_for_corpus
from ..data.records import AudioTextRecord
from ..data.sources import TrainingData, TrainingDataSpec, build_training_data, load_splits
from ..data.sources.streaming import open_stream, stream_records
from ..demo import build_demo_corpus, build_demo_processor
from ..lora import unwrap_supclap
from ..model.configuration_supclap import SupClapConfig
from ..model.losses import SupClapLoss
from ..model.modeling_supclap import SupClapModel
from ..towers import PretrainedTowers, model_with_pretrained_towers
from .arguments import MULTILINGUAL_DEMO_VOCAB_SIZE, DataArguments, ModelArguments, TrainArguments
from .resilience import OutputDirLock

logger = logging.getLogger(__name__)

OPTIMIZERS = ("adamw_torch_fused", "adamw_torch")
# Devices with a fused AdamW kernel in torch >= 2.4 (torch.utils._foreach_utils lists the same).
_FUSED_ADAMW_DEVICES = ("cpu", "cuda", "mps", "xpu")


@dataclass(frozen=True)
class Corpus:
    """Where the training data is: a path or Hub id, and whether it is the built-in demo corpus."""

    location: str
    is_demo: bool = False


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
    """The data layer's spec of a run's data, from its arguments."""
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
    supclap: SupClapModel  # the SupClapModel inside those wrappers
    processor: ClapProcessor
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


def build_model(model_args: ModelArguments, text_vocab_size: int | None = None) -> SupClapModel:
    """``--model_name_or_path`` (given loss flags override its settings), or ``--preset`` from scratch.

    Continuing a SupClap checkpoint keeps its loss (base loss, SVR mode, radius, SigLIP bias...):
    only the loss flags given change it, and the log lists every change.
    """
    overrides = model_args.loss_overrides()
    if not model_args.model_name_or_path:
        config = SupClapConfig.from_preset(model_args.preset, **overrides)
        if text_vocab_size:
            config.text_config.vocab_size = int(text_vocab_size)
        return SupClapModel(config)
    from transformers import AutoConfig

    saved = AutoConfig.from_pretrained(
        model_args.model_name_or_path, trust_remote_code=model_args.trust_remote_code
    )
    changes = {k: (getattr(saved, k, None), v) for k, v in overrides.items() if getattr(saved, k, None) != v}
    if isinstance(saved, SupClapConfig):
        logger.info("%s: loss %s", model_args.model_name_or_path, SupClapLoss.settings_only(saved).describe())
    for name, (before, after) in changes.items():
        logger.warning("--%s changes the checkpoint's %s: %r -> %r", name, name, before, after)
    return SupClapModel.from_pretrained(
        model_args.model_name_or_path, trust_remote_code=model_args.trust_remote_code, **overrides
    )


def load_processor(
    model_args: ModelArguments,
    data_args: DataArguments,
    model: SupClapModel,
    corpus: Corpus,
    train_records: list[AudioTextRecord] | None = None,
    towers: PretrainedTowers | None = None,
) -> ClapProcessor:
    """The checkpoint's processor; from scratch, one made for the corpus (``train_records``: its
    training split, for your own data), with what was chosen logged; pretrained towers bring their
    tokenizer or feature extractor, and only the missing part is made."""
    if model_args.model_name_or_path:
        return AutoProcessor.from_pretrained(
            model_args.model_name_or_path, trust_remote_code=model_args.trust_remote_code
        )
    if towers is not None and towers.tokenizer is not None and towers.feature_extractor is not None:
        return ClapProcessor(feature_extractor=towers.feature_extractor, tokenizer=towers.tokenizer)
    made = _made_processor(data_args, model, corpus, train_records)
    if towers is not None:
        return ClapProcessor(
            feature_extractor=towers.feature_extractor or made.feature_extractor,
            tokenizer=towers.tokenizer or made.tokenizer,
        )
    return made


def _made_processor(
    data_args: DataArguments, model: SupClapModel, corpus: Corpus, train_records: list[AudioTextRecord] | None
) -> ClapProcessor:
    if corpus.is_demo:
        return build_demo_processor(
            corpus.location,
            model.config.audio_config,
            cache_dir=Path(data_args.cache_dir) / "processors",
            vocab_size=model.config.text_config.vocab_size,
            model_max_length=data_args.max_text_length,
            max_length_s=data_args.max_audio_seconds,
        )
    processor, chosen = processor_for_corpus(
        train_records or [],
        model.config.audio_config,
        vocab_size=model.config.text_config.vocab_size,
        max_text_length=data_args.max_text_length,
        sampling_rate=data_args.sampling_rate,
        max_length_s=data_args.max_audio_seconds,
    )
    logger.info("processor for %s (saved with the model): %s", corpus.location, chosen)
    return processor


def _training_records(
    data_args: DataArguments, spec: TrainingDataSpec
) -> tuple[dict | None, list[AudioTextRecord]]:
    """(the loaded splits, or None for a stream; the training records a new processor learns from)."""
    if spec.streaming:  # a stream is not listed: learn from its first samples
        stream = open_stream(spec.location, spec.train_split, spec.columns)
        return None, stream_records(stream, limit=data_args.processor_sample_size)
    splits = load_splits(spec)
    return splits, splits["train"]


def apply_lora(model: SupClapModel, model_args: ModelArguments) -> torch.nn.Module:
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
    set_seed(train_args.seed)

    corpus = resolve_corpus(data_args, accelerator)
    data_spec = training_data_spec(
        data_args, corpus.location, train_args.per_device_train_batch_size, train_args.seed
    )
    towers = None
    if model_args.text_model_name_or_path or model_args.audio_model_name_or_path:
        if model_args.model_name_or_path:
            raise ValueError(
                "--text_model_name_or_path / --audio_model_name_or_path start a new model from pretrained "
                "towers; they cannot be combined with --model_name_or_path (which continues a whole model)"
            )
        towers = model_with_pretrained_towers(
            model_args.preset,
            model_args.text_model_name_or_path,
            model_args.audio_model_name_or_path,
            model_args.trust_remote_code,
            **model_args.loss_overrides(),
        )
        model = towers.model
    else:
        text_vocab_size = model_args.text_vocab_size
        if model_args.model_name_or_path:
            if text_vocab_size:
                raise ValueError(
                    "--text_vocab_size sets a new model's vocabulary; a checkpoint keeps its own"
                )
        elif text_vocab_size is None and corpus.is_demo and len(data_args.demo_languages or ()) > 1:
            text_vocab_size = MULTILINGUAL_DEMO_VOCAB_SIZE
        model = build_model(model_args, text_vocab_size)
    splits, train_records = None, None
    if not (model_args.model_name_or_path or corpus.is_demo):  # from scratch on your own data
        splits, train_records = _training_records(data_args, data_spec)
    processor = load_processor(model_args, data_args, model, corpus, train_records, towers)
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
