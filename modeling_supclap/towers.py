"""Start a SupClap model from pretrained towers: a RoBERTa-family text encoder, a CLAP audio encoder.

LAION-CLAP starts its text tower from ``roberta-base``; multilingual models from XLM-R. ``ClapTextModel``
is RoBERTa-shaped (the same module names), so a ``RobertaModel``/``XLMRobertaModel`` checkpoint's
weights map one to one onto ``text_model.*``; the audio tower (HTSAT) and its projection come from any
CLAP or SupClap checkpoint (``audio_model.*``, ``audio_projection.*``). The tower's config replaces the
preset's, the tokenizer (text) and feature extractor (audio) come with it, and a report says what mapped
and what did not (nothing is dropped silently).

    python train_supclap.py --text_model_name_or_path roberta-base \\
        --audio_model_name_or_path laion/clap-htsat-unfused --train_data my_corpus/
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch

from .model.configuration_supclap import PRESET_SETTINGS, PRESETS, SupClapConfig
from .model.modeling_supclap import SupClapModel

logger = logging.getLogger(__name__)

# ClapTextConfig fields a RoBERTa-family config defines under the same name.
_TEXT_FIELDS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "max_position_embeddings",
    "type_vocab_size",
    "layer_norm_eps",
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
)


@dataclass
class TowerReport:
    """What one pretrained tower contributed."""

    source: str
    mapped: list[str] = field(default_factory=list)  # parameters and buffers filled from it
    not_filled: list[str] = field(default_factory=list)  # the tower's tensors it had no value for
    unused: list[str] = field(default_factory=list)  # its tensors that have no place in the tower

    def summary(self, tower: str) -> str:
        text = f"{tower} tower from {self.source}: {len(self.mapped)} tensors mapped"
        if self.not_filled:
            text += f"; not in the checkpoint (initialised): {self.not_filled}"
        if self.unused:
            text += f"; in the checkpoint but unused: {self.unused}"
        return text


@dataclass
class PretrainedTowers:
    model: SupClapModel
    tokenizer: Any = None  # the text checkpoint's, if one was given
    feature_extractor: Any = None  # the audio checkpoint's processor's, if it has one
    reports: dict[str, TowerReport] = field(default_factory=dict)


def _state_dict(path: str, trust_remote_code: bool) -> tuple[Any, dict[str, torch.Tensor]]:
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    model = AutoModel.from_pretrained(path, trust_remote_code=trust_remote_code)
    return config, model.state_dict()


def _load(
    model: SupClapModel, weights: dict[str, torch.Tensor], prefixes: tuple[str, ...], source: str
) -> TowerReport:
    """Copy ``weights`` (already named as in the model) into the model's tensors under ``prefixes``."""
    report = TowerReport(source)
    own = {k: v for k, v in model.state_dict().items() if k.startswith(prefixes)}
    usable = {}
    for name, tensor in weights.items():
        if name in own and own[name].shape == tensor.shape:
            usable[name] = tensor
        else:
            report.unused.append(name)
    model.load_state_dict(usable, strict=False)
    report.mapped = sorted(usable)
    # Buffers rebuilt at construction (position ids) are not weights a checkpoint must carry.
    report.not_filled = sorted(
        k for k in own if k not in usable and not k.endswith(("position_ids", "token_type_ids"))
    )
    return report


def model_with_pretrained_towers(
    preset: str,
    text_model: str | None = None,
    audio_model: str | None = None,
    trust_remote_code: bool = False,
    **config_overrides: Any,
) -> PretrainedTowers:
    """A SupClapModel of ``preset`` whose towers (and their configs) come from the given checkpoints."""
    from transformers import AutoFeatureExtractor, AutoTokenizer

    settings = PRESETS[preset]()
    text_weights = audio_weights = None
    if audio_model:
        clap_config, audio_state = _state_dict(audio_model, trust_remote_code)
        if not hasattr(clap_config, "audio_config"):
            raise ValueError(
                f"--audio_model_name_or_path {audio_model} is not a CLAP checkpoint (no audio_config)"
            )
        settings["audio_config"] = clap_config.audio_config.to_dict()
        settings["projection_dim"] = clap_config.projection_dim
        audio_weights = {
            k: v for k, v in audio_state.items() if k.startswith(("audio_model.", "audio_projection."))
        }
    if text_model:
        text_config, text_state = _state_dict(text_model, trust_remote_code)
        if (
            not hasattr(text_config, "num_hidden_layers")
            or "embeddings.word_embeddings.weight" not in text_state
        ):
            raise ValueError(
                f"--text_model_name_or_path {text_model} is not a RoBERTa-family encoder "
                "(RoBERTa, XLM-R, ...)"
            )
        settings["text_config"] = {
            **settings["text_config"],
            **{k: getattr(text_config, k) for k in _TEXT_FIELDS if getattr(text_config, k, None) is not None},
        }
        text_weights = {f"text_model.{k}": v for k, v in text_state.items()}
    # A text tower from scratch pools as its preset does; a pretrained one keeps its checkpoint's pooler.
    preset_settings = {} if text_model else PRESET_SETTINGS.get(preset, {})
    model = SupClapModel(SupClapConfig(**{**settings, **preset_settings, **config_overrides}))
    towers = PretrainedTowers(model)
    if audio_weights is not None:
        towers.reports["audio"] = _load(
            model, audio_weights, ("audio_model.", "audio_projection."), audio_model
        )
        try:
            towers.feature_extractor = AutoFeatureExtractor.from_pretrained(audio_model)
        except (OSError, ValueError):
            logger.info("%s has no feature extractor: one is made for the corpus", audio_model)
    if text_weights is not None:
        towers.reports["text"] = _load(model, text_weights, ("text_model.",), text_model)
        towers.tokenizer = AutoTokenizer.from_pretrained(text_model)
    for tower, report in towers.reports.items():
        logger.info("%s", report.summary(tower))
    return towers
