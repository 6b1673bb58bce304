"""LoRA adapters (PEFT) on the text tower, the audio tower or both.

Both towers name their attention projections ``query``/``key``/``value``; the regular
expressions below pick them per tower (a plain ``["query", "value"]`` list would adapt both).

What else an adapter owns (``modules_to_save``: trained, and saved with the adapter):

* ``loss_fn``: with SVR, the radius or radius predictor (and the SigLIP bias) keep training;
* ``batch_norm`` of the audio tower, when the audio tower is adapted: its running statistics
  change in training mode, and an adapter that did not carry them would not reload faithfully.
  When only the text tower is adapted, the audio tower is frozen completely: its BatchNorm keeps
  its running statistics (momentum 0).

The logit scales stay frozen under LoRA.

    >>> model = get_lora_model(SupClapModel.from_pretrained(folder), towers="audio", r=8)
    >>> ...  # train
    >>> model.save_pretrained("adapter")               # adapter weights only
    >>> merged = model.merge_and_unload()             # a plain SupClapModel again
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from peft import LoraConfig, PeftModel

    from .model.losses import SupClapLoss
    from .model.modeling_supclap import SupClapModel

TOWER_PATTERNS = {
    "text": r".*text_model\..*\.(query|key|value)",
    "audio": r".*audio_model\..*\.(query|key|value)",
    "both": r".*(text_model|audio_model)\..*\.(query|key|value)",
}


def lora_config_for(
    towers: str = "both",
    r: int = 8,
    alpha: int = 16,
    dropout: float = 0.0,
    train_loss_parameters: bool = True,
) -> LoraConfig:
    """A ``LoraConfig`` adapting the attention of ``towers`` ('text', 'audio' or 'both')."""
    from peft import LoraConfig

    if towers not in TOWER_PATTERNS:
        raise ValueError(f"LoRA towers must be one of {sorted(TOWER_PATTERNS)}, got {towers!r}")
    modules_to_save = ["loss_fn"] if train_loss_parameters else []
    if towers in ("audio", "both"):
        modules_to_save.append("batch_norm")
    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=TOWER_PATTERNS[towers],
        modules_to_save=modules_to_save or None,
    )


def get_lora_model(model: torch.nn.Module, towers: str = "both", **lora_kwargs) -> PeftModel:
    """Wrap ``model`` in LoRA adapters on ``towers``; see the module docstring for what trains."""
    from peft import get_peft_model

    peft_model = get_peft_model(model, lora_config_for(towers, **lora_kwargs))
    if towers == "text":
        for module in model.audio_model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.momentum = 0.0  # frozen tower: keep its running statistics
    return peft_model


def unwrap_supclap(model: torch.nn.Module) -> SupClapModel:
    """The ``SupClapModel`` inside DDP / ``torch.compile`` / PEFT wrappers (itself if unwrapped)."""
    from accelerate.utils import extract_model_from_parallel

    inner = extract_model_from_parallel(model, keep_torch_compile=False)
    return inner.get_base_model() if hasattr(inner, "get_base_model") else inner


def active_loss_fn(model: torch.nn.Module) -> SupClapLoss:
    """The model's ``SupClapLoss`` that trains, also under PEFT (``modules_to_save`` wraps it in a copy)."""
    loss_fn = unwrap_supclap(model).loss_fn
    copies = getattr(loss_fn, "modules_to_save", None)
    return next(iter(copies.values())) if copies else loss_fn
