"""SupClapModel: transformers' ClapModel with the SupCLAP loss family inside ``forward``.

Inference is unchanged (support vectors exist only in the loss): a SupClap checkpoint encodes
text and audio exactly like the ClapModel it was built from, and plain CLAP checkpoints load
into it with only the new loss parameters initialised.

Part of the model's load-time import closure: only flat sibling imports (``from .x import``).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import ClapModel
from transformers import initialization as init
from transformers.models.clap.modeling_clap import ClapOutput
from transformers.utils import can_return_tuple

from .configuration_supclap import SupClapConfig
from .contrastive_head import SupClapHeadMixin, SupClapOutput
from .losses import BASE_LOSSES, LossComponent, SupClapLoss


class SupClapModel(SupClapHeadMixin, ClapModel):
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
    # The audio arguments of forward (the loss checks one clip per caption on them).
    audio_input_names = ("input_features",)

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
            # ClapModel.__init__ initialises before loss_fn exists: the scales come from the registry.
            if BASE_LOSSES[self.config.base_loss].initial_logit_scale(self.config) is not None:
                module.init_logit_scales()
        elif isinstance(module, LossComponent):
            module.reset_parameters(init)

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
        rows = {
            "input_ids": input_ids,
            "input_features": input_features,
            "is_longer": is_longer,
            "attention_mask": attention_mask,
            "position_ids": position_ids,
        }
        output = self.contrastive_forward(rows, kwargs, return_loss)
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


__all__ = ["SupClapModel", "SupClapOutput"]
