"""SupClapConfig: a ClapConfig plus the settings of the SupCLAP loss family.

This file is part of the model's load-time import closure (it is copied next to the weights by
``save_pretrained`` for ``trust_remote_code`` loading), so it imports only its flat sibling
``losses.py``, whose registry (``BASE_LOSSES``, ``SVR_MODES``) says which loss names are valid.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from transformers import ClapConfig

from .losses import BASE_LOSSES, PREDICTOR_ACTIVATIONS, SVR_MODES, SupClapLoss


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


# The scalar loss terms and statistics SupClapModel.forward returns (fields of SupClapOutput): logged
# by the training loop, left out of the Trainer's predictions.
LOSS_TERM_OUTPUTS = (
    "loss",
    "loss_contrastive",
    "loss_svr",
    "loss_constraint",
    "radius_mean",
    "radius_std",
    "radius_constraint_active",
)


class SupClapConfig(ClapConfig):
    r"""Configuration of a [`SupClapModel`]: every [`ClapConfig`] field plus the loss settings.

    A `SupClapConfig` with `svr_mode="none"` and `base_loss="infonce"` trains exactly a CLAP model
    (with the audio->text term that transformers' built-in loss omits, see `losses.py`).

    Args:
        base_loss (`str`, *optional*, defaults to `"infonce"`):
            A name of `losses.BASE_LOSSES`: `"infonce"` (symmetric cross-entropy) or `"siglip"`
            (pairwise sigmoid, Zhai et al. 2023).
        svr_mode (`str`, *optional*, defaults to `"dynamic"`):
            Support Vector Regularization, a name of `losses.SVR_MODES`: `"none"`, `"static"` (one
            learned radius), `"dynamic"` (a radius predicted per pair by a small MLP), `"ratio"`
            (R = `radius_ratio` * D), `"margin"` (the radius that would lift the positive `radius_margin`
            above the hardest negative) or `"spreading"` (the control R = D reduces SVR to).
        svr_bilateral (`bool`, *optional*, defaults to `True`):
            Also build support vectors for the audio anchors (the paper's best setting).
        svr_weight (`float`, *optional*, defaults to 1.0):
            alpha, the weight of the SVR term.
        constraint_weight (`float`, *optional*, defaults to 0.01):
            beta, the weight of the radius constraint `mean(ReLU(R - D) + ReLU(-R))`.
        radius_init (`float`, *optional*, defaults to 0.1):
            Initial radius (static scalar, and the predictor's output bias at initialisation).
        radius_ratio (`float`, *optional*, defaults to 0.5):
            rho of `svr_mode="ratio"`: R = rho * D, which scales the perpendicular push by exactly
            `1 - rho`; must lie strictly between 0 and 1.
        radius_margin (`float`, *optional*, defaults to 0.2):
            m of `svr_mode="margin"` (cosine units, > 0): R = 2 (m - (s_pos - s_hardest)) / D.
        radius_clamp (`bool`, *optional*, defaults to `True`):
            Clamp the radius to `[0, D]` per pair where it is used, so a radius never flips
            (R > D) or amplifies (R < 0) the perpendicular push even before the constraint acts.
        predictor_top_k (`int`, *optional*, defaults to 16):
            Input width k of the radius predictor: the positive similarity and the top k-1
            negative similarities sorted in descending order (padded with -1 in small batches).
        predictor_hidden_sizes (`list[int]`, *optional*, defaults to `[64, 64]`):
            Hidden widths of the 3-layer predictor MLP.
        predictor_activation (`str`, *optional*, defaults to `"relu"`): `"relu"`, `"gelu"` or `"silu"`.
        predictor_detach_input (`bool`, *optional*, defaults to `True`):
            Feed the predictor detached similarities (its gradient then trains only the predictor).
        siglip_logit_scale_init (`float`, *optional*, defaults to 10.0):
            Initial logit scale when `base_loss="siglip"` (replaces `logit_scale_init_value`).
        siglip_bias_init (`float`, *optional*, defaults to -10.0): initial SigLIP bias.
        logit_scale_max (`float`, *optional*, defaults to 100.0):
            Clamp of the (exponentiated) logit scales, as LAION-CLAP and CLIP do. `None` disables.
        freeze_logit_scale (`bool`, *optional*, defaults to `False`): keep the logit scales fixed.
        gather_across_processes (`bool`, *optional*, defaults to `True`):
            When `torch.distributed` is initialised, use the embeddings of every process (with
            gradients) as negatives, so the global batch defines the loss.
        gradient_cache_chunk_size (`int`, *optional*, defaults to 0):
            Cached negatives (GradCache): in training, embed a batch this many pairs at a time and
            compute the loss over the whole batch (see `gradient_cache.py`), so the contrastive batch
            can exceed what fits in memory at once; gradients equal the whole-batch loss's. 0 (or a
            batch no larger than it): one ordinary forward.
        compile_loss (`bool`, *optional*, defaults to `False`):
            Run the loss (after the cross-process gather) as one `torch.compile`d graph (inductor, dynamic
            shapes): fuses the SVR math's many small kernels, whose launch latency is most of SVR's cost
            on a GPU. Values and gradients equal the eager loss's (tests/test_compiled_loss.py); the first
            step of each new batch shape pays the compilation. Ignored without gradients (evaluation).
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

    base_loss: str = "infonce"
    svr_mode: str = "dynamic"
    svr_bilateral: bool = True
    svr_weight: float = 1.0
    constraint_weight: float = 0.01
    radius_init: float = 0.1
    radius_ratio: float = 0.5
    radius_margin: float = 0.2
    radius_clamp: bool = True
    predictor_top_k: int = 16
    predictor_hidden_sizes: list[int] | None = None
    predictor_activation: str = "relu"
    predictor_detach_input: bool = True
    siglip_logit_scale_init: float = 10.0
    siglip_bias_init: float = -10.0
    logit_scale_max: float | None = 100.0
    freeze_logit_scale: bool = False
    gather_across_processes: bool = True
    gradient_cache_chunk_size: int = 0
    text_pooling: str = "pooler"
    compile_loss: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.predictor_hidden_sizes is None:
            self.predictor_hidden_sizes = [64, 64]
        self.predictor_hidden_sizes = list(self.predictor_hidden_sizes)
        self._validate_loss_settings()

    def _validate_loss_settings(self) -> None:
        """Fail at construction, naming the field and what it accepts."""

        def choice(field: str, allowed: tuple[str, ...]) -> None:
            value = getattr(self, field)
            if value not in allowed:
                raise ValueError(f"SupClapConfig.{field} must be one of {list(allowed)}, got {value!r}.")

        def number(field: str, low: float | None = None, low_inclusive: bool = True) -> None:
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
                raise ValueError(f"SupClapConfig.{field} must be a finite number, got {value!r}.")
            if value in (float("inf"), float("-inf")):
                raise ValueError(f"SupClapConfig.{field} must be a finite number, got {value!r}.")
            if low is not None and (value < low or (not low_inclusive and value == low)):
                bound = ">=" if low_inclusive else ">"
                raise ValueError(f"SupClapConfig.{field} must be {bound} {low}, got {value!r}.")

        def flag(field: str) -> None:
            if not isinstance(getattr(self, field), bool):
                raise ValueError(
                    f"SupClapConfig.{field} must be True or False, got {getattr(self, field)!r}."
                )

        choice("base_loss", tuple(BASE_LOSSES))
        choice("svr_mode", tuple(SVR_MODES))
        choice("predictor_activation", PREDICTOR_ACTIVATIONS)
        choice("text_pooling", TEXT_POOLINGS)
        for field in (
            "svr_bilateral",
            "radius_clamp",
            "predictor_detach_input",
            "freeze_logit_scale",
            "gather_across_processes",
            "compile_loss",
        ):
            flag(field)
        number("svr_weight", 0.0)
        number("constraint_weight", 0.0)
        number("radius_init", 0.0)
        number("radius_ratio", 0.0, low_inclusive=False)
        number("radius_margin", 0.0, low_inclusive=False)
        if self.radius_ratio >= 1.0:
            raise ValueError(f"SupClapConfig.radius_ratio must be < 1, got {self.radius_ratio!r}.")
        number("siglip_logit_scale_init", 0.0, low_inclusive=False)
        number("siglip_bias_init")
        if self.logit_scale_max is not None:
            number("logit_scale_max", 1.0, low_inclusive=False)
        chunk = self.gradient_cache_chunk_size
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 0:
            raise ValueError(
                f"SupClapConfig.gradient_cache_chunk_size must be an integer >= 0 (0: off), got {chunk!r}."
            )
        top_k = self.predictor_top_k
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 2:
            raise ValueError(
                f"SupClapConfig.predictor_top_k must be an integer >= 2 (the positive and at least one "
                f"negative), got {top_k!r}."
            )
        sizes = self.predictor_hidden_sizes
        if len(sizes) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes):
            raise ValueError(
                "SupClapConfig.predictor_hidden_sizes must be two positive integers (the predictor is a "
                f"3-layer MLP), got {sizes!r}."
            )

    def loss_config_dict(self) -> dict[str, Any]:
        """The loss settings in use (the loss's own ``get_config_dict``, plus the logit-scale clamp)."""
        return {
            **SupClapLoss.settings_only(self).get_config_dict(),
            "logit_scale_max": self.logit_scale_max,
            "freeze_logit_scale": self.freeze_logit_scale,
            "gradient_cache_chunk_size": self.gradient_cache_chunk_size,
        }

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


__all__ = ["BASE_LOSSES", "PRESETS", "SVR_MODES", "TEXT_POOLINGS", "SupClapConfig"]
