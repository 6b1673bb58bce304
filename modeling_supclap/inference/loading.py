"""A saved model and its processor, loaded for embedding and search, with one clear error for what is
missing (a folder that is not a model, a model saved without its processor)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

__all__ = ["load_model_and_processor"]


def load_model_and_processor(
    name_or_path: str, device: str | torch.device = "cpu", trust_remote_code: bool = False
) -> tuple[torch.nn.Module, Any]:
    """``(AutoModel, AutoProcessor)`` of a model folder or Hub id, the model in eval mode on ``device``.

    Raises ``FileNotFoundError`` for a local path that does not exist and ``ValueError`` naming the folder
    for one without a model (``config.json``) or without a processor (feature extractor and tokenizer),
    instead of the loader's traceback.
    """
    from transformers import AutoModel, AutoProcessor

    local = Path(name_or_path).expanduser()
    if name_or_path.startswith(("/", ".", "~")) and not local.exists():
        raise FileNotFoundError(f"{name_or_path}: no such model folder")
    if local.is_dir() and not (local / "config.json").is_file():
        raise ValueError(f"{name_or_path}: not a model folder (no config.json)")
    try:
        processor = AutoProcessor.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise ValueError(
            f"{name_or_path} has no processor (its feature extractor and tokenizer: processor_config.json or "
            "preprocessor_config.json, and the tokenizer files): save the processor the model was trained "
            f"with into it (processor.save_pretrained); supclap-train does ({type(error).__name__}: "
            f"{str(error).splitlines()[0][:200]})"
        ) from error
    if not hasattr(processor, "feature_extractor") or not hasattr(processor, "tokenizer"):
        raise ValueError(
            f"{name_or_path}: its processor ({type(processor).__name__}) lacks a feature extractor or a "
            "tokenizer: an audio-text model needs both"
        )
    model = AutoModel.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    if not (hasattr(model, "get_audio_features") and hasattr(model, "get_text_features")):
        raise ValueError(f"{name_or_path}: {type(model).__name__} is not an audio-text (CLAP) model")
    return model.to(device).eval(), processor
