"""Experimental training rules for the DynamicSVR radius predictor registered at run time.

Trained on L_svr, the predictor climbs to R = D for every pair (docs/METHOD.md: dL_svr/dR < 0 on [0, D]).
These rules train the same MLP (``RadiusPredictor``: the same input, layers and initialisation) another way,
to see which one keeps R inside (0, D). They are not part of the package: importing this module registers
them with ``modeling_supclap.model.losses.register_svr_mode`` for this process only
(``diagnose_recipe.py`` does, so its recipes can name them), and docs/METHOD.md reports what each did.

* ``bounded``: R = sigmoid(z) D, D detached: the MLP predicts the fraction rho = R / D of each pair,
  strictly inside (0, 1) by construction, still trained on L_svr.
* ``margin_target``: the MLP is trained by regression, not on L_svr: its output R is used by the loss as
  DynamicSVR's is, but its gradient is replaced by that of 1/2 (R - R*)^2, the target R* being the
  margin rule's radius (``MarginRadius``: the move that lifts the positive ``radius_margin`` above the
  hardest negative). A learned, smoothed version of the margin rule.

The third rule tried, a constraint weighted 100x (``--constraint_weight 1``), needs no code.
"""

from __future__ import annotations

from typing import Any

import torch

from modeling_supclap.model.losses import SVR_MODES, MarginRadius, RadiusPredictor, register_svr_mode


class BoundedRadiusPredictor(RadiusPredictor):
    """R = sigmoid(MLP(features)) * D (D detached), trained on L_svr like DynamicSVR."""

    name = "bounded"
    summary = "DynamicSVR with R = sigmoid(z) D"

    def forward(
        self, similarities: torch.Tensor, positive_index: torch.Tensor, distance: torch.Tensor
    ) -> torch.Tensor:
        return torch.sigmoid(super().forward(similarities, positive_index, distance)) * distance.detach()


class _RegressTo(torch.autograd.Function):
    """Forward: the prediction. Backward: the gradient of 1/2 (prediction - target)^2 (mean over pairs),
    whatever gradient the loss sends (so the loss uses the radius, and the target alone trains it)."""

    @staticmethod
    def forward(ctx: Any, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(prediction, target)
        return prediction.clone()

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        prediction, target = ctx.saved_tensors
        return (prediction - target) / prediction.numel(), None


class MarginTargetPredictor(RadiusPredictor):
    """The DynamicSVR MLP, regressed on the margin rule's radius instead of trained on L_svr."""

    name = "margin_target"
    summary = "DynamicSVR regressed on the margin radius"

    def __init__(self, *args: Any, margin: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.target = MarginRadius(margin)

    @classmethod
    def from_config(cls, config: Any) -> MarginTargetPredictor:
        # The target is what trains it: no gradient into the towers through it.
        return cls(**{**cls.predictor_kwargs(config), "detach_input": True}, margin=config.radius_margin)

    def forward(
        self, similarities: torch.Tensor, positive_index: torch.Tensor, distance: torch.Tensor
    ) -> torch.Tensor:
        prediction = super().forward(similarities, positive_index, distance)
        # The target, clamped to where the loss uses radii: [0, D].
        target = torch.minimum(self.target(similarities, positive_index, distance).clamp(min=0), distance)
        return _RegressTo.apply(prediction, target.detach())

    def get_config_dict(self) -> dict[str, Any]:
        return {**super().get_config_dict(), **self.target.get_config_dict()}


for _rule in (BoundedRadiusPredictor, MarginTargetPredictor):
    if _rule.name not in SVR_MODES:
        register_svr_mode(_rule)
