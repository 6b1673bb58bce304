"""SupClapConfig: a ClapConfig plus the settings of the SupCLAP loss family, and the presets.

This file is part of the model's load-time import closure (it is copied next to the weights by
``save_pretrained`` for ``trust_remote_code`` loading), so it imports only its flat sibling
``losses.py``, which owns the loss fields, their defaults and their validation
(``SupClapLossSettings``); this configuration inherits them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from transformers import ClapConfig

from .losses import LOSS_TERM_OUTPUTS, SupClapLossSettings


def _tiny_sub_configs(projection_dim: int = 16) -> dict[str, Any]:
    """Sub-configs of a ~70k-parameter CLAP that builds in well under a second (tests)."""
    return {
        "text_config": {
            "vocab_size": 1000,
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "intermediate_size": 37,
            "max_position_embeddings": 66,
            "pad_token_id": 1,
            "bos_token_id": 0,
            "eos_token_id": 2,
        },
        "audio_config": {
            "spec_size": 64,
            "num_mel_bins": 16,
            "window_size": 4,
            "patch_size": 4,
            "patch_stride": [4, 4],
            "patch_embeds_hidden_size": 16,
            "depths": [1, 1],
            "num_attention_heads": [2, 2],
            "hidden_size": 32,
            "enable_fusion": False,
        },
        "projection_dim": projection_dim,
    }


def _small_sub_configs() -> dict[str, Any]:
    """Sub-configs of a ~1M-parameter CLAP: big enough to learn the demo corpus on 2 CPU cores."""
    return {
        "text_config": {
            "vocab_size": 1000,
            "hidden_size": 96,
            "num_hidden_layers": 3,
            "num_attention_heads": 4,
            "intermediate_size": 192,
            "max_position_embeddings": 66,
            "pad_token_id": 1,
            "bos_token_id": 0,
            "eos_token_id": 2,
        },
        "audio_config": {
            "spec_size": 64,
            "num_mel_bins": 32,
            "window_size": 4,
            "patch_size": 4,
            "patch_stride": [4, 4],
            "patch_embeds_hidden_size": 32,
            "depths": [1, 1, 1],
            "num_attention_heads": [2, 4, 4],
            "hidden_size": 128,
            "enable_fusion": False,
        },
        "projection_dim": 64,
    }


# SupClapConfig.text_pooling values (SupClapModel.pool_text implements them).
TEXT_POOLINGS = ("pooler", "mean")

# Architectures to train from scratch (``--preset``): name -> ClapConfig keyword arguments.
PRESETS: dict[str, Callable[[], dict[str, Any]]] = {"tiny": _tiny_sub_configs, "small": _small_sub_configs}
# SupClapConfig fields a preset built from scratch starts with (keyword arguments of from_preset win).
# The small preset, the demo's, mean-pools its text tower: the first-token pooler maps every fresh caption
# to nearly one vector, and plain InfoNCE then stalls (docs/BENCHMARKS.md, recipe diagnosis). The tiny
# preset keeps CLAP's pooler, the structure of every CLAP checkpoint, which the tests compare against.
PRESET_SETTINGS: dict[str, dict[str, Any]] = {"small": {"text_pooling": "mean"}}


class SupClapConfig(ClapConfig, SupClapLossSettings):
    r"""Configuration of a [`SupClapModel`]: every [`ClapConfig`] field, the loss settings, and how text is
    pooled.

    A `SupClapConfig` with `svr_mode="none"` and `base_loss="infonce"` trains exactly a CLAP model
    (with the audio->text term that transformers' built-in loss omits, see `losses.py`).

    The loss fields (`base_loss`, `svr_mode`, `svr_bilateral`, `svr_weight`, `constraint_weight`, the
    radius and predictor settings, the SigLIP initialisation, `logit_scale_max`, `freeze_logit_scale`,
    `gather_across_processes`, `gradient_cache_chunk_size`, `compile_loss`) are those of
    [`SupClapLossSettings`] in `losses.py`, documented there once, with their defaults and validation.

    Args:
        text_pooling (`str`, *optional*, defaults to `"pooler"`):
            How the text tower's token states become one vector before the projection: `"pooler"`
            (ClapTextModel's dense + tanh on the first token, what every CLAP checkpoint was trained
            with) or `"mean"` (the mean of the last hidden states over the attention mask; the text
            tower then has no pooler). From-scratch towers learn faster with `"mean"` (docs/BENCHMARKS.md,
            recipe diagnosis): the first token is the same in every caption, so a fresh pooler maps every
            caption to nearly one vector.
    """

    model_type = "supclap"
    # Trainer's EvalPrediction then carries only the embeddings (what retrieval metrics need).
    keys_to_ignore_at_inference = [
        "logits_per_audio",
        "logits_per_text",
        "text_model_output",
        "audio_model_output",
        *(name for name in LOSS_TERM_OUTPUTS if name != "loss"),  # the Trainer reads "loss" itself
    ]

    text_pooling: str = "pooler"

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.check_loss_settings()
        if self.text_pooling not in TEXT_POOLINGS:
            raise ValueError(
                f"SupClapConfig.text_pooling must be one of {list(TEXT_POOLINGS)}, got {self.text_pooling!r}."
            )

    @classmethod
    def from_preset(cls, preset: str, **kwargs: Any) -> SupClapConfig:
        """The architecture ``preset`` (a name of ``PRESETS``) with the given fields."""
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; presets are {sorted(PRESETS)}")
        return cls(**{**PRESETS[preset](), **PRESET_SETTINGS.get(preset, {}), **kwargs})

    @classmethod
    def tiny(cls, **kwargs: Any) -> SupClapConfig:
        """A ~70k-parameter model for tests: builds in ~0.1 s, ~12 ms forward for a batch of 4."""
        return cls.from_preset("tiny", **kwargs)

    @classmethod
    def small(cls, **kwargs: Any) -> SupClapConfig:
        """A ~1M-parameter model for the offline demo (trains in minutes on 2 CPU cores)."""
        return cls.from_preset("small", **kwargs)


__all__ = ["PRESETS", "PRESET_SETTINGS", "TEXT_POOLINGS", "SupClapConfig"]
