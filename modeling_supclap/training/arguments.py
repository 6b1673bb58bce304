"""Command-line arguments of training (``HfArgumentParser`` dataclasses), and the corpus arguments every
command that reads a corpus shares.

One vocabulary for every command line of the project: transformers' ``TrainingArguments`` names
wherever one exists (``--per_device_eval_batch_size``, ``--dataloader_num_workers``, ``--use_cpu``,
``--hub_model_id``), snake_case everywhere (``HfArgumentParser`` also accepts the hyphenated
spelling), and the same name for the same thing in train, eval, hub and the benchmarks. Old
spellings stay as deprecated aliases (``aliases`` in a field's metadata): they work, and
:func:`parse_arguments` warns once naming the new flag.

Every field's ``help`` is what ``--help`` prints. Loss flags map one-to-one onto
:class:`~modeling_supclap.SupClapConfig` fields, their choices come from the loss registry, and a
loss flag that is not given keeps the value of the checkpoint (``--model_name_or_path``) or, from
scratch, the config's default.
"""

from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass
from typing import Any, get_type_hints

from ..data.captions import CaptionLanguages, parse_language_weights
from ..data.long_audio import LONG_AUDIO_POLICIES, LongAudioPolicy
from ..data.records import ON_BAD_SAMPLE_CHOICES, ColumnSpec, check_on_bad_sample
from ..demo.corpus import check_demo_languages
from ..demo.languages import DEMO_LANGUAGES
from ..model.configuration_supclap import PRESET_SETTINGS, PRESETS, TEXT_POOLINGS, SupClapConfig
from ..model.configuration_supclap_dual_encoder import AUDIO_TOWER_FAMILIES, POOLINGS, TEXT_TOWER_FAMILIES
from ..model.losses import SupClapLossSettings

_DEFAULTS = SupClapConfig.__dataclass_fields__


def _config_flag(name: str, help: str, default_help: str | None = None, **metadata: Any) -> Any:
    """A flag that sets a config field: ``None`` unless given, its help naming the field's default."""
    default = _DEFAULTS[name].default
    if isinstance(default, bool):  # --flag alone means True, as for HfArgumentParser's bool fields
        metadata.update(nargs="?", const=True)
    help = f"{help} Default: the checkpoint's, else {default_help or repr(default)}."
    return field(default=None, metadata={"help": help, **metadata})


def _loss_flags() -> list[tuple[str, Any, Any]]:
    """One flag per loss setting (``SupClapLossSettings``: its help, choices and default, written once)."""
    hints = get_type_hints(SupClapLossSettings)
    flags = []
    for setting in SupClapLossSettings.loss_fields():
        extra = {k: v for k, v in setting.metadata.items() if k != "help"}
        flag = _config_flag(setting.name, setting.metadata["help"], **extra)
        flags.append((setting.name, hints[setting.name] | None, flag))
    return flags


# The multilingual demo's captions cut to 64 tokens by a 1,000-token BPE lose their ends (French and
# Spanish p99 ~64 tokens); 2,000 tokens bring every language's p99 to <= 42.
MULTILINGUAL_DEMO_VOCAB_SIZE = 2000


@dataclass
class _ModelArguments:
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "A SupClap or plain CLAP checkpoint (local folder or Hub id, e.g. "
            "laion/clap-htsat-unfused). Unset: build the --preset architecture from scratch."
        },
    )
    text_model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "A new model's text tower (and tokenizer) from a checkpoint of any text encoder: "
            "BERT, RoBERTa, XLM-R, ModernBERT, NLLB/M2M100 or SONAR's encoder, T5... A RoBERTa-family "
            "one goes into the CLAP model (with a CLAP audio tower or none), any other into the dual "
            "encoder."
        },
    )
    audio_model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "A new model's audio tower (and feature extractor) from a checkpoint of any audio "
            "encoder: a CLAP model's HTSAT (laion/clap-htsat-unfused: the CLAP model), or AST, Whisper, "
            "wav2vec2, HuBERT, WavLM, CED, Dasheng... (the dual encoder, SupClapDualEncoderModel)."
        },
    )
    audio_tower: str | None = field(
        default=None,
        metadata={
            "help": "A new random audio tower of this family and --preset size (the dual encoder; "
            "default with a text tower given: htsat).",
            "choices": AUDIO_TOWER_FAMILIES,
        },
    )
    text_tower: str | None = field(
        default=None,
        metadata={
            "help": "A new random text tower of this family and --preset size, with a tokenizer trained "
            "on the corpus (the dual encoder; default with an audio tower given: roberta).",
            "choices": TEXT_TOWER_FAMILIES,
        },
    )
    projection_dim: int | None = field(
        default=None,
        metadata={"help": "The dual encoder's embedding width (default: the --preset's, 64 for small)."},
    )
    audio_pooling: str | None = field(
        default=None,
        metadata={
            "help": "The dual encoder's audio pooling: auto (the family's), mean (over valid frames), "
            "pooler, cls (default: auto).",
            "choices": POOLINGS,
        },
    )
    preset: str = field(
        default="small",
        metadata={
            "help": "Architecture when training from scratch: 'tiny' (~70k params) or 'small' (~1M).",
            "choices": PRESETS.keys(),
        },
    )
    text_vocab_size: int | None = field(
        default=None,
        metadata={
            "help": "From scratch: tokens of the text tower and of the BPE tokenizer made for the corpus "
            f"(default: the preset's, {MULTILINGUAL_DEMO_VOCAB_SIZE} for a multilingual demo corpus)."
        },
    )
    trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Allow code from --model_name_or_path to run (see README: security)."},
    )
    logit_scale_init_value: float | None = _config_flag(
        "logit_scale_init_value", "Initial InfoNCE logit scale 1/tau of a new model (CLAP's 1/0.07)."
    )
    text_pooling: str | None = _config_flag(
        "text_pooling",
        "Text embedding: 'pooler' (CLAP's first-token pooler, as checkpoints were trained) or 'mean' (mean "
        "over the caption's tokens; learns faster from scratch, see docs/BENCHMARKS.md); the dual encoder "
        "also takes 'auto' (its text family's: mean) and 'cls'.",
        default_help="the preset's (the dual encoder: auto): "
        + ", ".join(
            f"{preset} {PRESET_SETTINGS.get(preset, {}).get('text_pooling', 'pooler')!r}"
            for preset in PRESETS
        ),
        choices=tuple(dict.fromkeys((*TEXT_POOLINGS, *POOLINGS))),
    )
    lora_r: int = field(default=0, metadata={"help": "LoRA rank; 0 trains all weights (no LoRA)."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout."})
    lora_towers: str = field(
        default="both",
        metadata={"help": "Towers that get LoRA adapters.", "choices": ("text", "audio", "both")},
    )

    def loss_overrides(self) -> dict[str, Any]:
        """The config fields given on the command line: the loss settings, ``logit_scale_init_value`` and
        ``text_pooling`` (the others keep the checkpoint's value, or the default)."""
        return {name: getattr(self, name) for name in CONFIG_FLAGS if getattr(self, name) is not None}


# The model's flags, then one per loss setting (generated: each documented once, in SupClapLossSettings).
ModelArguments = make_dataclass("ModelArguments", _loss_flags(), bases=(_ModelArguments,))
ModelArguments.__module__ = __name__
ModelArguments.__doc__ = "Which model to train: a checkpoint or a preset, pretrained towers, the loss, LoRA."
# The flags that set config fields (loss_overrides).
CONFIG_FLAGS = (
    *(setting.name for setting in SupClapLossSettings.loss_fields()),
    "logit_scale_init_value",
    "text_pooling",
)


@dataclass
class ColumnArguments:
    """Which columns of a corpus hold what (every command that reads a corpus)."""

    audio_column: str = field(default="audio", metadata={"help": "Column holding an audio path or bytes."})
    caption_columns: list[str] | None = field(
        default=None,
        metadata={
            "help": "Caption column(s); each may hold a string, a list of strings or {language: caption} "
            "mappings. Default: detected (captions, caption, Clotho's caption_1..caption_5 and one column "
            "per language such as caption_fr; else text) and logged."
        },
    )
    caption_languages: list[str] | None = field(
        default=None,
        metadata={
            "help": "Caption languages to use (e.g. en fr zh); default: every language present. A row "
            "without one is a counted skip for that language."
        },
    )
    default_caption_language: str = field(
        default="en",
        metadata={"help": "Language of captions whose column or cell does not name one."},
    )
    label_column: str = field(default="label", metadata={"help": "Class label column (for zero-shot)."})

    def __post_init__(self) -> None:
        # Normalised now, so that a bad code stops the run before any data is read.
        languages = CaptionLanguages.make(self.caption_languages, self.default_caption_language)
        self.caption_languages = list(languages.selected) if languages.selected else None
        self.default_caption_language = languages.default

    def columns(self) -> ColumnSpec:
        """How the corpus's columns are read (``load_records``, ``open_stream``)."""
        return ColumnSpec(
            audio_column=self.audio_column,
            caption_columns=self.caption_columns,
            label_column=self.label_column,
            caption_languages=self.caption_languages,
            default_caption_language=self.default_caption_language,
        )


@dataclass
class LongAudioArguments:
    """How clips longer than the model's window are embedded (evaluation and embedding)."""

    long_audio: str = field(
        default="windows",
        metadata={
            "help": "Clips longer than the model's window, in evaluation (validation, test, supclap-eval) "
            "and embedding: 'windows' (the renormalised mean of the embeddings of windows covering the "
            "whole clip; deterministic), 'first' (the first window) or 'random' (a seeded random crop). "
            "Training batches always take a seeded random crop.",
            "choices": LONG_AUDIO_POLICIES,
        },
    )
    window_hop_seconds: float | None = field(
        default=None,
        metadata={"help": "--long_audio windows: seconds between window starts (default: one window)."},
    )

    def __post_init__(self) -> None:
        if hasattr(super(), "__post_init__"):  # the other argument classes of a command (ColumnArguments)
            super().__post_init__()
        self.long_audio_policy()  # a clear error now, not after the model is loaded

    def long_audio_policy(self) -> LongAudioPolicy:
        """``--long_audio`` and ``--window_hop_seconds`` as one policy."""
        return LongAudioPolicy(self.long_audio, self.window_hop_seconds)


@dataclass
class CorpusArguments(LongAudioArguments, ColumnArguments):
    """How a corpus is read and scored, the same in training and evaluation."""

    max_text_length: int = field(default=64, metadata={"help": "Token limit of captions (longer are cut)."})
    dataloader_num_workers: int = field(
        default=1,
        metadata={"help": "DataLoader worker processes (decoding, features).", "aliases": ["--num_workers"]},
    )
    on_bad_sample: str = field(
        default="error",
        metadata={
            "help": "'error': stop naming the bad file; 'skip': drop it and count it.",
            "choices": ON_BAD_SAMPLE_CHOICES,
        },
    )
    zero_shot_template: str = field(
        default="This is a sound of {label}.",
        metadata={"help": "Prompt of zero-shot classification.", "aliases": ["--template"]},
    )
    zero_shot_templates: str | None = field(
        default=None,
        metadata={
            "help": "JSON file of one zero-shot prompt per language: {language: template} or {language: "
            '{"template": ..., "labels": {label: translation}}} (the demo corpus writes its own).'
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_on_bad_sample(self.on_bad_sample)


@dataclass
class DataArguments(CorpusArguments):
    def __post_init__(self) -> None:
        super().__post_init__()
        self.demo_languages = list(check_demo_languages(self.demo_languages))
        parse_language_weights(self.caption_language_weights)  # a clear error now, not in a worker

    train_data: str | None = field(
        default=None,
        metadata={
            "help": "Training corpus: audiofolder, .csv/.jsonl, save_to_disk folder or Hub dataset id; with "
            "--streaming also tar shards (a folder, a pattern such as 'shards/shard-*.tar', or URLs). "
            "Unset: the offline demo corpus (built and cached under --cache_dir)."
        },
    )
    streaming: bool = field(
        default=False,
        metadata={
            "help": "Read --train_data as a stream (datasets streaming; tar shards or a Hub dataset): "
            "nothing is listed or decoded up front, each process and worker reads its own shards, bad "
            "samples are skipped and counted as met. --max_steps defines the run."
        },
    )
    shuffle_buffer_size: int = field(
        default=1000, metadata={"help": "--streaming: samples held by each worker's shuffle buffer."}
    )
    validation_data: str | None = field(
        default=None,
        metadata={"help": "Validation corpus (default: the 'validation' split of --train_data)."},
    )
    test_data: str | None = field(
        default=None,
        metadata={"help": "Test corpus evaluated at the end (default: the 'test' split, if any)."},
    )
    train_split: str = field(default="train", metadata={"help": "Split name of the training data."})
    max_audio_seconds: float | None = field(
        default=None,
        metadata={
            "help": "Audio window of the feature extractor, whole seconds (default: the checkpoint's "
            "processor's; from scratch, the 95th-percentile length of the training clips)."
        },
    )
    sampling_rate: int | None = field(
        default=None,
        metadata={
            "help": "From scratch: the sampling rate audio is resampled to (default: the most common rate "
            "of the training clips). A checkpoint keeps its processor's."
        },
    )
    log_mel_on_device: bool | None = field(
        default=None,
        metadata={
            "help": "Compute CLAP's log-mel on the model's device (DataLoader workers then only decode, "
            "resample and crop; the same crops). Default: on a GPU.",
            "nargs": "?",
            "const": True,
        },
    )
    processor_sample_size: int = field(
        default=5000,
        metadata={
            "help": "--streaming from scratch: samples read to train the tokenizer and choose the audio "
            "settings."
        },
    )
    demo_num_clips: int = field(default=2400, metadata={"help": "Size of the demo corpus."})
    demo_languages: list[str] | None = field(
        default=None,
        metadata={
            "help": "Languages of the demo corpus' captions (each caption written in every one, from "
            f"grammars): any of {', '.join(DEMO_LANGUAGES)}. Default: en only."
        },
    )
    caption_language_weights: list[str] | None = field(
        default=None,
        metadata={
            "help": "Training draws each pair's caption language among the clip's with these weights, "
            "LANGUAGE=WEIGHT (e.g. en=2 zh=1; unlisted languages weigh 1, 0 never draws one)."
        },
    )
    cache_dir: str = field(default=".cache/supclap", metadata={"help": "Where the demo corpus is cached."})


@dataclass
class TrainArguments:
    output_dir: str = field(default="outputs/supclap-demo", metadata={"help": "Where everything is written."})
    seed: int = field(default=0, metadata={"help": "Seed of weights, data order, captions and crops."})
    max_steps: int = field(default=1200, metadata={"help": "Optimizer steps to train."})
    max_train_minutes: float | None = field(
        default=None, metadata={"help": "Stop (and evaluate, save) after this many minutes of training."}
    )
    per_device_train_batch_size: int = field(default=32, metadata={"help": "Pairs per process per step."})
    per_device_eval_batch_size: int = field(default=64, metadata={"help": "Clips per forward in evaluation."})
    gradient_accumulation_steps: int = field(
        default=1,
        metadata={
            "help": "Micro-batches per optimizer step: their gradients are averaged, which saves memory, but "
            "each micro-batch's loss only sees its own pairs as negatives (the contrastive batch is NOT "
            "enlarged)."
        },
    )
    learning_rate: float = field(default=1e-3, metadata={"help": "Peak AdamW learning rate."})
    weight_decay: float = field(
        default=0.01, metadata={"help": "AdamW weight decay (not on biases/norms/scales)."}
    )
    adam_beta1: float = field(default=0.9, metadata={"help": "AdamW beta1."})
    adam_beta2: float = field(default=0.98, metadata={"help": "AdamW beta2."})
    adam_epsilon: float = field(default=1e-6, metadata={"help": "AdamW epsilon."})
    optim: str = field(
        default="adamw_torch_fused",
        metadata={
            "help": "'adamw_torch_fused' (one fused kernel; the Trainer's default) or 'adamw_torch' "
            "(torch's per-tensor AdamW). Fused falls back to per-tensor where the device has no kernel."
        },
    )
    lr_scheduler_type: str = field(
        default="cosine",
        metadata={"help": "transformers scheduler name: cosine, linear, constant_with_warmup..."},
    )
    warmup_steps: int = field(default=100, metadata={"help": "Linear warmup steps."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm (0 disables)."})
    mixed_precision: str = field(
        default="no",
        metadata={"help": "bf16 works on CPU.", "choices": ("no", "fp16", "bf16")},
    )
    torch_compile: bool = field(
        default=False,
        metadata={
            "help": "torch.compile the model (inductor, dynamic shapes). Pays on long runs: compiling takes "
            "minutes on CPU before the first step (docs/BENCHMARKS.md)."
        },
    )
    torch_compile_mode: str | None = field(
        default=None, metadata={"help": "torch.compile mode: default, reduce-overhead, max-autotune..."}
    )
    use_cpu: bool = field(
        default=False,
        metadata={"help": "Force the CPU even where a GPU is present.", "aliases": ["--cpu"]},
    )
    eval_steps: int = field(
        default=200, metadata={"help": "Validate (R@1) every N steps and at the end; 0: only at the end."}
    )
    save_steps: int = field(
        default=200, metadata={"help": "Write a resumable checkpoint every N steps and at the end; 0: none."}
    )
    save_total_limit: int = field(default=2, metadata={"help": "Keep at most this many step checkpoints."})
    logging_steps: int = field(default=20, metadata={"help": "Log the loss terms every N steps."})
    resume_from_checkpoint: str | None = field(
        default=None,
        metadata={"help": "A checkpoint folder, or 'latest' for the newest complete one in --output_dir."},
    )
    ddp_timeout: int = field(
        default=1800,
        metadata={
            "help": "Seconds a collective waits for the other processes before the run stops naming the "
            "ones that stopped answering (a dead or hung rank)."
        },
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Start a new run in an --output_dir that holds an earlier run's checkpoints: they (and "
            "its best/ copy) are removed first. Without it such a run stops at once, since a later "
            "--resume_from_checkpoint latest would pick the newest step whichever run wrote it."
        },
    )
    take_over_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Start even if another run's lock is on --output_dir (only when that run is known to be "
            "gone, e.g. on another machine of a shared filesystem: locks of dead local runs vanish)."
        },
    )
    skip_nonfinite: bool = field(
        default=False, metadata={"help": "Skip steps with a non-finite loss/gradient instead of stopping."}
    )
    report_to: list[str] = field(
        default_factory=lambda: ["tensorboard"],
        metadata={"help": "Trackers: tensorboard, wandb, ... or none."},
    )
    push_to_hub: bool = field(default=False, metadata={"help": "Push the final model to the Hub."})
    hub_model_id: str | None = field(default=None, metadata={"help": "Repository of --push_to_hub."})
    hub_private_repo: bool = field(default=False, metadata={"help": "Create the Hub repository as private."})
    hub_space_id: str | None = field(
        default=None,
        metadata={"help": "With --push_to_hub, also push a Space serving the model with the demo app here."},
    )
    drift_probe_steps: int = field(
        default=100, metadata={"help": "Log drift diagnostics on a fixed probe batch every N steps (0: off)."}
    )
