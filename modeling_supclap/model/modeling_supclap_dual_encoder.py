"""SupClapDualEncoderModel: any audio encoder and any text encoder, two projections, the SupCLAP loss.

The audio-text analogue of transformers' ``VisionTextDualEncoderModel``. The towers are built from the
sub-configs (``AutoModel.from_config``, or the encoder-only class of a sequence-to-sequence family:
:data:`TOWER_FAMILIES`), each pooled to one vector ("mean" over valid frames or tokens, the tower's "pooler"
output, or the first token: "cls"), projected to ``projection_dim`` (one matrix, or CLAP's two-layer MLP:
``projection_type``) and L2-normalised. What follows the towers (logit scales, the loss, cached negatives,
the output) is ``contrastive_head.py``'s, shared with ``SupClapModel``, so both families give the same
outputs and named loss terms.

Part of the model's load-time import closure: only flat sibling imports.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.configuration_utils import PreTrainedConfig
from transformers.dynamic_module_utils import get_relative_import_files
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.clap.modeling_clap import ClapOutput
from transformers.utils import can_return_tuple

from .configuration_supclap_dual_encoder import (
    TOWER_CONFIGS,
    SupClapDualEncoderConfig,
    hub_arguments,
    register_remote_towers,
)
from .contrastive_head import SupClapHeadMixin, SupClapOutput
from .losses import LossComponent, SupClapLoss

# Per family (a config's model_type): ``tower_class``, the module to build where AutoModel.from_config
# gives another (the whole sequence-to-sequence model, or nothing); ``pooling``, what "auto" means;
# ``mask``, what the processor's audio mask counts ("samples", "mel" frames of 160 samples, AST "fbank"
# frames; None: no mask).
_WAV2VEC2_FAMILY = {"pooling": "mean", "mask": "samples"}
TOWER_FAMILIES: dict[str, dict[str, Any]] = {
    "audio-spectrogram-transformer": {"pooling": "pooler", "mask": "fbank"},
    "whisper": {"tower_class": "WhisperEncoder", "pooling": "mean", "mask": "mel"},
    "clap_audio_model": {"tower_class": "ClapAudioModel", "pooling": "pooler", "mask": None},
    **dict.fromkeys(
        ("wav2vec2", "hubert", "wavlm", "data2vec-audio", "wav2vec2-conformer", "unispeech", "unispeech-sat"),
        _WAV2VEC2_FAMILY,
    ),
    **dict.fromkeys(
        ("bert", "roberta", "xlm-roberta", "modernbert", "camembert", "electra"), {"pooling": "mean"}
    ),
    "m2m_100": {"tower_class": "M2M100Encoder", "pooling": "mean"},  # NLLB; SONAR's text encoder port
    "t5": {"tower_class": "T5EncoderModel", "pooling": "mean"},
    "mt5": {"tower_class": "MT5EncoderModel", "pooling": "mean"},
    "umt5": {"tower_class": "UMT5EncoderModel", "pooling": "mean"},
}
# Classes a checkpoint may be saved as that hold only an encoder: loaded with that class (AutoModel would
# build the whole model and leave every weight missing).
_ENCODER_ONLY = {"WhisperEncoder", "M2M100Encoder", "T5EncoderModel", "MT5EncoderModel", "UMT5EncoderModel"}
# Tensors a tower checkpoint need not carry (rebuilt at construction).
_REBUILT = ("position_ids", "token_type_ids", "num_batches_tracked", "embed_positions.weights")


def transformers_class(model_type: str, name: str) -> type:
    """A class of transformers by name: its top level, else
    ``transformers.models.<family>.modeling_<family>``."""
    import transformers
    from transformers.models.auto.configuration_auto import model_type_to_module_name

    if hasattr(transformers, name):
        return getattr(transformers, name)
    module = model_type_to_module_name(model_type)
    return getattr(importlib.import_module(f"transformers.models.{module}.modeling_{module}"), name)


def build_tower(config: PreTrainedConfig, tower_class: str | None = None) -> PreTrainedModel:
    """A tower for ``config`` (fresh weights): the family's encoder-only class where it has one, else
    AutoModel."""
    name = tower_class or TOWER_FAMILIES.get(config.model_type, {}).get("tower_class")
    if name:
        return transformers_class(config.model_type, name)(config)
    return AutoModel.from_config(config, trust_remote_code=bool(getattr(config, "auto_map", None)))


def load_tower(path: str, trust_remote_code: bool = False, **kwargs: Any) -> PreTrainedModel:
    """The encoder of the checkpoint ``path`` with its weights: a CLAP checkpoint's audio tower, an
    encoder-only
    checkpoint with its own class, a sequence-to-sequence one's encoder. Raises ``ValueError`` naming the
    checkpoint if a tower weight is missing (transformers would leave it random with a log line)."""
    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    architecture = (getattr(config, "architectures", None) or [None])[0]
    if config.model_type in ("clap", "supclap"):  # a whole CLAP model: its audio tower
        from transformers import ClapModel

        tower, info = ClapModel.from_pretrained(path, output_loading_info=True, **kwargs)
        tower, info = tower.audio_model, {"missing_keys": [k for k in info["missing_keys"] if "audio" in k]}
    elif architecture in _ENCODER_ONLY:
        load = transformers_class(config.model_type, architecture).from_pretrained
        tower, info = load(path, output_loading_info=True, **kwargs)
    elif config.model_type in ("t5", "mt5", "umt5"):  # the encoder class reads a whole checkpoint's encoder
        load = transformers_class(
            config.model_type, TOWER_FAMILIES[config.model_type]["tower_class"]
        ).from_pretrained
        tower, info = load(path, output_loading_info=True, **kwargs)
    else:
        tower, info = AutoModel.from_pretrained(
            path, output_loading_info=True, trust_remote_code=trust_remote_code, **kwargs
        )
        if getattr(tower.config, "is_encoder_decoder", False) and hasattr(tower, "get_encoder"):
            tower = tower.get_encoder()  # WhisperModel -> WhisperEncoder, M2M100Model -> M2M100Encoder
            info["missing_keys"] = [k for k in info["missing_keys"] if not k.startswith("decoder.")]
    missing = [k for k in info["missing_keys"] if not k.endswith(_REBUILT)]
    if missing:
        raise ValueError(
            f"{path}: the checkpoint has no value for {len(missing)} weight(s) of its {type(tower).__name__} "
            f"tower ({', '.join(missing[:5])}...): is it the checkpoint of another architecture?"
        )
    return tower


def tower_family(tower: nn.Module) -> dict[str, Any]:
    return TOWER_FAMILIES.get(getattr(tower.config, "model_type", ""), {})


def _lengths_to_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    return torch.arange(frames, device=lengths.device)[None, :] < lengths[:, None]


def audio_frame_mask(
    tower: nn.Module, audio_mask: torch.Tensor | None, out_frames: int
) -> torch.Tensor | None:
    """(batch, out_frames) bool mask of the tower's valid output frames, from the processor's audio mask."""
    kind = tower_family(tower).get("mask", "proportional")
    if audio_mask is None or kind is None:
        return None
    if hasattr(tower, "_get_feature_vector_attention_mask"):  # wav2vec2 family: its conv stack's own lengths
        return tower._get_feature_vector_attention_mask(out_frames, audio_mask).bool()
    valid = audio_mask.sum(-1).long()
    if kind == "mel":  # Whisper: conv1 (stride 1) then conv2 (stride 2), kernel 3, padding 1
        lengths = valid
        for conv in (tower.conv1, tower.conv2):
            lengths = (lengths + 2 * conv.padding[0] - conv.kernel_size[0]) // conv.stride[0] + 1
        return _lengths_to_mask(lengths.clamp(max=out_frames), out_frames)
    if kind == "fbank":  # AST: [CLS, distillation] then the frequency-major patch grid
        config = tower.config
        f_dim = (config.num_mel_bins - config.patch_size) // config.frequency_stride + 1
        t_dim = (config.max_length - config.patch_size) // config.time_stride + 1
        starts = torch.arange(t_dim, device=audio_mask.device) * config.time_stride
        patches = (starts[None, :] < valid[:, None])[:, None, :].expand(-1, f_dim, -1).reshape(len(valid), -1)
        special = patches.new_ones(len(valid), out_frames - f_dim * t_dim)
        return torch.cat([special, patches], dim=1)
    # Other towers (CED, Dasheng, ...): proportional, exact for a uniform frame rate.
    lengths = torch.ceil(valid.float() * out_frames / audio_mask.shape[-1]).long()
    return _lengths_to_mask(lengths, out_frames)


def pool(outputs: Any, how: str, mask: torch.Tensor | None) -> torch.Tensor:
    """One vector per row of a tower's ``outputs``: ``pooler_output``, the first token, or the mean over the
    valid ones (``mask``: (batch, frames) of 1/True where valid)."""
    if how == "pooler":
        pooled = outputs.get("pooler_output")
        if pooled is None:
            raise ValueError("pooling 'pooler': the tower returns no pooler_output (use 'mean' or 'cls')")
        return pooled
    hidden = outputs.last_hidden_state
    if hidden.dim() != 3:
        raise ValueError(
            f"pooling {how!r} needs a (batch, frames, width) last_hidden_state, got {tuple(hidden.shape)}"
        )
    if how == "cls":
        return hidden[:, 0]
    if mask is None:
        return hidden.mean(dim=1)
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def as_model_output(raw: Any) -> Any:
    """A tower's output with a ``last_hidden_state``: remote-code audio towers differ (Dasheng's returns a
    bare (batch, frames, width) tensor, CED's a classifier output whose ``logits`` are the hidden states)."""
    if torch.is_tensor(raw):
        return BaseModelOutputWithPooling(last_hidden_state=raw)
    if isinstance(raw, tuple) and not hasattr(raw, "keys"):
        return BaseModelOutputWithPooling(last_hidden_state=raw[0])
    if raw.get("last_hidden_state") is None:
        logits = raw.get("logits")
        if torch.is_tensor(logits) and logits.dim() == 3:
            return BaseModelOutputWithPooling(last_hidden_state=logits)
        raise ValueError(
            f"the tower returns no last_hidden_state (fields: {list(raw.keys())}): it is not an encoder "
            "the dual encoder can pool"
        )
    return raw


def tower_width(config: PreTrainedConfig) -> int:
    """The width of a tower's hidden states (the input of its projection)."""
    for name in ("hidden_size", "d_model", "embed_dim", "dim"):
        if isinstance(getattr(config, name, None), int):
            return getattr(config, name)
    nested = getattr(config, "encoder_kwargs", None)  # Dasheng's config keeps its width there
    if isinstance(nested, dict) and isinstance(nested.get("embed_dim"), int):
        return nested["embed_dim"]
    raise ValueError(f"cannot tell the hidden width of a {type(config).__name__} tower")


class SupClapDualEncoderMLPProjection(nn.Module):
    """CLAP's projection: ``linear2(activation(linear1(x)))``, both with bias, the hidden layer as wide as the
    output. The layout of transformers' ``ClapProjectionLayer`` (and its tensor names) and of LAION-CLAP's
    ``nn.Sequential(Linear, ReLU, Linear)``, so CLAP checkpoints' projections load into it unchanged."""

    def __init__(self, in_features: int, projection_dim: int, hidden_act: str) -> None:
        super().__init__()
        self.linear1 = nn.Linear(in_features, projection_dim)
        self.activation = ACT2FN[hidden_act]
        self.linear2 = nn.Linear(projection_dim, projection_dim)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.activation(self.linear1(hidden_states)))


def build_projection(in_features: int, config: SupClapDualEncoderConfig) -> nn.Module:
    """A tower's projection into the shared space, as ``config.projection_type`` says: ``"linear"`` (one
    bias-free matrix, the family's default) or ``"mlp"`` (:class:`SupClapDualEncoderMLPProjection`)."""
    if config.projection_type == "mlp":
        return SupClapDualEncoderMLPProjection(
            in_features, config.projection_dim, config.projection_hidden_act
        )
    return nn.Linear(in_features, config.projection_dim, bias=False)


class SupClapDualEncoderModel(SupClapHeadMixin, PreTrainedModel):
    """Any audio tower and any text tower, trained with the SupCLAP loss (see the module docstring).

    `forward` takes the text tower's `input_ids`/`attention_mask` (and `token_type_ids`, `position_ids`)
    and the audio tower's `input_values` or `input_features` (CLAP's also `is_longer`) with
    `audio_attention_mask`, the processor's name for the feature extractor's padding mask; it returns a
    [`SupClapOutput`] like `SupClapModel`'s. `return_loss=None` computes the loss in training mode only.

    Example::

        >>> from modeling_supclap import SupClapDualEncoderModel
        >>> model = SupClapDualEncoderModel.from_audio_text_pretrained(  # doctest: +SKIP
        ...     "MIT/ast-finetuned-audioset-10-10-0.4593", "bert-base-uncased", projection_dim=512
        ... )
    """

    config_class = SupClapDualEncoderConfig
    config: SupClapDualEncoderConfig
    base_model_prefix = "supclap_dual_encoder"  # never a tower's attribute: loading strips a matching prefix
    main_input_name = "input_ids"
    input_modalities = ("audio", "text")
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    # Loss parameters (radius predictor, SigLIP bias) are not in checkpoints of other losses.
    _keys_to_ignore_on_load_missing = [r"^loss_fn\."]
    audio_input_names = ("input_values", "input_features")

    def __init__(
        self,
        config: SupClapDualEncoderConfig,
        audio_model: PreTrainedModel | None = None,
        text_model: PreTrainedModel | None = None,
    ):
        super().__init__(config)
        self.audio_model = audio_model or build_tower(config.audio_config, config.audio_tower_class)
        self.text_model = text_model or build_tower(config.text_config, config.text_tower_class)
        # An unused pooler (BERT's under "mean") holds parameters without gradients, which DDP refuses:
        # dropped,
        # from the config alone, so that from_pretrained builds the same modules.
        for tower in (self.audio_model, self.text_model):
            if self.pooling_of(tower) in ("mean", "cls") and isinstance(
                getattr(tower, "pooler", None), nn.Module
            ):
                tower.pooler = None
        # One config object per tower, shared with this one (as VisionTextDualEncoderModel does).
        self.config.audio_config._attn_implementation = self.audio_model.config._attn_implementation
        self.config.text_config._attn_implementation = self.text_model.config._attn_implementation
        self.audio_model.config, self.text_model.config = self.config.audio_config, self.config.text_config

        self.audio_projection = build_projection(tower_width(config.audio_config), config)
        self.text_projection = build_projection(tower_width(config.text_config), config)
        # Their values are set in _init_weights: from_pretrained builds on the meta device.
        self.logit_scale_a = nn.Parameter(torch.empty(()))
        self.logit_scale_t = nn.Parameter(torch.empty(()))
        self.loss_fn = SupClapLoss(config)
        if config.freeze_logit_scale:
            self.logit_scale_a.requires_grad_(False)
            self.logit_scale_t.requires_grad_(False)
        self._audio_arguments = set(inspect.signature(self.audio_model.forward).parameters)
        self._text_arguments = set(inspect.signature(self.text_model.forward).parameters)
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # The towers' own modules go to their own _init_weights (and pretrained ones, flagged as initialised,
        # are left alone): only what this model adds is initialised here.
        if isinstance(module, SupClapDualEncoderModel):
            module.init_logit_scales()
        elif isinstance(module, nn.Linear) and any(module is layer for layer in self.projection_layers()):
            init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, LossComponent):
            module.reset_parameters(init)

    def projection_layers(self) -> list[nn.Linear]:
        """The linear layers of both projections: each projection itself ("linear"), or the MLP's two. Each
        layer is initialised on its own: a container without parameters of its own counts as initialised
        for code outside transformers (``PreTrainedModel._initialize_weights``)."""
        return [
            layer
            for projection in (self.audio_projection, self.text_projection)
            for layer in projection.modules()
            if isinstance(layer, nn.Linear)
        ]

    def pooling_of(self, tower: nn.Module) -> str:
        """The pooling a tower uses: the config's, or its family's for "auto" ("auto" again if unknown)."""
        configured = self.config.audio_pooling if tower is self.audio_model else self.config.text_pooling
        return tower_family(tower).get("pooling", "auto") if configured == "auto" else configured

    def encode_audio(
        self,
        input_values: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
        is_longer: torch.Tensor | None = None,
        audio_attention_mask: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> tuple[Any, torch.Tensor]:
        """(the audio tower's outputs, the pooled vector before the projection)."""
        tower = self.audio_model
        audio = input_values if input_values is not None else input_features
        if audio is None:
            raise ValueError("no audio: pass the processor's input_values or input_features")
        arguments = {tower.main_input_name: audio}
        if is_longer is not None and "is_longer" in self._audio_arguments:
            arguments["is_longer"] = is_longer
        mask_to_tower = self.config.audio_mask_to_tower
        if mask_to_tower is None:  # as the wav2vec2 family is trained: only with a layer-norm feature encoder
            mask_to_tower = getattr(tower.config, "feat_extract_norm", None) == "layer"
        if mask_to_tower and audio_attention_mask is not None and "attention_mask" in self._audio_arguments:
            arguments["attention_mask"] = audio_attention_mask
        if "return_dict" in self._audio_arguments:
            arguments["return_dict"] = True
        extra = {k: v for k, v in kwargs.items() if k in self._audio_arguments}
        outputs = as_model_output(tower(**arguments, **extra))
        how = self.pooling_of(tower)
        if how == "auto":  # a family not in the table: its pooler if it has one, else the mean
            how = "pooler" if outputs.get("pooler_output") is not None else "mean"
        mask = None
        if how == "mean":
            mask = audio_frame_mask(tower, audio_attention_mask, outputs.last_hidden_state.shape[1])
        return outputs, pool(outputs, how, mask)

    def encode_text(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> tuple[Any, torch.Tensor]:
        """(the text tower's outputs, the pooled vector before the projection)."""
        arguments = {"input_ids": input_ids, "attention_mask": attention_mask}
        for name, value in (("token_type_ids", token_type_ids), ("position_ids", position_ids)):
            if value is not None and name in self._text_arguments:
                arguments[name] = value
        if "return_dict" in self._text_arguments:
            arguments["return_dict"] = True
        extra = {k: v for k, v in kwargs.items() if k in self._text_arguments}
        outputs = as_model_output(self.text_model(**arguments, **extra))
        how = self.pooling_of(self.text_model)
        return outputs, pool(outputs, "mean" if how == "auto" else how, attention_mask)

    @can_return_tuple
    def get_audio_features(self, **inputs: Any) -> BaseModelOutputWithPooling:
        """``pooler_output``: the L2-normalised projected audio embedding (a tuple under
        ``return_dict=False``)."""
        outputs, pooled = self.encode_audio(**inputs)
        return BaseModelOutputWithPooling(
            last_hidden_state=outputs.last_hidden_state,
            pooler_output=nn.functional.normalize(self.audio_projection(pooled), dim=-1),
            hidden_states=outputs.get("hidden_states"),
        )

    @can_return_tuple
    def get_text_features(self, **inputs: Any) -> BaseModelOutputWithPooling:
        """``pooler_output``: the L2-normalised projected text embedding (a tuple under
        ``return_dict=False``)."""
        outputs, pooled = self.encode_text(**inputs)
        return BaseModelOutputWithPooling(
            last_hidden_state=outputs.last_hidden_state,
            pooler_output=nn.functional.normalize(self.text_projection(pooled), dim=-1),
            hidden_states=outputs.get("hidden_states"),
        )

    def _encode(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        input_values: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
        is_longer: torch.Tensor | None = None,
        audio_attention_mask: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> ClapOutput:
        """Both towers, projected and L2-normalised (what ``contrastive_head`` needs)."""
        audio_outputs, audio_pooled = self.encode_audio(
            input_values, input_features, is_longer, audio_attention_mask
        )
        text_outputs, text_pooled = self.encode_text(input_ids, attention_mask, token_type_ids, position_ids)
        return ClapOutput(
            text_embeds=nn.functional.normalize(self.text_projection(text_pooled), dim=-1),
            audio_embeds=nn.functional.normalize(self.audio_projection(audio_pooled), dim=-1),
            text_model_output=text_outputs,
            audio_model_output=audio_outputs,
        )

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        input_values: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
        is_longer: torch.Tensor | None = None,
        audio_attention_mask: torch.Tensor | None = None,
        return_loss: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> SupClapOutput | tuple:
        r"""See the class docstring. ``attention_mask`` is the text tower's (the zero-shot pipeline passes the
        tokenizer's under that name); the audio mask is ``audio_attention_mask``."""
        rows = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "token_type_ids": token_type_ids,
            "position_ids": position_ids,
            "input_values": input_values,
            "input_features": input_features,
            "is_longer": is_longer,
            "audio_attention_mask": audio_attention_mask,
        }
        output = self.contrastive_forward(rows, kwargs, return_loss)
        return output.to_tuple() if return_dict is False else output

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike, *model_args: Any, **kwargs: Any
    ):
        """``PreTrainedModel.from_pretrained``; with ``trust_remote_code=True`` remote-code towers saved in
        the folder (``save_pretrained``) are registered first: transformers does not pass the flag on to the
        config."""
        if kwargs.get("trust_remote_code") and kwargs.get("config") is None:
            register_remote_towers(pretrained_model_name_or_path, **hub_arguments(kwargs))
        return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)

    def save_pretrained(self, save_directory: str | os.PathLike, is_main_process: bool = True, **kwargs: Any):
        """``PreTrainedModel.save_pretrained``, plus the code of remote-code towers (CED, Dasheng): their
        module files are copied into the folder and ``config.json`` names them, so the folder reloads with
        ``trust_remote_code=True`` without the towers' own repositories."""
        result = super().save_pretrained(save_directory, is_main_process=is_main_process, **kwargs)
        if is_main_process:
            save_remote_tower_code(self, Path(save_directory))
        return result

    @classmethod
    def from_audio_text_pretrained(
        cls,
        audio_model_name_or_path: str,
        text_model_name_or_path: str,
        trust_remote_code: bool = False,
        **config_kwargs: Any,
    ) -> SupClapDualEncoderModel:
        """Two pretrained towers (encoders only, weights kept); projections, scales and loss initialised.

        ``config_kwargs``: fields of :class:`SupClapDualEncoderConfig` (``projection_dim``, the loss settings,
        the poolings). ``trust_remote_code``: let remote-code towers (CED, Dasheng) run their code.
        """
        audio_model = load_tower(audio_model_name_or_path, trust_remote_code=trust_remote_code)
        text_model = load_tower(text_model_name_or_path, trust_remote_code=trust_remote_code)
        return cls.from_towers(audio_model, text_model, **config_kwargs)

    @classmethod
    def from_towers(
        cls, audio_model: PreTrainedModel, text_model: PreTrainedModel, **config_kwargs: Any
    ) -> SupClapDualEncoderModel:
        """A model around two tower modules (pretrained or not); their classes are recorded in the config
        where ``AutoModel.from_config`` would build another, so ``from_pretrained`` rebuilds the same ones."""

        def recorded_class(tower: PreTrainedModel) -> str | None:
            if getattr(tower.config, "auto_map", None):
                return None
            try:
                auto_class = AutoModel._model_mapping[type(tower.config)]
            except KeyError:
                auto_class = None
            return None if auto_class is type(tower) else type(tower).__name__

        config_kwargs.setdefault("audio_tower_class", recorded_class(audio_model))
        config_kwargs.setdefault("text_tower_class", recorded_class(text_model))
        config = SupClapDualEncoderConfig.from_audio_text_configs(
            audio_model.config, text_model.config, **config_kwargs
        )
        return cls(config, audio_model=audio_model, text_model=text_model)


def save_remote_tower_code(model: SupClapDualEncoderModel, folder: Path) -> list[str]:
    """Copies the module files of ``model``'s remote-code towers (and their single-level relative imports, as
    transformers copies a model's own) into ``folder``, and points each such tower's ``auto_map`` in
    ``folder/config.json`` at the copies and at the classes the towers are; returns the files copied."""
    config_path = folder / "config.json"
    saved = json.loads(config_path.read_text())
    copied: list[str] = []
    for name, tower in (("audio_config", model.audio_model), ("text_config", model.text_model)):
        if not getattr(tower.config, "auto_map", None):
            continue
        auto_map = saved[name].setdefault("auto_map", {})
        for auto_class, obj in (("AutoConfig", type(tower.config)), ("AutoModel", type(tower))):
            module_file = Path(inspect.getfile(obj))
            for source in [module_file, *map(Path, get_relative_import_files(module_file))]:
                target = folder / source.name
                if target.exists() and target.read_bytes() != source.read_bytes():
                    raise ValueError(
                        f"the {TOWER_CONFIGS[name]} tower's code file {source.name} would replace another "
                        f"file of that name in {folder}: rename one of the modules"
                    )
                if not target.exists():
                    shutil.copyfile(source, target)
                    copied.append(source.name)
            # A cross-repository reference ("repo--module.Class") would send a reload back to that repository.
            auto_map[auto_class] = f"{module_file.stem}.{obj.__name__}"
    if copied:
        config_path.write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")
    return copied


__all__ = [
    "TOWER_FAMILIES",
    "SupClapDualEncoderMLPProjection",
    "SupClapDualEncoderModel",
    "audio_frame_mask",
    "build_projection",
    "build_tower",
    "load_tower",
    "pool",
]
