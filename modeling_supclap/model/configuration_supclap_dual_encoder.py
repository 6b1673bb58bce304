"""SupClapDualEncoderConfig: any audio encoder's config, any text encoder's config, the SupCLAP loss settings.

The audio-text analogue of transformers' ``VisionTextDualEncoderConfig``: ``audio_config`` and ``text_config``
are configs of any type ``AutoConfig`` knows (a dict needs its ``model_type``); ``to_dict`` nests them with
their type, so ``from_pretrained`` rebuilds the right classes. The loss fields are ``SupClapLossSettings``'s,
the same definition ``SupClapConfig`` inherits.

``tower_preset_config`` gives small random towers of each family, for training from scratch offline (the demo,
the tests, the size-matched benchmark against the CLAP ``small`` preset).

A tower that is remote code (CED, Dasheng: a type transformers does not know) is saved with its code in the
model's folder (``SupClapDualEncoderModel.save_pretrained``); :func:`register_remote_towers` runs that code
and registers its classes, so the folder's config parses. Only with ``trust_remote_code=True``.

Part of the model's load-time import closure: only flat sibling imports.
"""

from __future__ import annotations

import copy
import os
from typing import Any

from transformers import AutoConfig, AutoModel
from transformers.activations import ACT2FN
from transformers.configuration_utils import PreTrainedConfig, SubConfigSpec
from transformers.dynamic_module_utils import get_class_from_dynamic_module
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
from transformers.utils.hub import TRANSFORMERS_DYNAMIC_MODULE_NAME

from .configuration_supclap import PRESETS
from .losses import LOSS_TERM_OUTPUTS, SupClapLossSettings

# How a tower's outputs become one vector (modeling_supclap_dual_encoder.pool): "auto" is the family's usual
# choice (TOWER_FAMILIES there), "mean" over valid frames or tokens, "pooler" the tower's pooler_output,
# "cls" the first token or frame.
POOLINGS = ("auto", "mean", "pooler", "cls")
# How a pooled vector reaches the shared space (modeling_supclap_dual_encoder.build_projection): "linear", one
# matrix without bias; "mlp", CLAP's projection (Linear, activation, Linear, both with bias, the hidden layer
# projection_dim wide), which LAION-CLAP checkpoints converted to this family need.
PROJECTION_TYPES = ("linear", "mlp")

TOWER_CONFIGS = {"audio_config": "audio", "text_config": "text"}
# from_pretrained's arguments that say where a folder's files are (passed on to the remote towers' code).
_HUB_ARGUMENTS = ("cache_dir", "force_download", "proxies", "token", "revision", "local_files_only")


def hub_arguments(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {name: kwargs[name] for name in _HUB_ARGUMENTS if kwargs.get(name) is not None}


def unknown_tower_types(config_dict: dict[str, Any]) -> dict[str, str]:
    """``{"audio_config": model_type, ...}`` of the towers of a dual encoder's config dict whose type
    transformers does not know (remote code not registered in this process)."""
    unknown = {}
    for name in TOWER_CONFIGS:
        tower = config_dict.get(name)
        if isinstance(tower, dict) and tower.get("model_type") and tower["model_type"] not in CONFIG_MAPPING:
            unknown[name] = tower["model_type"]
    return unknown


def register_remote_towers(path: str | os.PathLike, **hub_kwargs: Any) -> list[str]:
    """Imports the code of the remote-code towers saved in the dual encoder folder (or repository) ``path``
    and registers their config and model classes with ``AutoConfig``/``AutoModel``, so that the folder's
    config parses and its towers build; returns their model types. This RUNS that code: call it only where
    ``trust_remote_code=True`` was given for ``path``."""
    config_dict, _ = PreTrainedConfig.get_config_dict(path, **hub_kwargs)
    if config_dict.get("model_type") != SupClapDualEncoderConfig.model_type:
        return []
    registered = []
    for name, model_type in unknown_tower_types(config_dict).items():
        auto_map = config_dict[name].get("auto_map") or {}
        if not {"AutoConfig", "AutoModel"} <= auto_map.keys():
            continue  # SupClapDualEncoderConfig says what is missing
        config_class = get_class_from_dynamic_module(auto_map["AutoConfig"], path, **hub_kwargs)
        model_class = get_class_from_dynamic_module(auto_map["AutoModel"], path, **hub_kwargs)
        AutoConfig.register(model_type, config_class, exist_ok=True)
        AutoModel.register(config_class, model_class, exist_ok=True)
        registered.append(model_type)
    return registered


class SupClapDualEncoderConfig(PreTrainedConfig, SupClapLossSettings):
    r"""Configuration of a [`SupClapDualEncoderModel`]: two towers of any family, projections and the loss.

    Args:
        audio_config, text_config (`dict` or `PreTrainedConfig`):
            The towers' configurations (any type `AutoConfig` knows; a dict needs its `model_type`).
        projection_dim (`int`, *optional*, defaults to 512): width of the shared embedding space.
        logit_scale_init_value (`float`, *optional*, defaults to 1/0.07): initial logit scale 1/tau (InfoNCE;
            SigLIP starts at `siglip_logit_scale_init`).
        initializer_range (`float`, *optional*, defaults to 0.02): std of the projections' initial weights.
        audio_pooling, text_pooling (`str`, *optional*, defaults to `"auto"`): one of `POOLINGS`.
        projection_type (`str`, *optional*, defaults to `"linear"`): one of `PROJECTION_TYPES`, for both
            towers: `"linear"`, one bias-free matrix; `"mlp"`, `linear2(activation(linear1(x)))` with biases
            and a `projection_dim`-wide hidden layer, as transformers' `ClapProjectionLayer` and LAION-CLAP.
        projection_hidden_act (`str`, *optional*, defaults to `"relu"`): the activation of the `"mlp"`
            projection (a name in transformers' `ACT2FN`); unused by `"linear"`.
        audio_tower_class, text_tower_class (`str`, *optional*): the transformers class of a tower when
            `AutoModel.from_config` would build another (`"WhisperEncoder"`, `"M2M100Encoder"`,
            `"T5EncoderModel"`, `"ClapAudioModel"`); `None`: the family's table, else `AutoModel`.
        audio_mask_to_tower (`bool`, *optional*): hand the audio padding mask to the audio tower's forward
            (`None`: as the family is trained, e.g. wav2vec2-family towers with a layer-norm feature encoder).

    The loss settings (`base_loss`, `svr_mode`, ...) are [`SupClapLossSettings`]'s (`losses.py`).
    """

    model_type = "supclap_dual_encoder"
    sub_configs_defaults = {
        "audio_config": SubConfigSpec(config_class=AutoConfig, model_type="audio-spectrogram-transformer"),
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="bert"),
    }
    # The Trainer's EvalPrediction then carries only the embeddings (what retrieval metrics need).
    keys_to_ignore_at_inference = [
        "logits_per_audio",
        "logits_per_text",
        "text_model_output",
        "audio_model_output",
        *(name for name in LOSS_TERM_OUTPUTS if name != "loss"),
    ]

    audio_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    projection_dim: int = 512
    logit_scale_init_value: float = 1 / 0.07
    initializer_range: float = 0.02
    audio_pooling: str = "auto"
    text_pooling: str = "auto"
    projection_type: str = "linear"
    projection_hidden_act: str = "relu"
    audio_tower_class: str | None = None
    text_tower_class: str | None = None
    audio_mask_to_tower: bool | None = None

    def __post_init__(self, **kwargs):
        for name, model_type in unknown_tower_types(vars(self)).items():
            remote = bool((getattr(self, name).get("auto_map") or {}).get("AutoModel"))
            raise ValueError(
                f"the {TOWER_CONFIGS[name]} tower of this dual encoder is of type {model_type!r}, which "
                "transformers does not know: "
                + (
                    "it is remote code saved with the model. Load the folder with trust_remote_code=True: "
                    "SupClapDualEncoderModel.from_pretrained(path, trust_remote_code=True), or "
                    "AutoModel.from_pretrained(path, trust_remote_code=True) in a process that has not "
                    "imported modeling_supclap (with the package imported, transformers uses its classes "
                    "and does not pass the flag on to them)"
                    if remote
                    else "install the package that defines it and import it first"
                )
            )
        super().__post_init__(**kwargs)
        self.check_loss_settings()
        for name in ("audio_pooling", "text_pooling"):
            if (value := getattr(self, name)) not in POOLINGS:
                raise ValueError(f"{type(self).__name__}.{name} must be one of {POOLINGS}, got {value!r}")
        if self.projection_type not in PROJECTION_TYPES:
            raise ValueError(
                f"{type(self).__name__}.projection_type must be one of {PROJECTION_TYPES}, got "
                f"{self.projection_type!r}"
            )
        if self.projection_hidden_act not in ACT2FN:
            raise ValueError(
                f"{type(self).__name__}.projection_hidden_act must be an activation of transformers' ACT2FN "
                f"(relu, gelu, ...), got {self.projection_hidden_act!r}"
            )

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike, trust_remote_code: bool | None = None, **kwargs
    ) -> SupClapDualEncoderConfig:
        """``PreTrainedConfig.from_pretrained``; with ``trust_remote_code=True`` remote-code towers saved in
        the folder are registered first (:func:`register_remote_towers`). transformers hands a remote-code
        config class the folder but not the flag: this class running as the folder's own code (module
        ``transformers_modules.*``) means the flag was given for that folder, whose files hold the towers'
        code too."""
        loaded_as_remote_code = cls.__module__.startswith(TRANSFORMERS_DYNAMIC_MODULE_NAME)
        if trust_remote_code or loaded_as_remote_code:
            register_remote_towers(pretrained_model_name_or_path, **hub_arguments(kwargs))
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    @classmethod
    def from_audio_text_configs(
        cls, audio_config: PreTrainedConfig, text_config: PreTrainedConfig, **kwargs: Any
    ) -> SupClapDualEncoderConfig:
        """A config from the towers' configs. Copies of the instances, not ``to_dict()``: the dict of a
        remote-code tower (CED, Dasheng) would name a type transformers does not know."""
        return cls(audio_config=copy.deepcopy(audio_config), text_config=copy.deepcopy(text_config), **kwargs)


# ------------------------------------------------------------------------------------------------------------
# Random towers to train from scratch: family -> size -> (model_type, config kwargs). The audio presets' input
# length follows the corpus's window (``window_seconds``), the text presets' vocabulary the tokenizer made for
# the corpus (``vocab_size``, special ids 0..4 as the byte-level BPE the project trains: <s> <pad> </s> ...).
# "small" is sized like the CLAP ``small`` preset's towers (about 0.5M parameters each).
# ------------------------------------------------------------------------------------------------------------
_TEXT_IDS = {"bos_token_id": 0, "pad_token_id": 1, "eos_token_id": 2}
_WIDTHS = {"tiny": (32, 2, 2, 37), "small": (96, 3, 4, 192)}  # hidden, layers, heads, intermediate
AUDIO_TOWER_FAMILIES = ("ast", "whisper", "wav2vec2", "hubert", "wavlm", "htsat")
TEXT_TOWER_FAMILIES = ("bert", "roberta", "xlm-roberta", "modernbert", "m2m100", "t5")


def audio_tower_config(family: str, size: str = "small", window_seconds: float = 2.0, num_mel_bins: int = 32):
    """A random audio tower's config (``family`` of :data:`AUDIO_TOWER_FAMILIES`), for ``window_seconds`` of
    audio with a 10 ms frame hop (100 frames per second; htsat: the CLAP preset's own mel bins)."""
    hidden, layers, heads, intermediate = _WIDTHS[size]
    frames = max(16, int(round(100 * window_seconds)))
    common = dict(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads)
    if family == "ast":
        return AutoConfig.for_model(
            "audio-spectrogram-transformer", **common, intermediate_size=intermediate,
            num_mel_bins=num_mel_bins, max_length=frames, patch_size=16, frequency_stride=10, time_stride=10,
        )  # fmt: skip
    if family == "whisper":
        return AutoConfig.for_model(
            "whisper", d_model=hidden, encoder_layers=layers, encoder_attention_heads=heads,
            encoder_ffn_dim=intermediate, decoder_layers=1, decoder_attention_heads=heads,
            decoder_ffn_dim=intermediate, num_mel_bins=num_mel_bins, max_source_positions=frames // 2,
            max_target_positions=16, vocab_size=100, pad_token_id=0, bos_token_id=1, eos_token_id=2,
            decoder_start_token_id=1,
        )  # fmt: skip
    if family in ("wav2vec2", "hubert", "wavlm"):
        extra = {"num_buckets": 16, "max_bucket_distance": 40} if family == "wavlm" else {}
        return AutoConfig.for_model(
            family, **common, intermediate_size=intermediate, conv_dim=(32, 32, 32, 32),
            conv_stride=(5, 4, 4, 2), conv_kernel=(10, 8, 8, 4), conv_bias=False, num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=2, vocab_size=12, feat_extract_norm="layer",
            do_stable_layer_norm=True, layerdrop=0.0, mask_time_prob=0.0, **extra,
        )  # fmt: skip
    if family == "htsat":  # CLAP's own audio tower, as the CLAP presets of that size build it
        return AutoConfig.for_model("clap_audio_model", **PRESETS[size]()["audio_config"])
    raise ValueError(f"no random {family!r} audio tower; families: {', '.join(AUDIO_TOWER_FAMILIES)}")


def text_tower_config(family: str, size: str = "small", vocab_size: int = 1000, max_positions: int = 66):
    """A random text tower's config (``family`` of :data:`TEXT_TOWER_FAMILIES`) over ``vocab_size`` tokens."""
    hidden, layers, heads, intermediate = _WIDTHS[size]
    common = dict(vocab_size=vocab_size, **_TEXT_IDS)
    if family in ("bert", "roberta", "xlm-roberta"):
        return AutoConfig.for_model(
            family, **common, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
            intermediate_size=intermediate, max_position_embeddings=max_positions + 2,
        )  # fmt: skip
    if family == "modernbert":
        return AutoConfig.for_model(
            "modernbert", **common, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
            intermediate_size=intermediate, max_position_embeddings=max_positions, local_attention=16,
            global_attn_every_n_layers=2, cls_token_id=0, sep_token_id=2,
        )  # fmt: skip
    if family == "m2m100":
        return AutoConfig.for_model(
            "m2m_100", **common, d_model=hidden, encoder_layers=layers, decoder_layers=1,
            encoder_attention_heads=heads, decoder_attention_heads=heads, encoder_ffn_dim=intermediate,
            decoder_ffn_dim=intermediate, max_position_embeddings=max_positions, decoder_start_token_id=2,
            encoder_layerdrop=0.0, decoder_layerdrop=0.0,
        )  # fmt: skip
    if family == "t5":
        return AutoConfig.for_model(
            "t5", vocab_size=vocab_size, d_model=hidden, d_kv=hidden // heads, d_ff=intermediate,
            num_layers=layers, num_decoder_layers=1, num_heads=heads, relative_attention_num_buckets=8,
            relative_attention_max_distance=20, pad_token_id=1, eos_token_id=2, decoder_start_token_id=1,
        )  # fmt: skip
    raise ValueError(f"no random {family!r} text tower; families: {', '.join(TEXT_TOWER_FAMILIES)}")


__all__ = [
    "AUDIO_TOWER_FAMILIES",
    "POOLINGS",
    "PROJECTION_TYPES",
    "TEXT_TOWER_FAMILIES",
    "TOWER_CONFIGS",
    "SupClapDualEncoderConfig",
    "audio_tower_config",
    "register_remote_towers",
    "text_tower_config",
]
