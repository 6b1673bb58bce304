"""LoRA adapters (PEFT) on the text tower, the audio tower or both, of either model family.

The adapted modules are each tower's attention projections, named per family (CLAP's and BERT's
``query``/``key``/``value``, Whisper's, wav2vec2's and NLLB's ``q_proj``/``k_proj``/``v_proj``,
ModernBERT's fused ``Wqkv``, T5's ``q``/``k``/``v``); a regular expression anchored on the tower's
attribute (``audio_model.`` or ``text_model.``) picks one tower (a plain ``["query", "value"]`` list
would adapt both). WavLM calls ``multi_head_attention_forward`` with its projections' weights, so LoRA
on them never runs: its feed-forward layers are adapted instead.

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

TOWERS = ("text", "audio", "both")
# The attention projections of every supported family, and what WavLM gets instead (module docstring).
ATTENTION_LEAVES = r"(query|key|value|q_proj|k_proj|v_proj|Wqkv|q|k|v)"
FAMILY_LEAVES = {"wavlm": r"(intermediate_dense|output_dense)"}


def tower_pattern(tower: str, model: torch.nn.Module | None = None) -> str:
    """The ``target_modules`` regular expression of ``tower`` ("text", "audio" or "both") in ``model``."""

    def pattern(attribute: str) -> str:
        family = getattr(getattr(getattr(model, attribute, None), "config", None), "model_type", None)
        return rf".*{attribute}\..*\.{FAMILY_LEAVES.get(family, ATTENTION_LEAVES)}"

    attributes = {"text": ["text_model"], "audio": ["audio_model"], "both": ["text_model", "audio_model"]}
    return "|".join(pattern(attribute) for attribute in attributes[tower])


def lora_config_for(
    towers: str = "both",
    r: int = 8,
    alpha: int = 16,
    dropout: float = 0.0,
    train_loss_parameters: bool = True,
    model: torch.nn.Module | None = None,
) -> LoraConfig:
    """A ``LoraConfig`` adapting the attention of ``towers`` ('text', 'audio' or 'both') of ``model``
    (its towers' families choose the module names; without a model, the attention of any family)."""
    from peft import LoraConfig

    if towers not in TOWERS:
        raise ValueError(f"LoRA towers must be one of {sorted(TOWERS)}, got {towers!r}")
    modules_to_save = ["loss_fn"] if train_loss_parameters else []
    audio_model = getattr(model, "audio_model", None)
    has_batch_norm = audio_model is None or any(
        name.endswith("batch_norm") for name, _ in audio_model.named_modules()
    )
    if towers in ("audio", "both") and has_batch_norm:  # HTSAT's BatchNorm statistics change in training
        modules_to_save.append("batch_norm")
    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=tower_pattern(towers, model),
        modules_to_save=modules_to_save or None,
    )


def get_lora_model(model: torch.nn.Module, towers: str = "both", **lora_kwargs) -> PeftModel:
    """Wrap ``model`` in LoRA adapters on ``towers``; see the module docstring for what trains."""
    from peft import get_peft_model

    peft_model = get_peft_model(model, lora_config_for(towers, model=model, **lora_kwargs))
    if towers == "text":
        for module in model.audio_model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.momentum = 0.0  # frozen tower: keep its running statistics
    return peft_model


def unwrap_supclap(model: torch.nn.Module) -> SupClapModel:
    """The SupCLAP model (either family) inside DDP / ``torch.compile`` / PEFT wrappers (or itself)."""
    from accelerate.utils import extract_model_from_parallel

    inner = extract_model_from_parallel(model, keep_torch_compile=False)
    return inner.get_base_model() if hasattr(inner, "get_base_model") else inner


def active_loss_fn(model: torch.nn.Module) -> SupClapLoss:
    """The model's ``SupClapLoss`` that trains, also under PEFT (``modules_to_save`` wraps it in a copy)."""
    loss_fn = unwrap_supclap(model).loss_fn
    copies = getattr(loss_fn, "modules_to_save", None)
    return next(iter(copies.values())) if copies else loss_fn
