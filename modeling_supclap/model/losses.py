"""The SupCLAP loss family: base losses, support vectors, radius modes, constraint, gathering.

Shape of the code (after open_clip's ``loss.py``):

* :func:`gather_features` is the one place that talks to ``torch.distributed``.
* A base loss (:class:`InfoNCELoss`, :class:`SigLIPLoss`) exposes ``get_logits`` and
  ``get_ground_truth`` and turns (anchors, candidates) into one loss value *per anchor*. Every
  term below reuses it, so SVR on top of SigLIP is the same code as SVR on top of InfoNCE.
* :func:`support_vectors` moves each anchor a radius R toward its positive; a radius mode
  (:class:`StaticRadius`, :class:`RadiusPredictor`) says what R is.
* :class:`SupClapLoss` composes them and returns a dict of named terms that the caller sums.

The registry: :data:`BASE_LOSSES` (``SupClapConfig.base_loss``) and :data:`SVR_MODES`
(``SupClapConfig.svr_mode``) map each name to its class. Config validation, :class:`SupClapLoss`,
the model's weight initialisation, the command-line choices, the model card and the benchmarks all
read them, so a new radius mode is a :class:`RadiusMode` subclass here plus one registry line
(or :func:`register_svr_mode` at run time). See docs/ARCHITECTURE.md.

Data parallelism: every process scores its *local* anchors against the *global* candidates
(open_clip's ``local_loss``), and each per-process loss is scaled by ``world_size / N_global``.
The mean of the per-process losses is then exactly the single-process loss on the whole batch,
and with gradients flowing back through the gather (summed over processes) the parameter
gradients after DDP's average are exactly the single-process gradients.

This file is part of the model's load-time import closure (copied next to the weights for
``trust_remote_code``): it imports nothing of this package. It owns the loss's settings
(:class:`SupClapLossSettings`: every field, its default, documentation and validation); the model
configurations inherit them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

# Distances below this count as "text and audio coincide": the pull direction is undefined there
# and the support vector is the anchor itself.
_DISTANCE_EPS = 1e-8
# Padding of the predictor's input when the batch has fewer than k-1 negatives: the lowest
# possible cosine, i.e. a negative that would take no softmax mass.
_PREDICTOR_PAD = -1.0


# The scalar loss terms and statistics a model's forward returns (fields of SupClapOutput): logged by the
# training loop, left out of the Trainer's predictions.
LOSS_TERM_OUTPUTS = (
    "loss",
    "loss_contrastive",
    "loss_svr",
    "loss_constraint",
    "radius_mean",
    "radius_std",
    "radius_constraint_active",
)


# ---------------------------------------------------------------------------------------------
# Cross-process gathering
# ---------------------------------------------------------------------------------------------
def distributed_is_active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _GatherWithGrad(torch.autograd.Function):
    """All-gather of tensors whose first dimension may differ between processes.

    Backward sums the incoming gradients over processes and returns this process's slice, so
    that each process receives the gradient of the sum of all processes' losses.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, sizes: list[int], rank: int) -> torch.Tensor:
        max_size = max(sizes)
        padded = tensor.new_zeros((max_size, *tensor.shape[1:]))
        padded[: tensor.shape[0]] = tensor
        chunks = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(chunks, padded.contiguous())
        ctx.sizes, ctx.rank = sizes, rank
        return torch.cat([chunk[:size] for chunk, size in zip(chunks, sizes)], dim=0)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        grad = grad_output.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None, None


@dataclass
class GatheredBatch:
    """Local and global views of one batch of paired embeddings."""

    text: torch.Tensor  # (n_local, d) this process's text embeddings (the anchors)
    audio: torch.Tensor  # (n_local, d)
    all_text: torch.Tensor  # (N, d) every process's text embeddings (the candidates)
    all_audio: torch.Tensor  # (N, d)
    offset: int  # index of this process's first pair in the global batch
    world_size: int

    @property
    def num_local(self) -> int:
        return self.text.shape[0]

    @property
    def num_global(self) -> int:
        return self.all_text.shape[0]

    def positive_index(self) -> torch.Tensor:
        """Column of each local anchor's positive in the global candidate matrix."""
        return torch.arange(self.offset, self.offset + self.num_local, device=self.text.device)

    def reduce(self, per_anchor: torch.Tensor) -> torch.Tensor:
        """Sum of local per-anchor losses scaled so that the mean over processes is the global mean."""
        return per_anchor.sum() * (self.world_size / self.num_global)


def gather_features(text: torch.Tensor, audio: torch.Tensor, enabled: bool = True) -> GatheredBatch:
    """Gather paired embeddings from every process, keeping the autograd graph.

    Without an initialised process group (or with ``enabled=False``) this is the identity.
    """
    if not (enabled and distributed_is_active()):
        return GatheredBatch(text, audio, text, audio, offset=0, world_size=1)
    world_size, rank = dist.get_world_size(), dist.get_rank()
    local_size = torch.tensor([text.shape[0]], device=text.device, dtype=torch.long)
    sizes = [torch.zeros_like(local_size) for _ in range(world_size)]
    dist.all_gather(sizes, local_size)
    sizes_list = [int(s.item()) for s in sizes]
    pair = torch.cat([text, audio], dim=1)  # one collective for both modalities
    all_pair = _GatherWithGrad.apply(pair, sizes_list, rank)
    dim = text.shape[1]
    return GatheredBatch(
        text,
        audio,
        all_pair[:, :dim],
        all_pair[:, dim:],
        offset=sum(sizes_list[:rank]),
        world_size=world_size,
    )


# ---------------------------------------------------------------------------------------------
# Registered components
# ---------------------------------------------------------------------------------------------
class LossComponent(nn.Module):
    """A piece of the loss family that the config names: a base loss or a radius mode.

    Subclasses set ``name`` (the config value that selects them) and ``summary`` (words for the
    model card), and override :meth:`from_config` (which config fields they read),
    :meth:`get_config_dict` (those fields and their values, for cards and logs) and, if they own
    parameters, :meth:`reset_parameters` (called by ``SupClapModel._init_weights``, also after
    ``from_pretrained`` of a checkpoint that lacks them).
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""

    @classmethod
    def from_config(cls, config: Any) -> LossComponent:
        return cls()

    def reset_parameters(self, init: Any = nn.init) -> None:
        """``init``: a namespace of in-place initialisers (``torch.nn.init`` or transformers')."""

    def get_config_dict(self) -> dict[str, Any]:
        return {}


# ---------------------------------------------------------------------------------------------
# Base losses: one value per anchor
# ---------------------------------------------------------------------------------------------
class BaseContrastiveLoss(LossComponent):
    """Scores anchors against candidates; one loss value per anchor.

    Overridable pieces (as in open_clip's ``ClipLoss``): :meth:`get_logits`,
    :meth:`get_ground_truth` and :meth:`loss_from_logits`; :meth:`initial_logit_scale` says
    where the model's logit scale starts.
    """

    @classmethod
    def initial_logit_scale(cls, config: Any) -> float | None:
        """The logit scale 1/tau this loss starts from; ``None`` keeps ``logit_scale_init_value``."""
        return None

    def get_logits(
        self, anchors: torch.Tensor, candidates: torch.Tensor, logit_scale: torch.Tensor
    ) -> torch.Tensor:
        return logit_scale * anchors @ candidates.t()

    def get_ground_truth(self, positive_index: torch.Tensor, num_candidates: int) -> torch.Tensor:
        return positive_index

    def loss_from_logits(self, logits: torch.Tensor, ground_truth: torch.Tensor) -> torch.Tensor:
        """(n,) per-anchor losses from (n, N) logits and :meth:`get_ground_truth`'s targets."""
        raise NotImplementedError

    def forward(
        self,
        anchors: torch.Tensor,
        candidates: torch.Tensor,
        positive_index: torch.Tensor,
        logit_scale: torch.Tensor,
    ) -> torch.Tensor:
        logits = self.get_logits(anchors, candidates, logit_scale)
        return self.loss_from_logits(logits, self.get_ground_truth(positive_index, candidates.shape[0]))


class InfoNCELoss(BaseContrastiveLoss):
    """Cross-entropy of each anchor against all candidates, its positive as the target.

    Inputs: anchors (n, d), candidates (N, d) (L2-normalised embeddings, or support vectors as
    anchors), the column of each anchor's positive, and the logit scale 1/tau (a scalar tensor).
    Output: (n,) per-anchor losses; :class:`SupClapLoss` averages them over the global batch and
    over the text->audio and audio->text directions (symmetric InfoNCE).

    Example::

        >>> import torch, torch.nn.functional as F
        >>> text, audio = F.normalize(torch.randn(4, 8), dim=-1), F.normalize(torch.randn(4, 8), dim=-1)
        >>> loss = InfoNCELoss()
        >>> per_anchor = loss(text, audio, torch.arange(4), torch.tensor(14.3))
        >>> per_anchor.shape
        torch.Size([4])
    """

    name = "infonce"
    summary = "symmetric InfoNCE"

    def loss_from_logits(self, logits: torch.Tensor, ground_truth: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, ground_truth, reduction="none")


class SigLIPLoss(BaseContrastiveLoss):
    """Pairwise sigmoid loss (Zhai et al. 2023): ``-sum_j log sigmoid(z_ij (t' a_i.c_j + b))``.

    z_ij = +1 for the anchor's positive and -1 for every other candidate. The bias b is learned
    here; the scale t' is the model's logit scale, which starts at ``logit_scale_init``. Output:
    (n,) per-anchor losses (each a sum over all N candidates, as in the paper's
    ``-(1/N) sum_i sum_j``).

    Example::

        >>> import torch, torch.nn.functional as F
        >>> text, audio = F.normalize(torch.randn(4, 8), dim=-1), F.normalize(torch.randn(4, 8), dim=-1)
        >>> loss = SigLIPLoss(bias_init=-10.0)
        >>> loss(text, audio, torch.arange(4), torch.tensor(10.0)).shape
        torch.Size([4])
    """

    name = "siglip"
    summary = "the SigLIP sigmoid loss"

    def __init__(self, bias_init: float, logit_scale_init: float = 10.0) -> None:
        super().__init__()
        self.bias_init, self.logit_scale_init = bias_init, logit_scale_init
        self.logit_bias = nn.Parameter(torch.empty(()))
        self._labels_cache: tuple[torch.Tensor, int, torch.Tensor] | None = None
        self.reset_parameters()

    @classmethod
    def from_config(cls, config: Any) -> SigLIPLoss:
        return cls(bias_init=config.siglip_bias_init, logit_scale_init=config.siglip_logit_scale_init)

    @classmethod
    def initial_logit_scale(cls, config: Any) -> float | None:
        return config.siglip_logit_scale_init  # 10, where CLIP starts at 1/0.07

    def reset_parameters(self, init: Any = nn.init) -> None:
        init.constant_(self.logit_bias, float(self.bias_init))

    def get_logits(
        self, anchors: torch.Tensor, candidates: torch.Tensor, logit_scale: torch.Tensor
    ) -> torch.Tensor:
        return logit_scale * anchors @ candidates.t() + self.logit_bias

    def get_ground_truth(self, positive_index: torch.Tensor, num_candidates: int) -> torch.Tensor:
        """+1 at each anchor's positive, -1 elsewhere.

        Cached for the ``positive_index`` tensor it was built from (one forward uses the same one for
        every direction and SVR term). Keyed by that tensor, not by its values: reading values would
        make the CPU wait for the GPU at every call.
        """
        if torch.compiler.is_compiling():  # fused into the graph; a cache would keep traced values
            return self._signed_labels(positive_index, num_candidates)
        cached = self._labels_cache
        if cached is not None and cached[0] is positive_index and cached[1] == num_candidates:
            return cached[2]
        labels = self._signed_labels(positive_index, num_candidates)
        self._labels_cache = (positive_index, num_candidates, labels)
        return labels

    @staticmethod
    def _signed_labels(positive_index: torch.Tensor, num_candidates: int) -> torch.Tensor:
        return torch.full(
            (positive_index.shape[0], num_candidates), -1.0, device=positive_index.device
        ).scatter_(1, positive_index[:, None], 1.0)

    def loss_from_logits(self, logits: torch.Tensor, ground_truth: torch.Tensor) -> torch.Tensor:
        return -F.logsigmoid(ground_truth.to(logits.dtype) * logits).sum(dim=1)

    def get_config_dict(self) -> dict[str, Any]:
        return {"siglip_logit_scale_init": self.logit_scale_init, "siglip_bias_init": self.bias_init}


# ---------------------------------------------------------------------------------------------
# Support vectors and the semantic radius
# ---------------------------------------------------------------------------------------------
def pair_distance(anchors: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """D = ||positive - anchor|| per pair, with a gradient that stays finite at D = 0."""
    squared = (positives - anchors).pow(2).sum(dim=-1)
    # where() keeps sqrt's infinite derivative at 0 out of the graph (D = 0 pairs get zero grad).
    safe = torch.where(squared > _DISTANCE_EPS**2, squared, torch.ones_like(squared))
    return torch.where(squared > _DISTANCE_EPS**2, safe.sqrt(), torch.zeros_like(squared))


def support_vectors(
    anchors: torch.Tensor,
    positives: torch.Tensor,
    radius: torch.Tensor,
    clamp: bool = True,
    distance: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Move each anchor a distance R toward its own positive: ``x_sup = x + R (p - x) / D``.

    Gradients flow through the direction, so ``d x_sup / d x = u u^T + (1 - R/D)(I - u u^T)``:
    the push perpendicular to the pull is scaled by ``1 - R/D`` and the parallel one is kept.
    Support vectors are not re-normalised (svr-method.md, adopted resolution).

    Args:
        anchors, positives: (n, d) paired embeddings.
        radius: (n,) or scalar radius R.
        clamp: clamp R to [0, D] per pair where it is used.
        distance: D, if the caller already has it (:func:`pair_distance`).

    Returns:
        (support vectors (n, d), distances D (n,), the radius actually used (n,)).
    """
    if distance is None:
        distance = pair_distance(anchors, positives)
    radius = radius.expand_as(distance) if radius.dim() == 0 else radius
    used = torch.minimum(radius.clamp(min=0.0), distance) if clamp else radius
    # D = 0: the direction is undefined; (p - x) is zero there, so any finite divisor gives x_sup = x.
    direction = (positives - anchors) / torch.where(
        distance > 0, distance, torch.ones_like(distance)
    ).unsqueeze(-1)
    return anchors + used.unsqueeze(-1) * direction, distance, used


def radius_constraint(radius: torch.Tensor, distance: torch.Tensor) -> torch.Tensor:
    """Per-pair ``ReLU(R - D) + ReLU(-R)``: zero exactly when 0 <= R <= D."""
    return F.relu(radius - distance) + F.relu(-radius)


class RadiusMode(LossComponent):
    """Says what the semantic radius R of each anchor is (``SupClapConfig.svr_mode``).

    ``forward(similarities, positive_index, distance) -> (n,) radius``, with ``similarities`` the
    (n, N) cosines of each anchor to every (global) candidate, ``positive_index`` (n,) the column
    of each anchor's positive and ``distance`` (n,) the anchor-positive distance D. The radius
    may be raw (outside [0, D]): the loss clamps it where used and the constraint term sees it.
    """

    def forward(
        self, similarities: torch.Tensor, positive_index: torch.Tensor, distance: torch.Tensor
    ) -> torch.Tensor:
        raise NotImplementedError


class StaticRadius(RadiusMode):
    """StaticSVR: one global learnable radius shared by every pair."""

    name = "static"
    summary = "StaticSVR"

    def __init__(self, radius_init: float) -> None:
        super().__init__()
        self.radius_init = radius_init
        self.radius = nn.Parameter(torch.empty(()))
        self.reset_parameters()

    @classmethod
    def from_config(cls, config: Any) -> StaticRadius:
        return cls(config.radius_init)

    def reset_parameters(self, init: Any = nn.init) -> None:
        init.constant_(self.radius, float(self.radius_init))

    def forward(
        self, similarities: torch.Tensor, positive_index: torch.Tensor, distance: torch.Tensor
    ) -> torch.Tensor:
        return self.radius.expand(similarities.shape[0])

    def get_config_dict(self) -> dict[str, Any]:
        return {"radius_init": self.radius_init}


_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}
PREDICTOR_ACTIVATIONS = tuple(_ACTIVATIONS)


def predictor_features(similarities: torch.Tensor, positive_index: torch.Tensor, top_k: int) -> torch.Tensor:
    """Batch-size and order independent input of the radius predictor.

    Row i: ``[s(i, positive), top-(k-1) negative similarities, descending]``, padded with -1
    (the lowest cosine) when fewer than k-1 negatives exist.

    Args:
        similarities: (n, N) cosine similarities of each anchor to every candidate.
        positive_index: (n,) column of each anchor's positive.
    """
    n, num_candidates = similarities.shape
    rows = torch.arange(n, device=similarities.device)
    positive = similarities[rows, positive_index]
    num_negatives = min(top_k - 1, num_candidates - 1)
    features = similarities.new_full((n, top_k), _PREDICTOR_PAD)
    features[:, 0] = positive
    if num_negatives > 0:
        # scatter with a Python value: an index_put of one would copy it to the GPU and wait for it.
        negatives = similarities.scatter(1, positive_index[:, None], float("-inf"))
        features[:, 1 : 1 + num_negatives] = negatives.topk(num_negatives, dim=1, sorted=True).values
    return features


class RadiusPredictor(RadiusMode):
    """DynamicSVR: a 3-layer MLP maps each pair's in-batch similarity profile to a radius.

    Input: see :func:`predictor_features`. The last layer starts at zero weight and bias
    ``radius_init`` so a fresh predictor behaves like StaticSVR at ``radius_init``.
    """

    name = "dynamic"
    summary = "DynamicSVR"

    def __init__(
        self,
        top_k: int,
        hidden_sizes: tuple[int, int] | list[int],
        activation: str,
        detach_input: bool,
        radius_init: float,
    ) -> None:
        super().__init__()
        self.top_k, self.detach_input, self.radius_init = top_k, detach_input, radius_init
        self.hidden_sizes, self.activation = list(hidden_sizes), activation
        act = _ACTIVATIONS[activation]
        widths = [top_k, *hidden_sizes]
        layers: list[nn.Module] = []
        for width_in, width_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(width_in, width_out), act()]
        self.hidden = nn.Sequential(*layers)
        # The output layer is held as direct parameters: transformers initialises custom-code
        # modules only when they own a parameter, and this one must start at radius_init.
        self.output_weight = nn.Parameter(torch.empty(widths[-1]))
        self.output_bias = nn.Parameter(torch.empty(()))
        self.reset_parameters()

    @staticmethod
    def predictor_kwargs(config: Any) -> dict[str, Any]:
        """The constructor arguments a config sets (a subclass's ``from_config`` adds or overrides some)."""
        return dict(
            top_k=config.predictor_top_k,
            hidden_sizes=config.predictor_hidden_sizes,
            activation=config.predictor_activation,
            detach_input=config.predictor_detach_input,
            radius_init=config.radius_init,
        )

    @classmethod
    def from_config(cls, config: Any) -> RadiusPredictor:
        return cls(**cls.predictor_kwargs(config))

    def reset_parameters(self, init: Any = nn.init) -> None:
        for layer in self.hidden:
            if isinstance(layer, nn.Linear):
                init.kaiming_uniform_(layer.weight, a=math.sqrt(5))
                init.zeros_(layer.bias)
        init.zeros_(self.output_weight)
        init.constant_(self.output_bias, float(self.radius_init))

    def forward(
        self, similarities: torch.Tensor, positive_index: torch.Tensor, distance: torch.Tensor
    ) -> torch.Tensor:
        if self.detach_input:
            similarities = similarities.detach()
        features = predictor_features(similarities, positive_index, self.top_k)
        return self.hidden(features) @ self.output_weight + self.output_bias

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "radius_init": self.radius_init,
            "predictor_top_k": self.top_k,
            "predictor_hidden_sizes": self.hidden_sizes,
            "predictor_activation": self.activation,
            "predictor_detach_input": self.detach_input,
        }


class RatioRadius(RadiusMode):
    """R = rho * D (D detached): strictly inside (0, D) by construction, for every pair.

    The support vector's Jacobian is then ``u u^T + (1 - rho)(I - u u^T)``: the push perpendicular to
    the pull is scaled by exactly ``1 - rho`` and the parallel one kept (the cleanest reading of the
    paper's "control the perpendicular component"). No parameters; ``radius_ratio`` is rho.
    """

    name = "ratio"
    summary = "RatioSVR"

    def __init__(self, ratio: float) -> None:
        super().__init__()
        self.ratio = ratio

    @classmethod
    def from_config(cls, config: Any) -> RatioRadius:
        return cls(config.radius_ratio)

    def forward(
        self, similarities: torch.Tensor, positive_index: torch.Tensor, distance: torch.Tensor
    ) -> torch.Tensor:
        # Detached: a gradient through D would scale the parallel push by (1 - rho) as well.
        return self.ratio * distance.detach()

    def get_config_dict(self) -> dict[str, Any]:
        return {"radius_ratio": self.ratio}


class MarginRadius(RadiusMode):
    """R = 2 (m - gap) / D (detached): the move toward the positive that lifts the anchor's similarity to
    its positive m above its hardest negative's, the negatives held where they are.

    Along ``x_sup = x + R u`` (unit x and p, ``u = (p - x) / D``): ``x_sup . p = s_pos + R D / 2``, because
    ``1 - s_pos = D^2 / 2``. Solving ``s_pos + R D / 2 - s_hard = m`` gives the radius, where ``gap =
    s_pos - s_hard`` is the pair's current margin. Pairs that already clear the margin get R <= 0 (no
    support vector: clamped to 0), hard pairs up to D (the spreading control). Nothing is learned, so
    nothing is pulled to D: the share of pairs at R >= D falls as the pairs separate. ``radius_margin``
    is m (cosine units).
    """

    name = "margin"
    summary = "MarginSVR"

    def __init__(self, margin: float) -> None:
        super().__init__()
        self.margin = margin

    @classmethod
    def from_config(cls, config: Any) -> MarginRadius:
        return cls(config.radius_margin)

    def forward(
        self, similarities: torch.Tensor, positive_index: torch.Tensor, distance: torch.Tensor
    ) -> torch.Tensor:
        rows = torch.arange(similarities.shape[0], device=similarities.device)
        positive = similarities[rows, positive_index]
        negatives = similarities.detach().clone()
        negatives[rows, positive_index] = -torch.inf
        # No negative (a batch of one): -1, the lowest cosine, so the margin is met whenever it can be.
        hardest = (
            negatives.max(dim=1).values.clamp(min=-1.0)
            if similarities.shape[1] > 1
            else -positive.new_ones(())
        )
        gap = positive.detach() - hardest
        return (2.0 * (self.margin - gap) / distance.detach().clamp(min=1e-12)).detach()

    def get_config_dict(self) -> dict[str, Any]:
        return {"radius_margin": self.margin}


class SpreadingControl(RadiusMode):
    """R = D (with its gradient): the support vector *is* the positive, with no gradient to the anchor.

    The SVR term then reduces to the base loss of same-modality pairs: audio positives against the
    audio candidates (text against text on the bilateral side), a uniformity ("spreading") term. It is
    what a radius that saturates at D turns SVR into, as its own option, so that a table can tell
    what SVR adds beyond spreading (docs/METHOD.md).
    """

    name = "spreading"
    summary = "spreading control (support vector = positive)"

    def forward(
        self, similarities: torch.Tensor, positive_index: torch.Tensor, distance: torch.Tensor
    ) -> torch.Tensor:
        return distance


# ---------------------------------------------------------------------------------------------
# The registry: config name -> class
# ---------------------------------------------------------------------------------------------
BASE_LOSSES: dict[str, type[BaseContrastiveLoss]] = {
    InfoNCELoss.name: InfoNCELoss,
    SigLIPLoss.name: SigLIPLoss,
}
# "none": no support vectors, the base loss alone.
SVR_MODES: dict[str, type[RadiusMode] | None] = {
    "none": None,
    StaticRadius.name: StaticRadius,
    RadiusPredictor.name: RadiusPredictor,
    RatioRadius.name: RatioRadius,
    MarginRadius.name: MarginRadius,
    SpreadingControl.name: SpreadingControl,
}


def register_base_loss(cls: type[BaseContrastiveLoss]) -> type[BaseContrastiveLoss]:
    """Make ``base_loss=cls.name`` available (usable as a class decorator)."""
    return _register(BASE_LOSSES, cls, BaseContrastiveLoss)


def register_svr_mode(cls: type[RadiusMode]) -> type[RadiusMode]:
    """Make ``svr_mode=cls.name`` available (usable as a class decorator).

    Registering at run time affects this process only: a model saved with such a mode loads
    where the same registration has run (``trust_remote_code`` copies of this file lack it).
    """
    return _register(SVR_MODES, cls, RadiusMode)


def _register(registry: dict, cls: type, base: type) -> type:
    if not (isinstance(cls, type) and issubclass(cls, base)) or not cls.name:
        raise TypeError(f"{cls!r} must be a {base.__name__} subclass with a non-empty `name`")
    if registry.get(cls.name, cls) is not cls:
        raise ValueError(f"{cls.name!r} is already registered to {registry[cls.name].__name__}")
    registry[cls.name] = cls
    return cls


# ---------------------------------------------------------------------------------------------
# The settings: one definition of every loss field
# ---------------------------------------------------------------------------------------------
def _setting(default: Any, help: str, **metadata: Any) -> Any:
    """A loss field: its default, and its documentation (``help``: what the CLI flag and docs print)."""
    return field(default=default, metadata={"help": help, **metadata})


@dataclass(kw_only=True)
class SupClapLossSettings:
    """The settings of the SupCLAP loss family, defined once.

    Every model family's configuration inherits these fields (``SupClapConfig(ClapConfig,
    SupClapLossSettings)``), the command line makes one flag per field with the field's ``help``, and
    :class:`SupClapLoss` reads them from any such object. Invalid values fail at construction with a
    ``ValueError`` naming the field and what it accepts (:meth:`check_loss_settings`).

    Fields (name, default: meaning):
    """

    base_loss: str = _setting(
        "infonce",
        "Base contrastive loss: 'infonce' (symmetric cross-entropy, both directions trained) or 'siglip' "
        "(pairwise sigmoid with a learned bias, Zhai et al. 2023); any name registered in BASE_LOSSES.",
        choices=BASE_LOSSES.keys(),  # a live view: a loss registered at run time is a choice too
    )
    svr_mode: str = _setting(
        "dynamic",
        "Support Vector Regularization: 'none', 'static' (one learned radius), 'dynamic' (a radius per pair "
        "from a small MLP), 'ratio' (R = radius_ratio * D), 'margin' (the radius that would lift the "
        "positive radius_margin above the hardest negative; does not saturate at D) or 'spreading' (R = D, "
        "the control a saturated radius reduces SVR to); any name registered in SVR_MODES.",
        choices=SVR_MODES.keys(),
    )
    svr_bilateral: bool = _setting(True, "Support vectors for the audio anchors too (the paper's best).")
    svr_weight: float = _setting(1.0, "alpha: the weight of the SVR term (>= 0).")
    constraint_weight: float = _setting(
        0.01, "beta: the weight of the radius constraint mean(ReLU(R - D) + ReLU(-R)) (>= 0)."
    )
    radius_init: float = _setting(
        0.1, "Initial semantic radius R (the static scalar, and the predictor's output bias at start)."
    )
    radius_ratio: float = _setting(
        0.5,
        "rho of svr_mode 'ratio': R = rho * D scales the perpendicular push by exactly 1 - rho; in (0, 1).",
    )
    radius_margin: float = _setting(
        0.2, "m of svr_mode 'margin' (cosine units, > 0): R = 2 (m - (s_pos - s_hardest)) / D."
    )
    radius_clamp: bool = _setting(
        True,
        "Clamp R to [0, D] per pair where it is used, so a radius never flips (R > D) or amplifies (R < 0) "
        "the perpendicular push even before the constraint acts.",
    )
    predictor_top_k: int = _setting(
        16,
        "DynamicSVR predictor input width k: the positive similarity and the top k-1 negative similarities, "
        "descending (padded with -1 in small batches); >= 2.",
    )
    predictor_hidden_sizes: list[int] | None = _setting(
        None, "Hidden widths of the 3-layer predictor MLP: two positive integers (default 64 64)."
    )
    predictor_activation: str = _setting(
        "relu", "DynamicSVR predictor activation: relu, gelu or silu.", choices=PREDICTOR_ACTIVATIONS
    )
    predictor_detach_input: bool = _setting(
        True, "Feed the radius predictor detached similarities (its gradient then trains only the predictor)."
    )
    siglip_logit_scale_init: float = _setting(
        10.0, "Initial logit scale of a new model when base_loss is 'siglip' (CLIP's is 1/0.07); > 0."
    )
    siglip_bias_init: float = _setting(-10.0, "Initial SigLIP bias of a new model.")
    logit_scale_max: float | None = _setting(
        100.0, "Clamp of the (exponentiated) logit scales 1/tau, as LAION-CLAP and CLIP do (> 1; None: off)."
    )
    freeze_logit_scale: bool = _setting(False, "Keep the logit scales fixed.")
    gather_across_processes: bool = _setting(
        True,
        "With torch.distributed initialised, score against every process's embeddings (with gradients), so "
        "the global batch defines the loss.",
    )
    gradient_cache_chunk_size: int = _setting(
        0,
        "Cached negatives (GradCache): in training, embed each batch this many pairs at a time with the loss "
        "over the whole batch (model/gradient_cache.py), so the contrastive batch can exceed what fits in "
        "memory; gradients equal the whole-batch loss's. 0: off.",
    )
    compile_loss: bool = _setting(
        False,
        "torch.compile the loss (after the gather) into one graph: fuses SVR's many small kernels, whose "
        "launch latency is most of its cost on a GPU; on a CPU it does not pay (docs/BENCHMARKS.md). "
        "Values and gradients equal the eager loss's; ignored without gradients.",
    )

    def __post_init__(self) -> None:
        self.check_loss_settings()

    @classmethod
    def loss_fields(cls) -> tuple[Any, ...]:
        """The ``dataclasses.Field`` of every loss setting, in definition order."""
        return fields(SupClapLossSettings)

    def loss_settings(self) -> dict[str, Any]:
        """Every loss setting of this object (a config or a settings object), by field name."""
        return {f.name: getattr(self, f.name) for f in self.loss_fields()}

    def check_loss_settings(self) -> None:
        """Fill the list default, then fail naming the field and what it accepts."""
        owner = type(self).__name__
        if self.predictor_hidden_sizes is None:
            self.predictor_hidden_sizes = [64, 64]
        self.predictor_hidden_sizes = list(self.predictor_hidden_sizes)

        def fail(name: str, expected: str) -> None:
            raise ValueError(f"{owner}.{name} must be {expected}, got {getattr(self, name)!r}.")

        def number(name: str, low: float | None = None, low_inclusive: bool = True) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                fail(name, "a finite number")
            if low is not None and (value < low or (not low_inclusive and value == low)):
                fail(name, f"{'>=' if low_inclusive else '>'} {low}")

        for name, registry in (
            ("base_loss", BASE_LOSSES),
            ("svr_mode", SVR_MODES),
            ("predictor_activation", PREDICTOR_ACTIVATIONS),
        ):
            if getattr(self, name) not in registry:
                fail(name, f"one of {list(registry)}")
        for f in self.loss_fields():
            if f.type in ("bool", bool) and not isinstance(getattr(self, f.name), bool):
                fail(f.name, "True or False")
        number("svr_weight", 0.0)
        number("constraint_weight", 0.0)
        number("radius_init", 0.0)
        number("radius_ratio", 0.0, low_inclusive=False)
        if self.radius_ratio >= 1.0:
            fail("radius_ratio", "< 1")
        number("radius_margin", 0.0, low_inclusive=False)
        number("siglip_logit_scale_init", 0.0, low_inclusive=False)
        number("siglip_bias_init")
        if self.logit_scale_max is not None:
            number("logit_scale_max", 1.0, low_inclusive=False)
        chunk = self.gradient_cache_chunk_size
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 0:
            fail("gradient_cache_chunk_size", "an integer >= 0 (0: off)")
        top_k = self.predictor_top_k
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 2:
            fail("predictor_top_k", "an integer >= 2 (the positive and at least one negative)")
        sizes = self.predictor_hidden_sizes
        if len(sizes) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes):
            fail("predictor_hidden_sizes", "two positive integers (the predictor is a 3-layer MLP)")


SupClapLossSettings.__doc__ += "".join(
    f"\n        {f.name} (default {f.default!r}): {f.metadata['help']}" for f in fields(SupClapLossSettings)
)


# ---------------------------------------------------------------------------------------------
# The composed loss
# ---------------------------------------------------------------------------------------------
class SupClapLoss(nn.Module):
    """Base loss + alpha * SVR term + beta * radius constraint, on the (gathered) global batch.

    Built from any object with the :class:`SupClapLossSettings` fields (a model's config), or from
    keyword settings, which make one: ``SupClapLoss(svr_mode="static")``.

    Inputs (``forward``): L2-normalised text and audio embeddings (n, d) of paired rows, and the
    text/audio logit scales (exponentiated, already clamped). Requirements: text and audio have
    the same number of rows (row i of each is a positive pair); n >= 1.

    Returns a dict of named loss terms (``contrastive``, and with SVR ``svr`` and ``constraint``;
    ``loss`` is their weighted sum) plus radius statistics (no gradient): ``radius_mean``,
    ``radius_std``, ``radius_constraint_active`` (fraction of pairs with R outside [0, D]).

    Example::

        >>> import torch, torch.nn.functional as F
        >>> loss_fn = SupClapLoss(base_loss="infonce", svr_mode="dynamic", svr_bilateral=True)
        >>> text, audio = F.normalize(torch.randn(6, 8), dim=-1), F.normalize(torch.randn(6, 8), dim=-1)
        >>> terms = loss_fn(text, audio, torch.tensor(14.3), torch.tensor(14.3))
        >>> sorted(k for k in terms if not k.startswith("radius"))
        ['constraint', 'contrastive', 'loss', 'svr']
    """

    # torch.compile backend of ``compile_loss`` (tests trace some variants with "aot_eager", which skips
    # inductor's C++ code generation but captures and differentiates the same graph).
    compile_backend: ClassVar[str] = "inductor"

    def __init__(self, config: Any = None, **settings: Any) -> None:
        super().__init__()
        if config is None:
            config = SupClapLossSettings(**settings)
        elif settings:
            raise TypeError("SupClapLoss takes a config or keyword settings, not both")
        self.base_loss_name, self.svr_mode, self.svr_bilateral = (
            config.base_loss,
            config.svr_mode,
            config.svr_bilateral,
        )
        self.svr_weight, self.constraint_weight = config.svr_weight, config.constraint_weight
        self.radius_clamp = config.radius_clamp
        self.gather_across_processes = config.gather_across_processes
        self.compile_loss = config.compile_loss
        self.base_loss = BASE_LOSSES[config.base_loss].from_config(config)
        radius_class = SVR_MODES[config.svr_mode]
        self.radius: RadiusMode | None = None if radius_class is None else radius_class.from_config(config)

    @classmethod
    def from_config(cls, config: Any) -> SupClapLoss:
        return cls(config)

    @classmethod
    def settings_only(cls, config: Any) -> SupClapLoss:
        """The loss of ``config`` on the meta device: for describing it, never for computing.

        No memory is allocated and nothing is drawn from the global RNG (building a real one would
        draw the predictor's initial weights and shift every later random number of a run).
        """
        with torch.device("meta"):
            return cls(config)

    def get_config_dict(self) -> dict[str, Any]:
        """The loss settings in use, keyed by their ``SupClapConfig`` field names."""
        config: dict[str, Any] = {"base_loss": self.base_loss_name, **self.base_loss.get_config_dict()}
        config["svr_mode"] = self.svr_mode
        if self.radius is not None:
            config.update(
                svr_bilateral=self.svr_bilateral,
                svr_weight=self.svr_weight,
                constraint_weight=self.constraint_weight,
                radius_clamp=self.radius_clamp,
                **self.radius.get_config_dict(),
            )
        config["gather_across_processes"] = self.gather_across_processes
        return config

    def describe(self) -> str:
        """One phrase for model cards: "symmetric InfoNCE plus bilateral DynamicSVR (...)"."""
        if self.radius is None:
            return self.base_loss.summary
        side = "bilateral" if self.svr_bilateral else "unilateral"
        return f"{self.base_loss.summary} plus {side} {self.radius.summary} (Support Vector Regularization)"

    def _directions(self, batch: GatheredBatch, scale_t: torch.Tensor, scale_a: torch.Tensor):
        """(anchors, positives, candidates, scale) for text->audio, then audio->text."""
        return [
            (batch.text, batch.audio, batch.all_audio, scale_t),
            (batch.audio, batch.text, batch.all_text, scale_a),
        ]

    def forward(
        self,
        text_embeds: torch.Tensor,
        audio_embeds: torch.Tensor,
        scale_t: torch.Tensor,
        scale_a: torch.Tensor,
        anchor_chunk_size: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """The named terms (see the class docstring).

        ``anchor_chunk_size``: score this many anchors at a time against the candidates, each chunk
        checkpointed (recomputed in backward), so the loss's memory is O(chunk x N) rather than
        O(N x N). Every term is a sum over anchors, so the value is the same up to summation order.
        """
        if text_embeds.shape != audio_embeds.shape:
            raise ValueError(
                "SupClapLoss needs one text and one audio embedding per pair, got text "
                f"{tuple(text_embeds.shape)} and audio {tuple(audio_embeds.shape)}."
            )
        batch = gather_features(text_embeds, audio_embeds, self.gather_across_processes)
        if self.compile_loss and torch.is_grad_enabled() and not torch.compiler.is_compiling():
            return self._compiled_terms()(batch, scale_t, scale_a, anchor_chunk_size)
        return self.batch_terms(batch, scale_t, scale_a, anchor_chunk_size)

    def _compiled_terms(self):
        """:meth:`batch_terms` compiled once per loss (inductor, dynamic shapes: the batch size varies).

        What it fuses is the dozens of small kernels of the support-vector, predictor and constraint
        math, whose launch latency is most of SVR's cost on a GPU (docs/BENCHMARKS.md). Gathering stays
        outside (collectives), so the compiled graph is the same on every process.
        """
        compiled = self.__dict__.get("_compiled_batch_terms")
        if compiled is None:
            compiled = torch.compile(self.batch_terms, backend=self.compile_backend, dynamic=True)
            self.__dict__["_compiled_batch_terms"] = compiled  # not a submodule: no state, no copy
        return compiled

    def batch_terms(
        self,
        batch: GatheredBatch,
        scale_t: torch.Tensor,
        scale_a: torch.Tensor,
        anchor_chunk_size: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """:meth:`forward` after gathering: the named terms of one (gathered) batch."""
        positive_index = batch.positive_index()
        directions = self._directions(batch, scale_t, scale_a)
        # Base terms of both directions first, then the SVR terms (the order fixes float rounding).
        base = [
            self._chunked_anchor_terms(*direction, positive_index, "base", anchor_chunk_size)
            for direction in directions
        ]
        contrastive = sum(batch.reduce(terms["base"]) for terms in base) / 2
        result: dict[str, torch.Tensor] = {"contrastive": contrastive}
        if self.radius is None:
            result["loss"] = contrastive
            return result
        sides = len(directions) if self.svr_bilateral else 1
        svr_sides = [
            self._chunked_anchor_terms(*direction, positive_index, "svr", anchor_chunk_size)
            for direction in directions[:sides]
        ]
        result["svr"] = sum(batch.reduce(terms["svr"]) for terms in svr_sides) / sides
        result["constraint"] = sum(batch.reduce(terms["constraint"]) for terms in svr_sides) / sides
        result["loss"] = (
            contrastive + self.svr_weight * result["svr"] + self.constraint_weight * result["constraint"]
        )
        radii = torch.cat([terms["radius"] for terms in svr_sides]).detach()
        distances = torch.cat([terms["distance"] for terms in svr_sides]).detach()
        result.update(radius_statistics(radii, distances))
        return result

    def anchor_terms(
        self,
        anchors: torch.Tensor,
        positives: torch.Tensor,
        candidates: torch.Tensor,
        scale: torch.Tensor,
        positive_index: torch.Tensor,
        part: str = "base",
    ) -> dict[str, torch.Tensor]:
        """Per-anchor terms of one direction, all of shape (n,): ``part="base"``: ``base``;
        ``part="svr"``: ``svr``, ``constraint``, ``radius``, ``distance``. Rows are independent given
        the candidates (what lets :meth:`forward` score anchors in chunks)."""
        if part == "base":
            return {"base": self.base_loss(anchors, candidates, positive_index, scale)}
        terms: dict[str, torch.Tensor] = {}
        distance = pair_distance(anchors, positives)
        radius = self.radius(anchors @ candidates.t(), positive_index, distance)
        sup, _, _ = support_vectors(anchors, positives, radius, self.radius_clamp, distance)
        terms["svr"] = self.base_loss(sup, candidates, positive_index, scale)
        terms["constraint"] = radius_constraint(radius, distance)
        terms["radius"], terms["distance"] = radius, distance
        return terms

    def _chunked_anchor_terms(
        self,
        anchors: torch.Tensor,
        positives: torch.Tensor,
        candidates: torch.Tensor,
        scale: torch.Tensor,
        positive_index: torch.Tensor,
        part: str,
        chunk_size: int | None,
    ) -> dict[str, torch.Tensor]:
        if not chunk_size or anchors.shape[0] <= chunk_size:
            return self.anchor_terms(anchors, positives, candidates, scale, positive_index, part)
        from torch.utils.checkpoint import checkpoint

        parts = [
            checkpoint(
                self.anchor_terms,
                anchors[start : start + chunk_size],
                positives[start : start + chunk_size],
                candidates,
                scale,
                positive_index[start : start + chunk_size],
                part,
                use_reentrant=False,
            )
            for start in range(0, anchors.shape[0], chunk_size)
        ]
        return {name: torch.cat([part[name] for part in parts]) for name in parts[0]}


def radius_statistics(radius: torch.Tensor, distance: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mean and spread of R, and the fraction of pairs whose R lies outside [0, D]."""
    active = (radius_constraint(radius, distance) > 0).float()
    return {
        "radius_mean": radius.mean(),
        "radius_std": radius.std(unbiased=False),
        "radius_constraint_active": active.mean(),
    }


__all__ = [
    "BASE_LOSSES",
    "LOSS_TERM_OUTPUTS",
    "SVR_MODES",
    "BaseContrastiveLoss",
    "MarginRadius",
    "GatheredBatch",
    "InfoNCELoss",
    "LossComponent",
    "RadiusMode",
    "RadiusPredictor",
    "RatioRadius",
    "SigLIPLoss",
    "SpreadingControl",
    "StaticRadius",
    "SupClapLoss",
    "SupClapLossSettings",
    "gather_features",
    "pair_distance",
    "predictor_features",
    "radius_constraint",
    "radius_statistics",
    "register_base_loss",
    "register_svr_mode",
    "support_vectors",
]
