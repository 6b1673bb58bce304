"""What every SupCLAP model family shares after its two towers: the output, the logit scales, the loss step.

A family (``SupClapModel``: CLAP's towers; ``SupClapDualEncoderModel``: any audio and any text encoder)
implements ``_encode(**rows, **kwargs)`` (both towers, projected and L2-normalised: an object with
``text_embeds``, ``audio_embeds``, ``text_model_output``, ``audio_model_output``) and inherits
:class:`SupClapHeadMixin`, whose :meth:`~SupClapHeadMixin.contrastive_forward` computes the loss (dense, or
with cached negatives), the logits and the :class:`SupClapOutput`. So the loss, the named terms and every
output field are one piece of code for both families.

Part of the model's load-time import closure: only flat sibling imports (``from .x import``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from transformers import initialization as init
from transformers.models.clap.modeling_clap import ClapOutput

from .gradient_cache import cached_loss
from .losses import BASE_LOSSES


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
        L2-normalised projected embeddings.
    text_model_output, audio_model_output (`ModelOutput`):
        Outputs of the two towers (`None` with cached negatives, which keep no tower graph).
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


class SupClapHeadMixin:
    """The two logit scales (``logit_scale_t``, ``logit_scale_a``: log values, parameters of the model) and
    the loss step; the model owns ``loss_fn`` (a ``SupClapLoss``) and a config with the loss settings."""

    def init_logit_scales(self) -> None:
        """Set both log-scales to where the base loss starts (SigLIP: its own; else
        ``config.logit_scale_init_value``). Called from ``_init_weights``: a value set in ``__init__`` would
        not survive transformers' meta-device loading of a checkpoint that lacks the scales."""
        scale = BASE_LOSSES[self.config.base_loss].initial_logit_scale(self.config)
        value = math.log(scale if scale is not None else self.config.logit_scale_init_value)
        init.constant_(self.logit_scale_t, value)
        init.constant_(self.logit_scale_a, value)

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

    def _embed(self, **inputs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(text_embeds, audio_embeds) of ``inputs`` (used per chunk by the cached-negatives mode)."""
        outputs = self._encode(**inputs)
        return outputs.text_embeds, outputs.audio_embeds

    def contrastive_forward(
        self, rows: dict[str, torch.Tensor | None], kwargs: dict[str, Any], return_loss: bool | None
    ) -> SupClapOutput:
        """Both towers on ``rows`` (the per-pair forward arguments; ``None`` values dropped) and the loss.

        ``return_loss=None`` means "in training mode". In training with ``gradient_cache_chunk_size`` smaller
        than the batch, the loss of the whole batch is computed with the towers' graphs one chunk at a time
        (``gradient_cache.py``); otherwise one ordinary forward.
        """
        if return_loss is None:
            return_loss = self.training
        rows = {name: value for name, value in rows.items() if value is not None}
        input_ids = rows.get("input_ids")
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
            self._check_paired(rows)
            loss, terms, text_embeds, audio_embeds = cached_loss(self, chunk_size, rows, kwargs)
            terms["loss"] = loss
            text_outputs = audio_outputs = None
        else:
            outputs = self._encode(**rows, **kwargs)
            text_embeds, audio_embeds = outputs.text_embeds, outputs.audio_embeds
            text_outputs, audio_outputs = outputs.text_model_output, outputs.audio_model_output
            terms = {}
            if return_loss:
                self._check_paired(rows, text_embeds, audio_embeds)
                terms = self.loss_fn(text_embeds, audio_embeds, scale_t, scale_a)
        # Recomputed so the logits use the clamped scales (two small matmuls next to two encoders). In
        # cached mode only the loss carries gradients: no (N, N) graph is kept for the logits.
        with torch.set_grad_enabled(torch.is_grad_enabled() and not cached):
            logits_per_text = scale_t * text_embeds @ audio_embeds.t()
            logits_per_audio = scale_a * audio_embeds @ text_embeds.t()

        return SupClapOutput(
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

    def _check_paired(self, rows: dict[str, torch.Tensor], *embeds: torch.Tensor) -> None:
        if embeds:
            sizes = [embeds[0].shape[0], embeds[1].shape[0]]
        else:
            audio = next(rows[name] for name in self.audio_input_names if rows.get(name) is not None)
            sizes = [len(rows["input_ids"]), len(audio)]
        if sizes[0] != sizes[1]:
            raise ValueError(
                f"{type(self).__name__} computes its loss on paired rows: got {sizes[0]} texts and "
                f"{sizes[1]} audio clips. Pass one caption per clip, or return_loss=False for scoring (e.g. "
                "zero-shot classification)."
            )
