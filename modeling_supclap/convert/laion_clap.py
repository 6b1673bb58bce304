"""LAION-CLAP checkpoints (the ``laion_clap`` package's ``CLAP_Module``) converted exactly to SupClap models.

A LAION-CLAP ``.pt`` holds ``{"epoch", "name", "state_dict", "optimizer"}``; the state dict is that of a
DDP-wrapped ``CLAP`` module (every key prefixed ``module.``) with an ``audio_branch`` (HTS-AT or PANN), a
``text_branch`` (a transformers ``RobertaModel``, ``BertModel`` or ``BartModel``), two projections, two
"mlp loss" transforms and two logit scales. :func:`convert_laion_clap` reads one safely
(``checkpoint_file.py``), infers the architecture from the tensor shapes, maps every tensor (report:
``report.py``) and builds a model with a processor that reproduces LAION's preprocessing.

What is converted: HTS-AT audio towers (tiny, base, large; unfused or with LAION's ``aff_2d`` fusion) with

* a RoBERTa text tower: a ``SupClapModel``, which is what transformers' ``ClapModel`` is;
* a BERT text tower: a ``SupClapDualEncoderModel`` (``ClapAudioModel`` + ``BertModel``; ``ClapTextModel``
  is RoBERTa-shaped: it numbers positions from the padding id) with LAION's heads: each tower's
  ``pooler_output`` (HTS-AT's, and BERT's tanh pooler, which LAION's ``encode_text`` takes), then the
  two-layer ReLU projections (``projection_type="mlp"``), with a ``SupClapDualEncoderProcessor``.

What is refused, and why:

* PANN audio towers (CNN14/10/6): ``ClapAudioModel`` is HTS-AT only.
* BART text towers (an encoder-decoder whose output is averaged over all 77 positions) and the CLIP-style
  ``transformer``: no counterpart in transformers' CLAP.
* Fusion types other than ``aff_2d`` (``iaff_2d``, ``daf_2d``, the 1-d ones, ``channel_map``): ``ClapModel``
  implements ``aff_2d`` only (and ``CLAP_Module`` only builds that one).

Example (``convert_laion_clap`` needs the tokenizer of the text tower: ``roberta-base``'s from the Hub, or a
local folder)::

    conversion = convert_laion_clap("630k-audioset-best.pt", amodel="HTSAT-tiny", tmodel="roberta")
    print(conversion.report.summary())
    conversion.save_pretrained("clap-htsat-unfused-converted")
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..files import file_sha256
from ..model.configuration_supclap import SupClapConfig
from ..model.configuration_supclap_dual_encoder import SupClapDualEncoderConfig
from ..model.feature_extraction_laion_clap import (
    LaionClapFeatureExtractor,
    slaney_mel_filter_bank,
    torchlibrosa_stft_kernels,
)
from ..model.modeling_supclap import SupClapModel
from ..model.modeling_supclap_dual_encoder import SupClapDualEncoderModel
from .checkpoint_file import load_torch_checkpoint
from .report import ConversionError, ConversionReport

__all__ = [
    "AUDIO_MODELS",
    "FUSIONS",
    "PROCESSORS",
    "TEXT_MODELS",
    "LaionArchitecture",
    "LaionConversion",
    "LaionTowers",
    "bert_config",
    "convert_laion_clap",
    "detect_architecture",
    "dual_encoder_config",
    "laion_towers",
    "read_laion_state_dict",
    "supclap_config",
]

# (patch embedding width, depths) -> the name laion_clap gives the HTS-AT size (its model_configs/*.json).
HTSAT_SIZES = {
    (96, (2, 2, 6, 2)): "HTSAT-tiny",
    (128, (2, 2, 12, 2)): "HTSAT-base",
    (256, (2, 2, 12, 2)): "HTSAT-large",
}
AUDIO_MODELS = tuple(HTSAT_SIZES.values())
TEXT_MODELS = ("roberta", "bert", "bart")
FUSIONS = ("auto", "fused", "unfused")
PROCESSORS = ("laion", "transformers")
# Every HTS-AT config of laion_clap (model_configs/HTSAT-*.json): 48 kHz, hop 480, 50-14000 Hz, 10 s windows.
SAMPLING_RATE, HOP_LENGTH, FREQUENCY_MIN, FREQUENCY_MAX, MAX_LENGTH_S = 48_000, 480, 50, 14_000, 10
# LAION tokenizes captions to 77 tokens (CLAP_Module.tokenizer: padding="max_length", truncation=True).
TEXT_MAX_LENGTH = 77
# The text towers' configuration fields that the tensors do not hold, from the Hub configs laion_clap loads.
ROBERTA_BASE = {
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-5,
    "pad_token_id": 1,
    "bos_token_id": 0,
    "eos_token_id": 2,
}
BERT_BASE_UNCASED = {"hidden_act": "gelu", "layer_norm_eps": 1e-12, "pad_token_id": 0}
DEFAULT_TOKENIZERS = {"roberta": "roberta-base", "bert": "bert-base-uncased"}
# Per text tower, the configuration fields its tensors do not hold; its padding id is the tokenizer's too.
TEXT_TOWER_DEFAULTS = {"roberta": ROBERTA_BASE, "bert": BERT_BASE_UNCASED}
# The dual encoder's fields that make its heads LAION's (dual_encoder_config), recorded in the report.
_DUAL_ENCODER_HEAD_FIELDS = ("projection_type", "projection_hidden_act", "audio_pooling", "text_pooling")
# Front-end tensors are float32 functions of the settings: equal up to float32 rounding if they are LAION's.
FRONT_END_TOLERANCE = 1e-6


@dataclass(frozen=True)
class LaionArchitecture:
    """What a LAION-CLAP state dict's tensors say about the model (sizes read from shapes).

    ``audio_family``: ``"HTSAT"``, ``"PANN"`` or ``"unknown"``; ``amodel``: the laion_clap name
    (``HTSAT-tiny``...); ``fusion``: ``None`` (unfused) or LAION's fusion type; ``tmodel``: ``"roberta"``,
    ``"bert"``, ``"bart"``, ``"transformer"`` or ``"unknown"``.
    """

    audio_family: str
    amodel: str
    fusion: str | None
    tmodel: str
    patch_embeds_hidden_size: int = 0
    depths: tuple[int, ...] = ()
    num_attention_heads: tuple[int, ...] = ()
    window_size: int = 0
    patch_size: int = 0
    num_mel_bins: int = 0
    mlp_ratio: float = 4.0
    aff_block_r: int = 4
    text_vocab_size: int = 0
    text_hidden_size: int = 0
    text_num_layers: int = 0
    text_intermediate_size: int = 0
    text_max_positions: int = 0
    text_type_vocab_size: int = 0
    projection_dim: int = 0

    @property
    def audio_hidden_size(self) -> int:
        """Width of the last HTS-AT stage (each patch merging doubles it)."""
        return self.patch_embeds_hidden_size * 2 ** (len(self.depths) - 1)

    @property
    def text_num_attention_heads(self) -> int:
        """Not stored in the tensors: 64-wide heads, as in roberta-base/-large and bert-base/-large."""
        return max(1, self.text_hidden_size // 64)

    def describe(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def read_laion_state_dict(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The model state dict of a LAION-CLAP checkpoint (``module.`` prefixes removed) and what the file says
    about itself (``epoch``, ``name``). Raises :class:`ConversionError` naming what the file is instead."""
    loaded = load_torch_checkpoint(path)
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        state_dict = loaded["state_dict"]
    elif isinstance(loaded, Mapping) and loaded and all(isinstance(v, torch.Tensor) for v in loaded.values()):
        state_dict = loaded  # a bare state dict
    else:
        top = sorted(map(str, loaded))[:8] if isinstance(loaded, Mapping) else type(loaded).__name__
        raise ConversionError(f"{path} holds no model state dict (top level: {top})")
    not_tensors = [key for key, value in state_dict.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise ConversionError(f"{path}: the state dict holds non-tensor entries: {not_tensors[:5]}")
    prefixed = [key.startswith("module.") for key in state_dict]
    if any(prefixed) and not all(prefixed):
        raise ConversionError(f"{path}: the state dict mixes 'module.'-prefixed and plain keys")
    state_dict = {key.removeprefix("module."): value for key, value in state_dict.items()}
    if any(key.startswith(("text_model.", "audio_model.")) for key in state_dict):
        raise ConversionError(
            f"{path} holds a transformers ClapModel/SupClapModel state dict, not a LAION-CLAP one: it needs "
            "no conversion (save it with save_pretrained and pass the folder as --model_name_or_path)"
        )
    if not any(key.startswith("audio_branch.") for key in state_dict) or "logit_scale_a" not in state_dict:
        raise ConversionError(
            f"{path} is not a LAION-CLAP checkpoint: it has no audio_branch.* tensors and no logit_scale_a "
            f"(first keys: {list(state_dict)[:4]})"
        )
    meta = {}
    if isinstance(loaded, Mapping) and loaded is not state_dict:
        meta = {k: loaded[k] for k in ("epoch", "name") if isinstance(loaded.get(k), (int, str))}
    return state_dict, meta


def _count(state_dict: Mapping[str, Any], pattern: str) -> int:
    """How many consecutive indices ``i`` (from 0) have ``pattern.format(i)`` in ``state_dict``."""
    count = 0
    while pattern.format(count) in state_dict:
        count += 1
    return count


def detect_architecture(state_dict: Mapping[str, torch.Tensor]) -> LaionArchitecture:
    """The towers, their sizes and the fusion type, from the tensors' names and shapes."""
    fields: dict[str, Any] = {}
    if "audio_branch.layers.0.blocks.0.attn.qkv.weight" in state_dict:
        embed = int(state_dict["audio_branch.patch_embed.proj.weight"].shape[0])
        stages = _count(state_dict, "audio_branch.layers.{}.blocks.0.attn.qkv.weight")
        depths = tuple(
            _count(state_dict, f"audio_branch.layers.{stage}.blocks.{{}}.attn.qkv.weight")
            for stage in range(stages)
        )
        table = "audio_branch.layers.{}.blocks.0.attn.relative_position_bias_table"
        heads = tuple(int(state_dict[table.format(stage)].shape[1]) for stage in range(stages))
        window = (round(math.sqrt(state_dict[table.format(0)].shape[0])) + 1) // 2  # (2w - 1)^2 entries
        fc1 = state_dict["audio_branch.layers.0.blocks.0.mlp.fc1.weight"]
        fields.update(
            audio_family="HTSAT",
            amodel=HTSAT_SIZES.get((embed, depths), f"HTSAT (width {embed}, depths {list(depths)})"),
            patch_embeds_hidden_size=embed,
            depths=depths,
            num_attention_heads=heads,
            window_size=int(window),
            patch_size=int(state_dict["audio_branch.patch_embed.proj.weight"].shape[-1]),
            num_mel_bins=int(state_dict["audio_branch.bn0.weight"].shape[0]),
            mlp_ratio=fc1.shape[0] / fc1.shape[1],
        )
        local = state_dict.get("audio_branch.patch_embed.fusion_model.local_att.0.weight")
        if local is not None:
            fields["aff_block_r"] = embed // int(local.shape[0])
    elif any(key.startswith("audio_branch.conv_block1.") for key in state_dict):
        fields.update(audio_family="PANN", amodel="PANN")
    else:
        fields.update(audio_family="unknown", amodel="unknown")
    fields["fusion"] = _fusion_type(state_dict)
    fields["tmodel"] = _text_model(state_dict)
    if fields["tmodel"] in ("roberta", "bert"):
        words = state_dict["text_branch.embeddings.word_embeddings.weight"]
        fields.update(
            text_vocab_size=int(words.shape[0]),
            text_hidden_size=int(words.shape[1]),
            text_num_layers=_count(state_dict, "text_branch.encoder.layer.{}.attention.self.query.weight"),
            text_intermediate_size=int(
                state_dict["text_branch.encoder.layer.0.intermediate.dense.weight"].shape[0]
            ),
            text_max_positions=int(state_dict["text_branch.embeddings.position_embeddings.weight"].shape[0]),
            text_type_vocab_size=int(
                state_dict["text_branch.embeddings.token_type_embeddings.weight"].shape[0]
            ),
        )
    if "audio_projection.2.weight" in state_dict:
        fields["projection_dim"] = int(state_dict["audio_projection.2.weight"].shape[0])
    return LaionArchitecture(**fields)


def _fusion_type(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """LAION's ``fusion_type`` from the tensors it creates (laion_clap's htsat.py, feature_fusion.py)."""
    keys = [key for key in state_dict if key.startswith("audio_branch.")]
    proj = state_dict.get("audio_branch.patch_embed.proj.weight")
    if proj is not None and proj.shape[1] == 4:
        return "channel_map"
    if any(".mel_conv1d." in key for key in keys):
        return "1d (daf_1d, aff_1d or iaff_1d)"
    if any(".fusion_model.local_att2." in key for key in keys):
        return "iaff_2d"
    if any(".fusion_model.local_att." in key for key in keys):
        return "aff_2d"
    if any(".fusion_model." in key or ".mel_conv2d." in key for key in keys):
        return "daf_2d"
    return None


def _text_model(state_dict: Mapping[str, torch.Tensor]) -> str:
    if "text_branch.shared.weight" in state_dict or "text_branch.encoder.embed_tokens.weight" in state_dict:
        return "bart"
    token_types = state_dict.get("text_branch.embeddings.token_type_embeddings.weight")
    if token_types is not None:
        # roberta-base has one token type, bert-base two: where laion_clap's RoBERTa and BERT differ.
        return "roberta" if token_types.shape[0] == 1 else "bert"
    if any(key.startswith(("transformer.resblocks.", "text_branch.resblocks.")) for key in state_dict):
        return "transformer"
    return "unknown"


def check_request(
    architecture: LaionArchitecture, amodel: str | None, tmodel: str | None, fusion: str
) -> None:
    """Raise :class:`ConversionError` if the tensors cannot be converted, or do not match what was asked."""
    if architecture.audio_family == "PANN":
        raise ConversionError(
            "the checkpoint's audio tower is a PANN (CNN14/10/6): transformers' ClapAudioModel is HTS-AT "
            "only, so there is no model to convert it into"
        )
    if architecture.audio_family != "HTSAT":
        raise ConversionError(
            "the checkpoint's audio tower is neither HTS-AT nor PANN: not a laion_clap model"
        )
    if amodel is not None and amodel != architecture.amodel:
        raise ConversionError(
            f"--amodel {amodel} does not match the tensors: they are {architecture.amodel} (patch embedding "
            f"width {architecture.patch_embeds_hidden_size}, depths {list(architecture.depths)})"
        )
    if tmodel is not None and tmodel != architecture.tmodel:
        raise ConversionError(
            f"--tmodel {tmodel} does not match the tensors: the text tower is {architecture.tmodel}"
        )
    if fusion not in FUSIONS:
        raise ConversionError(f"--fusion must be one of {FUSIONS}, got {fusion!r}")
    if fusion == "fused" and architecture.fusion is None:
        raise ConversionError(
            "--fusion fused does not match the tensors: the checkpoint has no fusion layers"
        )
    if fusion == "unfused" and architecture.fusion is not None:
        raise ConversionError(
            "--fusion unfused does not match the tensors: the checkpoint has "
            f"{architecture.fusion} fusion layers"
        )
    if architecture.fusion not in (None, "aff_2d"):
        raise ConversionError(
            f"the checkpoint uses fusion type {architecture.fusion}: transformers' ClapModel implements "
            "aff_2d only"
        )
    if architecture.tmodel == "bart":
        raise ConversionError(
            "the checkpoint's text tower is BART (an encoder-decoder whose output LAION averages over all 77 "
            "positions): transformers' CLAP has no such text tower"
        )
    if architecture.tmodel not in ("roberta", "bert"):
        raise ConversionError(
            f"the checkpoint's text tower ({architecture.tmodel}) has no counterpart in transformers"
        )


# -- the mapping -------------------------------------------------------------------------------------------
# (LAION key pattern, tower, target pattern); tower "unused" gives the reason instead. Targets are the names
# inside each tower's own module: ClapAudioModel ("audio_encoder."), RobertaModel/BertModel/ClapTextModel,
# ClapProjectionLayer, and the model's logit scales.
_ENCODER = "audio_encoder."
_BLOCK = r"^audio_branch\.layers\.(\d+)\.blocks\.(\d+)\."
_TARGET_BLOCK = _ENCODER + r"layers.\1.blocks.\2."
_SPLIT = "{query,key,value}"
_RULES: list[tuple[str, str, str]] = [
    (r"^logit_scale_([at])$", "logit_scale", r"logit_scale_\1"),
    (r"^audio_branch\.bn0\.(.+)$", "audio", _ENCODER + r"batch_norm.\1"),
    (
        r"^audio_branch\.patch_embed\.(proj|norm|mel_conv2d)\.(weight|bias)$",
        "audio",
        _ENCODER + r"patch_embed.\1.\2",
    ),
    (
        r"^audio_branch\.patch_embed\.fusion_model\.(local_att|global_att)\.(\d+)\.(.+)$",
        "audio",
        _ENCODER + r"patch_embed.fusion_model.\1.\2.\3",
    ),
    (_BLOCK + r"norm1\.(weight|bias)$", "audio", _TARGET_BLOCK + r"layernorm_before.\3"),
    (_BLOCK + r"norm2\.(weight|bias)$", "audio", _TARGET_BLOCK + r"layernorm_after.\3"),
    (_BLOCK + r"attn\.qkv\.(weight|bias)$", "audio", _TARGET_BLOCK + "attention.self." + _SPLIT + r".\3"),
    (_BLOCK + r"attn\.proj\.(weight|bias)$", "audio", _TARGET_BLOCK + r"attention.output.dense.\3"),
    (
        _BLOCK + r"attn\.(relative_position_bias_table|relative_position_index)$",
        "audio",
        _TARGET_BLOCK + r"attention.self.\3",
    ),
    (_BLOCK + r"mlp\.fc1\.(weight|bias)$", "audio", _TARGET_BLOCK + r"intermediate.dense.\3"),
    (_BLOCK + r"mlp\.fc2\.(weight|bias)$", "audio", _TARGET_BLOCK + r"output.dense.\3"),
    (
        r"^audio_branch\.layers\.(\d+)\.downsample\.(reduction|norm)\.(weight|bias)$",
        "audio",
        _ENCODER + r"layers.\1.downsample.\2.\3",
    ),
    (r"^audio_branch\.norm\.(weight|bias)$", "audio", _ENCODER + r"norm.\1"),
    (r"^text_branch\.embeddings\.position_ids$", "text_buffer", r"embeddings.position_ids"),
    (r"^text_branch\.(embeddings|encoder|pooler)\.(.+)$", "text", r"\1.\2"),
    (r"^(audio|text)_projection\.0\.(weight|bias)$", "projection", r"\1_projection.linear1.\2"),
    (r"^(audio|text)_projection\.2\.(weight|bias)$", "projection", r"\1_projection.linear2.\2"),
    (
        _BLOCK + r"attn_mask$",
        "unused",
        "shifted-window attention mask: a buffer ClapAudioLayer recomputes in its forward",
    ),
    (
        r"^audio_branch\.spectrogram_extractor\.stft\.conv_(real|imag)\.weight$",
        "unused",
        "torchlibrosa STFT kernel (DFT x Hann window): preprocessing, checked equal to the processor's",
    ),
    (
        r"^audio_branch\.logmel_extractor\.melW$",
        "unused",
        "torchlibrosa mel filter bank (librosa, Slaney): preprocessing, checked equal to the processor's",
    ),
    (
        r"^audio_branch\.(tscam_conv|head)\.(weight|bias)$",
        "unused",
        "HTS-AT's AudioSet classification head (527 classes): not part of the embeddings",
    ),
    (
        r"^(audio|text)_transform\.sequential\.\d+\.(weight|bias)$",
        "unused",
        "MLP of LAION's training-only 'mlp loss' (--clap-mlploss), which CLAP_Module's embeddings skip",
    ),
]
_COMPILED_RULES = [(re.compile(pattern), tower, target) for pattern, tower, target in _RULES]
_FUSED_FRONT_END = (
    "; a fused model's forward does not use it (its mel comes from torchaudio, in the processor)"
)


@dataclass
class LaionTowers:
    """A LAION-CLAP state dict split into its towers, each under the names of its transformers module.

    ``audio``: ``ClapAudioModel`` names (``audio_encoder.*``); ``text``: ``RobertaModel``/``BertModel`` names
    (also ``ClapTextModel``'s); ``projections``: ``{audio,text}_projection.linear{1,2}.*``; ``logit_scales``:
    ``logit_scale_a``, ``logit_scale_t``; ``text_buffers``: the position ids, verified equal to ``arange``
    (``ClapTextModel`` stores them, ``RobertaModel``/``BertModel`` do not).

    ``mapped``: ``(source key, [(tower, name)])``; ``unused``: ``(source key, reason)``.
    """

    audio: dict[str, torch.Tensor] = field(default_factory=dict)
    text: dict[str, torch.Tensor] = field(default_factory=dict)
    projections: dict[str, torch.Tensor] = field(default_factory=dict)
    logit_scales: dict[str, torch.Tensor] = field(default_factory=dict)
    text_buffers: dict[str, torch.Tensor] = field(default_factory=dict)
    mapped: list[tuple[str, list[tuple[str, str]]]] = field(default_factory=list)
    unused: list[tuple[str, str]] = field(default_factory=list)
    verified: list[tuple[str, str]] = field(default_factory=list)

    def tower(self, name: str) -> dict[str, torch.Tensor]:
        return {
            "audio": self.audio,
            "text": self.text,
            "projection": self.projections,
            "logit_scale": self.logit_scales,
            "text_buffer": self.text_buffers,
        }[name]


def laion_towers(state_dict: Mapping[str, torch.Tensor], architecture: LaionArchitecture) -> LaionTowers:
    """Every tensor of a LAION-CLAP state dict (HTS-AT audio, RoBERTa or BERT text) in its tower, renamed.

    The audio tower comes out under ``ClapAudioModel``'s names, the text tower under ``RobertaModel``'s or
    ``BertModel``'s (LAION's ``text_branch`` is one of those; ``ClapTextModel`` shares the names), so each
    loads with ``load_state_dict(strict=True)`` into the module built from :func:`supclap_config` or
    :func:`bert_config`. Raises :class:`ConversionError` on a tensor no rule knows (a modified model).
    """
    towers, unknown = LaionTowers(), []
    for key, value in state_dict.items():
        for pattern, tower, target in _COMPILED_RULES:
            match = pattern.match(key)
            if match is None:
                continue
            if tower == "unused":
                fused_front_end = architecture.fusion is not None and "_extractor." in key
                towers.unused.append((key, target + (_FUSED_FRONT_END if fused_front_end else "")))
            elif _SPLIT in target:  # a fused query/key/value projection: three equal chunks along dim 0
                names = [match.expand(target).replace(_SPLIT, part) for part in ("query", "key", "value")]
                for name, chunk in zip(names, value.chunk(3, dim=0)):
                    towers.audio[name] = chunk.clone()
                towers.mapped.append((key, [("audio", name) for name in names]))
            else:
                name = match.expand(target)
                if tower == "text_buffer":
                    _check_position_ids(key, value, architecture)
                    towers.verified.append((key, name))
                towers.tower(tower)[name] = value.clone()
                towers.mapped.append((key, [(tower, name)]))
            break
        else:
            unknown.append(key)
    if unknown:
        raise ConversionError(
            f"{len(unknown)} tensors that no laion_clap 1.1 CLAP model has (a modified model?): {unknown[:6]}"
        )
    return towers


def _check_position_ids(key: str, value: torch.Tensor, architecture: LaionArchitecture) -> None:
    expected = torch.arange(architecture.text_max_positions).expand(1, -1)
    if tuple(value.shape) != tuple(expected.shape) or not torch.equal(value.to(expected.dtype), expected):
        raise ConversionError(f"{key} is not 0, 1, 2, ...: the text tower numbers its positions differently")


# -- configurations ----------------------------------------------------------------------------------------
def _audio_config(architecture: LaionArchitecture) -> dict[str, Any]:
    return {
        "patch_embeds_hidden_size": architecture.patch_embeds_hidden_size,
        "depths": list(architecture.depths),
        "num_attention_heads": list(architecture.num_attention_heads),
        "num_hidden_layers": len(architecture.depths),
        "window_size": architecture.window_size,
        "hidden_size": architecture.audio_hidden_size,
        "num_mel_bins": architecture.num_mel_bins,
        "patch_size": architecture.patch_size,
        "patch_stride": [architecture.patch_size, architecture.patch_size],
        "spec_size": 256,  # every laion_clap HTS-AT (htsat.py: spec_size=256)
        "mlp_ratio": architecture.mlp_ratio,
        "enable_fusion": architecture.fusion is not None,
        "aff_block_r": architecture.aff_block_r,
        "layer_norm_eps": 1e-5,  # torch.nn.LayerNorm's default, which htsat.py keeps
        "hidden_act": "gelu",
        "qkv_bias": True,
        "projection_dim": architecture.projection_dim,
    }


def _text_config(architecture: LaionArchitecture, defaults: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "vocab_size": architecture.text_vocab_size,
        "hidden_size": architecture.text_hidden_size,
        "num_hidden_layers": architecture.text_num_layers,
        "num_attention_heads": architecture.text_num_attention_heads,
        "intermediate_size": architecture.text_intermediate_size,
        "max_position_embeddings": architecture.text_max_positions,
        "type_vocab_size": architecture.text_type_vocab_size,
        **defaults,
    }


def supclap_config(architecture: LaionArchitecture, **loss_settings: Any) -> SupClapConfig:
    """The SupClap (ClapModel) configuration of an HTS-AT + RoBERTa LAION-CLAP model, from its tensors.

    The RoBERTa fields the tensors do not hold come from roberta-base's config, which laion_clap loads;
    ``layer_norm_eps`` is 1e-5 there (ClapTextConfig's default, 1e-12, is BERT's: transformers' own
    conversion script keeps that default, docs/CONVERSION.md).
    """
    return SupClapConfig(
        text_config={
            **_text_config(architecture, ROBERTA_BASE),
            "projection_dim": architecture.projection_dim,
        },
        audio_config=_audio_config(architecture),
        projection_dim=architecture.projection_dim,
        projection_hidden_act="relu",
        **loss_settings,
    )


def bert_config(architecture: LaionArchitecture) -> Any:
    """The transformers ``BertConfig`` of a LAION-CLAP BERT text tower (the rest from bert-base-uncased)."""
    from transformers import BertConfig

    return BertConfig(**_text_config(architecture, BERT_BASE_UNCASED))


def dual_encoder_config(architecture: LaionArchitecture, **loss_settings: Any) -> SupClapDualEncoderConfig:
    """The dual-encoder configuration of an HTS-AT + BERT LAION-CLAP model, from its tensors.

    Its heads are LAION's (``CLAP.encode_audio``/``encode_text``, ``audio_projection``/``text_projection``):
    each tower's ``pooler_output`` (HTS-AT's; BERT's dense + tanh pooler over the first token, where the
    family default would average the tokens and drop the pooler), then ``Linear, ReLU, Linear`` with biases
    and a ``projection_dim``-wide hidden layer (``projection_type="mlp"``).
    """
    from transformers import ClapAudioConfig

    return SupClapDualEncoderConfig(
        audio_config=ClapAudioConfig(**_audio_config(architecture)),
        text_config=bert_config(architecture),
        projection_dim=architecture.projection_dim,
        projection_type="mlp",
        projection_hidden_act="relu",
        audio_pooling="pooler",
        text_pooling="pooler",
        **loss_settings,
    )


# -- the front end -----------------------------------------------------------------------------------------
def check_front_end(
    state_dict: Mapping[str, torch.Tensor], architecture: LaionArchitecture
) -> dict[str, Any]:
    """Check the checkpoint's frozen preprocessing tensors (torchlibrosa's STFT kernels and mel bank) against
    what the LAION processor computes for 48 kHz, 50-14000 Hz; returns the FFT size and the differences."""
    real = state_dict.get("audio_branch.spectrogram_extractor.stft.conv_real.weight")
    imaginary = state_dict.get("audio_branch.spectrogram_extractor.stft.conv_imag.weight")
    mel_bank = state_dict.get("audio_branch.logmel_extractor.melW")
    if real is None or imaginary is None or mel_bank is None:
        return {"n_fft": 1024, "checked": "the checkpoint stores no front end: laion_clap's defaults assumed"}
    n_fft = int(real.shape[-1])
    expected_real, expected_imaginary = torchlibrosa_stft_kernels(n_fft)
    bank = torch.from_numpy(
        slaney_mel_filter_bank(
            SAMPLING_RATE, n_fft, architecture.num_mel_bins, FREQUENCY_MIN, FREQUENCY_MAX
        ).T.copy()
    )
    differences = {}
    for name, stored, expected in (
        (
            "stft_kernel_max_abs_diff",
            torch.cat([real, imaginary]),
            torch.cat([expected_real, expected_imaginary]),
        ),
        ("mel_bank_max_abs_diff", mel_bank, bank),
    ):
        if tuple(stored.shape) != tuple(expected.shape):
            raise ConversionError(
                f"the checkpoint's {name.split('_max')[0].replace('_', ' ')} has shape {list(stored.shape)}, "
                f"not laion_clap's {list(expected.shape)}: its preprocessing cannot be reproduced"
            )
        differences[name] = float((stored.float() - expected).abs().max())
    if max(differences.values()) > FRONT_END_TOLERANCE:
        raise ConversionError(
            f"the checkpoint's audio front end is not laion_clap's ({SAMPLING_RATE} Hz, {FREQUENCY_MIN}-"
            f"{FREQUENCY_MAX} Hz mel bank, periodic Hann window; differences {differences}): the converted "
            "processor could not reproduce its preprocessing"
        )
    return {"n_fft": n_fft, **differences}


def build_feature_extractor(kind: str, architecture: LaionArchitecture, n_fft: int) -> Any:
    """``"laion"``: :class:`LaionClapFeatureExtractor` (LAION's own preprocessing, exactly);
    ``"transformers"``: ``ClapFeatureExtractor`` with LAION's settings (the Hub's way: close, not exact;
    docs/CONVERSION.md)."""
    settings = {
        "feature_size": architecture.num_mel_bins,
        "sampling_rate": SAMPLING_RATE,
        "hop_length": HOP_LENGTH,
        "max_length_s": MAX_LENGTH_S,
        "fft_window_size": n_fft,
        "frequency_min": FREQUENCY_MIN,
        "frequency_max": FREQUENCY_MAX,
        "truncation": "fusion" if architecture.fusion else "rand_trunc",
        "padding": "repeatpad",
    }
    if kind == "laion":
        return LaionClapFeatureExtractor(**settings)
    if kind == "transformers":
        from transformers import ClapFeatureExtractor

        return ClapFeatureExtractor(**settings, top_db=None)
    raise ConversionError(f"--processor must be one of {PROCESSORS}, got {kind!r}")


# A tokenizer folder as the original Hub repositories hold one (roberta-base's, bert-base-uncased's files),
# where no tokenizer_config.json names the class: the files each class reads.
_BARE_TOKENIZER_FILES = {"roberta": ("vocab.json", "merges.txt"), "bert": ("vocab.txt",)}


def load_tokenizer(name_or_folder: str, architecture: LaionArchitecture) -> Any:
    """The text tower's tokenizer (LAION's captions go through it), checked against the embedding table."""
    from transformers import AutoTokenizer, BertTokenizer, RobertaTokenizer

    tmodel, folder = architecture.tmodel, Path(name_or_folder)
    bare_files = _BARE_TOKENIZER_FILES[tmodel]
    bare = folder.is_dir() and not any(
        (folder / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")
    )
    try:
        if bare:
            if not all((folder / f).is_file() for f in bare_files):
                raise OSError(
                    f"{folder} holds no tokenizer files (tokenizer.json, or {' and '.join(bare_files)})"
                )
            tokenizer = {"roberta": RobertaTokenizer, "bert": BertTokenizer}[tmodel].from_pretrained(folder)
        else:
            tokenizer = AutoTokenizer.from_pretrained(name_or_folder)
    except (OSError, ValueError) as error:
        raise ConversionError(
            f"could not load the tokenizer {name_or_folder!r} ({type(error).__name__}: "
            f"{(str(error).strip().splitlines() or [''])[0][:200]}): pass --tokenizer with a local copy of "
            f"{DEFAULT_TOKENIZERS[tmodel]}'s tokenizer files"
        ) from error
    if len(tokenizer) > architecture.text_vocab_size:
        raise ConversionError(
            f"the tokenizer {name_or_folder!r} has {len(tokenizer)} tokens, more than the text tower's "
            f"{architecture.text_vocab_size} embeddings: it is not the tower's tokenizer"
        )
    pad_token_id = TEXT_TOWER_DEFAULTS[tmodel]["pad_token_id"]
    if tokenizer.pad_token_id != pad_token_id:
        why = " (RoBERTa numbers positions from the padding id)" if tmodel == "roberta" else ""
        raise ConversionError(
            f"the tokenizer {name_or_folder!r} pads with id {tokenizer.pad_token_id}, "
            f"{DEFAULT_TOKENIZERS[tmodel]} with {pad_token_id}{why}: it is not the tower's tokenizer"
        )
    tokenizer.model_max_length = TEXT_MAX_LENGTH
    return tokenizer


# -- the conversion ----------------------------------------------------------------------------------------
_LEFT_INITIALISED_REASONS = (
    (r"^loss_fn\.", "SupCLAP loss parameter (SVR radius or predictor): new, learned when training continues"),
    (r"\.token_type_ids$", "zeros buffer (the token types of single-segment text), built by ClapTextModel"),
    (r"\.position_ids$", "position ids (0, 1, 2, ...), built by ClapTextModel (the checkpoint has none)"),
)
# SupClapModel (a ClapModel) and SupClapDualEncoderModel both hold their towers as audio_model and text_model.
_TOWER_PREFIXES = {"audio": "audio_model.", "text": "text_model.", "text_buffer": "text_model."}


@dataclass
class LaionConversion:
    """A converted model, its processor and the report of what went where.

    ``model``: a ``SupClapModel`` (RoBERTa text tower) or a ``SupClapDualEncoderModel`` (BERT);
    ``processor``: a ``ClapProcessor`` or a ``SupClapDualEncoderProcessor``, with the same feature extractor.
    """

    model: SupClapModel | SupClapDualEncoderModel
    processor: Any
    report: ConversionReport

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        """Model (safetensors, config, code), processor and ``conversion_report.json`` into ``folder``."""
        self.model.save_pretrained(folder, safe_serialization=True)
        self.processor.save_pretrained(folder)
        self.report.save(folder)


def _load_towers(
    model: SupClapModel | SupClapDualEncoderModel, towers: LaionTowers
) -> tuple[list, list, list]:
    """Copy the towers into ``model``; returns the report's ``mapped``, ``left_initialised`` and the
    ``unused`` entries of buffers the model rebuilds without saving them (checked equal, not loaded)."""
    target = model.state_dict()

    def full_name(tower: str, name: str) -> str:
        return _TOWER_PREFIXES.get(tower, "") + name

    state = {
        full_name(tower, name): towers.tower(tower)[name]
        for _, targets in towers.mapped
        for tower, name in targets
    }
    # BertModel builds its position ids as a buffer it does not save (ClapTextModel saves its own): there is
    # nothing to load them into, so they are compared with the model's instead.
    buffers = dict(model.named_buffers())
    rebuilt = {key: state.pop(key) for key in list(state) if key not in target and key in buffers}
    for key, value in rebuilt.items():
        built = buffers[key]
        if tuple(value.shape) != tuple(built.shape) or not torch.equal(value.to(built.dtype), built):
            raise ConversionError(f"{key}: the checkpoint's differs from the buffer the model builds")
    problems = [key for key in state if key not in target]
    problems += [
        f"{key}: {list(value.shape)} in the checkpoint, {list(target[key].shape)} in the model"
        for key, value in state.items()
        if key in target and tuple(value.shape) != tuple(target[key].shape)
    ]
    if problems:
        raise ConversionError(f"the tensors do not fit the inferred configuration: {problems[:6]}")
    for key, value in state.items():
        if key.endswith("relative_position_index") and not torch.equal(
            value.to(target[key].dtype), target[key]
        ):
            raise ConversionError(
                f"{key} differs from the index ClapAudioModel builds: another window layout"
            )
    model.load_state_dict(state, strict=False)
    left, learned = [], []
    for key in target:
        if key in state:
            continue
        reason = next((why for pattern, why in _LEFT_INITIALISED_REASONS if re.search(pattern, key)), None)
        (left if reason else learned).append((key, reason))
    if learned:
        raise ConversionError(
            f"the checkpoint does not provide these learned tensors: {[k for k, _ in learned][:6]}"
        )
    mapped, unused = [], []
    for source, targets in towers.mapped:
        names = [full_name(tower, name) for tower, name in targets]
        if names[0] in rebuilt:
            owner = type(model.get_submodule(names[0].split(".")[0])).__name__
            unused.append(
                (
                    source,
                    f"deterministic buffer, verified equal to the one {owner} builds (and does not save)",
                )
            )
        else:
            mapped.append((source, names))
    return mapped, left, unused


def convert_laion_clap(
    checkpoint: str | os.PathLike,
    *,
    amodel: str | None = None,
    tmodel: str | None = None,
    fusion: str = "auto",
    processor: str = "laion",
    tokenizer: str | None = None,
    **loss_settings: Any,
) -> LaionConversion:
    """A LAION-CLAP ``.pt`` converted, everything checked first: HTS-AT + RoBERTa to a ``SupClapModel`` with a
    ``ClapProcessor``, HTS-AT + BERT to a ``SupClapDualEncoderModel`` with a ``SupClapDualEncoderProcessor``.

    Args:
        checkpoint: the ``.pt`` file (read with ``weights_only=True``: no code in it runs).
        amodel, tmodel: what the checkpoint should be (``HTSAT-tiny``..., ``roberta``...); ``None``: whatever
            the tensors say. A value the tensors contradict is an error.
        fusion: ``"auto"`` (from the tensors), ``"fused"`` or ``"unfused"`` (checked against them).
        processor: ``"laion"`` (LAION's preprocessing, exactly) or ``"transformers"``
            (``ClapFeatureExtractor``).
        tokenizer: Hub id or folder of the text tower's tokenizer (default ``roberta-base`` or
            ``bert-base-uncased``).
        loss_settings: SupCLAP loss settings for training the converted model (``svr_mode=...``).

    Raises :class:`ConversionError` (a ``ValueError``) with one message when the file, its architecture or the
    arguments do not allow an exact conversion, and ``FileNotFoundError`` for a missing file.
    """
    from transformers import ClapProcessor

    from ..model.processing_supclap_dual_encoder import SupClapDualEncoderProcessor

    path = Path(checkpoint)
    state_dict, meta = read_laion_state_dict(path)
    architecture = detect_architecture(state_dict)
    check_request(architecture, amodel, tmodel, fusion)
    front_end = check_front_end(state_dict, architecture)
    feature_extractor = build_feature_extractor(processor, architecture, front_end["n_fft"])
    tokenizer_name = tokenizer or DEFAULT_TOKENIZERS[architecture.tmodel]
    text_tokenizer = load_tokenizer(tokenizer_name, architecture)
    towers = laion_towers(state_dict, architecture)
    config: SupClapConfig | SupClapDualEncoderConfig
    if architecture.tmodel == "bert":  # ClapTextModel is RoBERTa-shaped: the dual-encoder family
        config = dual_encoder_config(architecture, **loss_settings)
        model, processor_class = SupClapDualEncoderModel(config), SupClapDualEncoderProcessor
        heads = {name: getattr(config, name) for name in _DUAL_ENCODER_HEAD_FIELDS}
    else:
        config = supclap_config(architecture, **loss_settings)
        model, processor_class = SupClapModel(config), ClapProcessor
        heads = {"projection_hidden_act": config.projection_hidden_act, "text_pooling": config.text_pooling}
    mapped, left_initialised, rebuilt_buffers = _load_towers(model, towers)
    model.eval()

    report = ConversionReport(
        source={
            "file": path.name,
            "sha256": file_sha256(path),
            "bytes": path.stat().st_size,
            "format": "laion_clap",
            **meta,
        },
        architecture=architecture.describe(),
        config={
            "model_class": type(model).__name__,
            "text_config": _text_config(architecture, TEXT_TOWER_DEFAULTS[architecture.tmodel]),
            "audio_config": _audio_config(architecture),
            "projection_dim": architecture.projection_dim,
            **heads,
        },
        processor={
            "class": type(feature_extractor).__name__,
            "truncation": feature_extractor.truncation,
            "frequency_min": FREQUENCY_MIN,
            "frequency_max": FREQUENCY_MAX,
            "sampling_rate": SAMPLING_RATE,
            "fft_window_size": front_end["n_fft"],
            "tokenizer": Path(tokenizer_name).name if Path(tokenizer_name).exists() else tokenizer_name,
            "front_end_check": front_end,
        },
        mapped=mapped,
        verified=[(source, _TOWER_PREFIXES["text_buffer"] + name) for source, name in towers.verified]
        + [(source, targets[0]) for source, targets in mapped if source.endswith("relative_position_index")],
        unused=towers.unused + rebuilt_buffers,
        left_initialised=left_initialised,
    )
    return LaionConversion(
        model, processor_class(feature_extractor=feature_extractor, tokenizer=text_tokenizer), report
    )
