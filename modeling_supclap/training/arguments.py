"""Command-line arguments of ``train_supclap.py`` (``HfArgumentParser`` dataclasses).

Every field's ``help`` is what ``--help`` prints. Loss flags map one-to-one onto
:class:`~modeling_supclap.SupClapConfig` fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

LOSS_FIELDS = (
    "base_loss",
    "svr_mode",
    "svr_bilateral",
    "svr_weight",
    "constraint_weight",
    "radius_init",
    "predictor_top_k",
    "predictor_detach_input",
    "logit_scale_max",
    "freeze_logit_scale",
)


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "A SupClap or plain CLAP checkpoint (local folder or Hub id, e.g. "
            "laion/clap-htsat-unfused). Unset: build the --preset architecture from scratch."
        },
    )
    preset: str = field(
        default="small",
        metadata={"help": "Architecture when training from scratch: 'tiny' (~70k params) or 'small' (~1M)."},
    )
    trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Allow code from --model_name_or_path to run (see README: security)."},
    )
    base_loss: str = field(
        default="infonce", metadata={"help": "Base contrastive loss: 'infonce' or 'siglip'."}
    )
    svr_mode: str = field(
        default="dynamic", metadata={"help": "Support Vector Regularization: 'none', 'static' or 'dynamic'."}
    )
    svr_bilateral: bool = field(default=True, metadata={"help": "Support vectors on the audio side too."})
    svr_weight: float = field(default=1.0, metadata={"help": "alpha: weight of the SVR term."})
    constraint_weight: float = field(
        default=0.01, metadata={"help": "beta: weight of the radius constraint."}
    )
    radius_init: float = field(default=0.1, metadata={"help": "Initial semantic radius R."})
    predictor_top_k: int = field(
        default=16,
        metadata={"help": "DynamicSVR predictor input: positive + top-(k-1) negative similarities."},
    )
    predictor_detach_input: bool = field(
        default=True, metadata={"help": "Feed the radius predictor detached similarities."}
    )
    logit_scale_max: float = field(default=100.0, metadata={"help": "Clamp of the logit scale 1/tau."})
    freeze_logit_scale: bool = field(default=False, metadata={"help": "Keep the logit scale fixed."})
    lora_r: int = field(default=0, metadata={"help": "LoRA rank; 0 trains all weights (no LoRA)."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout."})
    lora_towers: str = field(
        default="both", metadata={"help": "Towers that get LoRA adapters: 'text', 'audio' or 'both'."}
    )

    def loss_overrides(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in LOSS_FIELDS}


@dataclass
class DataArguments:
    train_data: str | None = field(
        default=None,
        metadata={
            "help": "Training corpus: audiofolder, .csv/.jsonl, save_to_disk folder or Hub dataset id. "
            "Unset: the offline demo corpus (built and cached under --cache_dir)."
        },
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
    audio_column: str = field(default="audio", metadata={"help": "Column holding an audio path or bytes."})
    caption_columns: list[str] = field(
        default_factory=lambda: ["captions"],
        metadata={"help": "Caption column(s); each may hold a string or a list of strings."},
    )
    label_column: str = field(default="label", metadata={"help": "Class label column (for zero-shot)."})
    max_text_length: int = field(default=64, metadata={"help": "Token limit of captions (longer are cut)."})
    max_audio_seconds: float | None = field(
        default=None, metadata={"help": "Audio window of the feature extractor (default: the processor's)."}
    )
    demo_num_clips: int = field(default=2400, metadata={"help": "Size of the demo corpus."})
    cache_dir: str = field(default=".cache/supclap", metadata={"help": "Where the demo corpus is cached."})
    num_workers: int = field(
        default=1, metadata={"help": "DataLoader worker processes (decoding, features)."}
    )
    on_bad_sample: str = field(
        default="error", metadata={"help": "'error': stop naming the bad file; 'skip': drop it and count it."}
    )
    zero_shot_template: str = field(
        default="This is a sound of {label}.", metadata={"help": "Prompt of zero-shot classification."}
    )


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
        default=1, metadata={"help": "Micro-batches per optimizer step."}
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
        default="no", metadata={"help": "'no', 'fp16' or 'bf16' (bf16 works on CPU)."}
    )
    cpu: bool = field(default=False, metadata={"help": "Force the CPU even where a GPU is present."})
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
    drift_probe_steps: int = field(
        default=100, metadata={"help": "Log drift diagnostics on a fixed probe batch every N steps (0: off)."}
    )
