"""SupClapModel: transformers' ClapModel with the SupCLAP loss family inside ``forward``.

Inference is unchanged (support vectors exist only in the loss): a SupClap checkpoint encodes
text and audio exactly like the ClapModel it was built from, and plain CLAP checkpoints load
into it with only the new loss parameters initialised.

Part of the model's load-time import closure: only flat sibling imports (``from .x import``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from transformers import ClapModel
from transformers import initialization as init
from transformers.models.clap.modeling_clap import ClapOutput
from transformers.utils import can_return_tuple

from .configuration_supclap import SupClapConfig
from .gradient_cache import cached_loss
from .losses import BASE_LOSSES, LossComponent, SupClapLoss


@dataclass
class SupClapOutput(ClapOutput):
    r"""
    Everything [`ClapOutput`] carries, plus the named loss terms and radius statistics.

    loss (`torch.Tensor` of shape `()`, *optional*, returned when a loss is computed):
        The total `contrastive + svr_weight * svr + constraint_weight * constraint`.
    logits_per_audio (`torch.Tensor` of shape `(audio_batch_size, text_batch_size)`):
        `logit_scale_a * audio_embeds @ text_embeds.T`, with the scale clamped at `config.logit_scale_max`.
    logits_per_text (`torch.Tensor` of shape `(text_batch_size, audio_batch_size)`):
        `logit_scale_t * text_embeds @ audio_embeds.T`, clamped likewise.
    text_embeds, audio_embeds (`torch.Tensor` of shape `(batch_size, projection_dim)`):
        L2-normalised projected embeddings (identical to ClapModel's).
    text_model_output, audio_model_output (`BaseModelOutputWithPooling`):
        Outputs of the two towers.
    loss_contrastive (`torch.Tensor` of shape `()`, *optional*):
        The base loss (symmetric InfoNCE or SigLIP) over the global batch.
    loss_svr (`torch.Tensor` of shape `()`, *optional*, with SVR):
        The base loss with support vectors as anchors (averaged over both sides when bilateral).
    loss_constraint (`torch.Tensor` of shape `()`, *optional*, with SVR):
        Mean of `ReLU(R - D) + ReLU(-R)` over the pairs.
    radius_mean, radius_std (`torch.Tensor` of shape `()`, *optional*, with SVR):
        Mean and spread of the radius R over this process's pairs (no gradient).
    radius_constraint_active (`torch.Tensor` of shape `()`, *optional*, with SVR):
        Fraction of this process's pairs whose raw R lies outside `[0, D]`.
    """

    loss_contrastive: torch.Tensor | None = None
    loss_svr: torch.Tensor | None = None
    loss_constraint: torch.Tensor | None = None
    radius_mean: torch.Tensor | None = None
    radius_std: torch.Tensor | None = None
    radius_constraint_active: torch.Tensor | None = None


class SupClapModel(ClapModel):
    """A [`ClapModel`] whose `forward` computes the SupCLAP loss (see `losses.SupClapLoss`).

    `return_loss=None` (the default) computes the loss in training mode and not in eval mode, so
    `transformers.Trainer` gets a loss with no subclass while pipelines and inference do not pay
    for one. Pass `return_loss=True` to get it in eval mode too (our collator does).
    """

    config_class = SupClapConfig
    config: SupClapConfig
    # Loss parameters do not exist in plain CLAP checkpoints: loading one reports nothing missing
    # and `_init_weights` gives them their initial values.
    _keys_to_ignore_on_load_missing = [r"^loss_fn\."]

    def __init__(self, config: SupClapConfig):
        super().__init__(config)
        self.loss_fn = SupClapLoss(config)
        if config.text_pooling != "pooler":
            # An unused pooler would be a parameter without gradient (DDP refuses those by default).
            self.text_model.pooler = None
        if config.freeze_logit_scale:
            self.logit_scale_t.requires_grad_(False)
            self.logit_scale_a.requires_grad_(False)
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module: torch.nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, SupClapModel):
            # ClapModel.__init__ initialises before loss_fn exists: ask the registered class.
            scale = BASE_LOSSES[self.config.base_loss].initial_logit_scale(self.config)
            if scale is not None:
                init.constant_(module.logit_scale_t, math.log(scale))
                init.constant_(module.logit_scale_a, math.log(scale))
        elif isinstance(module, LossComponent):
            module.reset_parameters(init)

    def logit_scales(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(text, audio) logit scales, exponentiated and clamped at `config.logit_scale_max`."""
        scale_t, scale_a = self.logit_scale_t.exp(), self.logit_scale_a.exp()
        if self.config.logit_scale_max is not None:
            scale_t = scale_t.clamp(max=self.config.logit_scale_max)
            scale_a = scale_a.clamp(max=self.config.logit_scale_max)
        return scale_t, scale_a

    @torch.no_grad()
    def clamp_logit_scales_(self) -> None:
        """Clamp the stored log-scales in place (call after an optimizer step, as open_clip does)."""
        if self.config.logit_scale_max is not None:
            max_log = math.log(self.config.logit_scale_max)
            self.logit_scale_t.clamp_(max=max_log)
            self.logit_scale_a.clamp_(max=max_log)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        input_features: torch.Tensor | None = None,
        is_longer: torch.BoolTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        return_loss: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> SupClapOutput | tuple:
        r"""Same arguments as [`ClapModel.forward`].

        return_loss (`bool`, *optional*):
            Compute the loss. `None` means "in training mode" (`self.training`).
        """
        if return_loss is None:
            return_loss = self.training
        rows = {
            "input_ids": input_ids,
            "input_features": input_features,
            "is_longer": is_longer,
            "attention_mask": attention_mask,
            "position_ids": position_ids,
        }
        rows = {name: value for name, value in rows.items() if value is not None}
        scale_t, scale_a = self.logit_scales()
        chunk_size = self.config.gradient_cache_chunk_size
        cached = bool(
            return_loss
            and self.training
            and torch.is_grad_enabled()
            and chunk_size
            and input_ids is not None
            and input_ids.shape[0] > chunk_size
        )
        if cached:
            # Cached negatives: the loss of the whole batch, the towers' graphs one chunk at a time.
            self._check_paired(input_ids, input_features)
            loss, terms, text_embeds, audio_embeds = cached_loss(self, chunk_size, rows, kwargs)
            terms["loss"] = loss
            text_outputs = audio_outputs = None
        else:
            outputs = self._encode(**rows, **kwargs)
            text_embeds, audio_embeds = outputs.text_embeds, outputs.audio_embeds
            text_outputs, audio_outputs = outputs.text_model_output, outputs.audio_model_output
            terms = {}
            if return_loss:
                self._check_paired(input_ids, input_features, text_embeds, audio_embeds)
                terms = self.loss_fn(text_embeds, audio_embeds, scale_t, scale_a)
        # Recomputed so the logits use the clamped scales (two small matmuls next to two encoders). In
        # cached mode only the loss carries gradients: no (N, N) graph is kept for the logits.
        with torch.set_grad_enabled(torch.is_grad_enabled() and not cached):
            logits_per_text = scale_t * text_embeds @ audio_embeds.t()
            logits_per_audio = scale_a * audio_embeds @ text_embeds.t()

        output = SupClapOutput(
            loss=terms.get("loss"),
            logits_per_audio=logits_per_audio,
            logits_per_text=logits_per_text,
            text_embeds=text_embeds,
            audio_embeds=audio_embeds,
            text_model_output=text_outputs,
            audio_model_output=audio_outputs,
            loss_contrastive=terms.get("contrastive"),
            loss_svr=terms.get("svr"),
            loss_constraint=terms.get("constraint"),
            radius_mean=terms.get("radius_mean"),
            radius_std=terms.get("radius_std"),
            radius_constraint_active=terms.get("radius_constraint_active"),
        )
        if return_dict is False:
            return output.to_tuple()
        return output

    def pool_text(self, text_outputs: Any, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """One vector per caption from the text tower's outputs (``config.text_pooling``)."""
        if self.config.text_pooling == "pooler":
            return text_outputs.pooler_output
        hidden = text_outputs.last_hidden_state
        if attention_mask is None:
            return hidden.mean(dim=1)
        weights = attention_mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)

    @can_return_tuple
    def get_text_features(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Any:
        """ClapModel's, with ``config.text_pooling``: ``pooler_output`` is the L2-normalised embedding (a
        tuple under ``return_dict=False``, as ClapModel's)."""
        text_outputs, text_features = self._project_text(input_ids, attention_mask, position_ids, **kwargs)
        text_outputs.pooler_output = torch.nn.functional.normalize(text_features, dim=-1)
        return text_outputs

    def _project_text(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        position_ids: torch.Tensor | None,
        **kwargs: Any,
    ) -> tuple[Any, torch.Tensor]:
        """(text tower outputs, projected pooled embedding before normalisation)."""
        text_outputs = self.text_model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, **kwargs
        )
        return text_outputs, self.text_projection(self.pool_text(text_outputs, attention_mask))

    def _encode(
        self,
        input_ids: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
        is_longer: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> ClapOutput:
        """ClapModel's forward without its loss or logits: both towers, projected and L2-normalised."""
        audio_outputs = self.audio_model(input_features=input_features, is_longer=is_longer, **kwargs)
        text_outputs, text_embeds = self._project_text(input_ids, attention_mask, position_ids, **kwargs)
        audio_embeds = self.audio_projection(audio_outputs.pooler_output)
        return ClapOutput(
            text_embeds=text_embeds / text_embeds.norm(p=2, dim=-1, keepdim=True),
            audio_embeds=audio_embeds / audio_embeds.norm(p=2, dim=-1, keepdim=True),
            text_model_output=text_outputs,
            audio_model_output=audio_outputs,
        )

    def _embed(self, **inputs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(text_embeds, audio_embeds) of ``inputs`` (used per chunk by the cached-negatives mode)."""
        outputs = self._encode(**inputs)
        return outputs.text_embeds, outputs.audio_embeds

    @staticmethod
    def _check_paired(input_ids: Any, input_features: Any, *embeds: torch.Tensor) -> None:
        sizes = [embeds[0].shape[0], embeds[1].shape[0]] if embeds else [len(input_ids), len(input_features)]
        if sizes[0] != sizes[1]:
            raise ValueError(
                f"SupClapModel computes its loss on paired rows: got {sizes[0]} texts and {sizes[1]} audio "
                "clips. Pass one caption per clip, or return_loss=False for scoring (e.g. zero-shot "
                "classification)."
            )


__all__ = ["SupClapModel", "SupClapOutput"]
