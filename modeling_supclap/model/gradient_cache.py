"""Cached negatives (GradCache, Gao et al. 2021): a contrastive batch larger than memory allows.

The loss needs every embedding of the batch at once, the towers' activations do not. With
``SupClapConfig.gradient_cache_chunk_size = k``, a training forward of a batch of N > k pairs

1. embeds the batch k pairs at a time without a graph, remembering each chunk's RNG state;
2. computes the full SupClap loss (any base loss and SVR mode, gathered across processes) on the
   detached embeddings, and its gradients with respect to them and to the loss's own parameters
   (logit scales, radius, SigLIP bias);
3. returns a loss whose *backward* re-embeds each chunk with its graph (same dropout: the RNG state
   of step 1 is restored) and back-propagates the cached embedding gradients into the towers.

Step 2 scores the anchors in blocks as well (``SupClapLoss(anchor_chunk_size=...)``, checkpointed) once
the batch is large: blocks of max(k, 2**20 / N) anchors, so the loss's (rows, N) matrices stay within
about a million elements and peak memory is that of one chunk's graph plus the (N, d) embeddings and one
block of the loss. Smaller batches get one block (checkpointed blocks recompute the loss: 5x its time at
N = 256 on the tiny preset, for memory that is not short there). The gradients equal those of one loss
over the whole batch either way.

Why one autograd ``Function`` (:class:`_CachedLoss`) over every trainable parameter: with several
processes its backward computes the towers' gradients with ``torch.autograd.grad`` (which accumulates
nothing) and returns them, so each parameter receives its gradient exactly once, through the ordinary
autograd engine, and DDP's hooks fire once per parameter (a re-entrant ``backward`` per chunk would
mark them ready several times). With one process it back-propagates each chunk straight into
``.grad`` instead (no second copy of the gradients in memory). Either way the GradScaler's scale and
gradient-accumulation divisors arrive as the ``grad_output`` that multiplies everything, and
``transformers.Trainer`` needs no subclass.

BatchNorm (the HTSAT audio tower): step 1 updates the running statistics once per chunk, as a
micro-batched dense forward would; step 3 puts them back after re-embedding, so they are not updated
twice. Batch statistics are those of each chunk, as in any micro-batching.

Part of the model's load-time import closure: it imports nothing from this package.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn

# Step 2 scores anchors in blocks of at least this many (rows x N) elements (see the module docstring).
LOSS_BLOCK_ELEMENTS = 2**20
# Forward arguments that hold one row per pair (chunked); anything else is passed to every chunk.
_ROW_ARGUMENTS = ("input_ids", "attention_mask", "position_ids", "input_features", "is_longer")


def _rng_state(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_rng_state(state: tuple[torch.Tensor, torch.Tensor | None], device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def _batch_norm_buffers(model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(buffer, copy) of every BatchNorm running statistic, to put back after a re-forward."""
    return [
        (buffer, buffer.detach().clone())
        for module in model.modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm)
        for buffer in module.buffers()
    ]


class _CachedLoss(torch.autograd.Function):
    """Value: the loss of step 2. Backward: step 3, returning every trainable parameter's gradient."""

    @staticmethod
    def forward(ctx: Any, loss: torch.Tensor, cache: dict[str, Any], *params: torch.Tensor) -> torch.Tensor:
        ctx.cache = cache
        return loss.detach().clone()

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        cache = ctx.cache
        model, device = cache["model"], cache["device"]
        tower_params, loss_params = cache["tower_params"], cache["loss_params"]
        # One process: the towers' gradients go straight into .grad (no copy of them is held). Several
        # (DDP): collected with autograd.grad and returned, so each parameter's hook fires once.
        direct = not cache["distributed"]
        grads: list[torch.Tensor | None] = [None] * len(tower_params)

        def back(rows: slice, text: torch.Tensor, audio: torch.Tensor) -> None:
            outputs = (text, audio)
            seeds = (
                cache["text_grad"][rows].to(text.dtype) * grad_output,
                cache["audio_grad"][rows].to(audio.dtype) * grad_output,
            )
            if direct:
                torch.autograd.backward(outputs, seeds, inputs=tower_params)
                return
            for index, grad in enumerate(
                torch.autograd.grad(outputs, tower_params, seeds, allow_unused=True)
            ):
                if grad is not None:
                    grads[index] = grad if grads[index] is None else grads[index].add_(grad)

        rng_now, batch_norm = _rng_state(device), _batch_norm_buffers(model)
        try:
            with torch.enable_grad(), torch.autocast(**cache["autocast"]):
                for rows, rng in zip(cache["chunks"], cache["rng_states"]):
                    _set_rng_state(rng, device)  # the dropout masks of step 1
                    back(
                        rows,
                        *model._embed(**{k: v[rows] for k, v in cache["inputs"].items()}, **cache["other"]),
                    )
        finally:
            _set_rng_state(rng_now, device)
            with torch.no_grad():
                for buffer, saved in batch_norm:
                    buffer.copy_(saved)
        if not direct:  # every parameter must receive a gradient (DDP waits for each one)
            grads = [torch.zeros_like(p) if g is None else g for g, p in zip(grads, tower_params)]
        loss_grads = [g * grad_output for g in cache["loss_grads"]]
        by_param = dict(zip(map(id, tower_params), grads)) | dict(zip(map(id, loss_params), loss_grads))
        return (None, None, *(by_param[id(p)] for p in cache["params"]))


def loss_and_tower_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """The trainable parameters of ``model`` (a ``SupClapModel``) split into the loss's (logit scales and
    ``loss_fn``: step 2 gives their gradients) and the towers' (step 3's re-embedding gives theirs)."""
    params = [p for p in model.parameters() if p.requires_grad]
    loss_ids = {id(p) for p in (model.logit_scale_t, model.logit_scale_a, *model.loss_fn.parameters())}
    return [p for p in params if id(p) in loss_ids], [p for p in params if id(p) not in loss_ids]


def cached_loss(
    model: nn.Module, chunk_size: int, inputs: dict[str, torch.Tensor], other: dict[str, Any]
) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Steps 1-2 (see the module docstring) for ``model``, a ``SupClapModel`` in training mode.

    ``inputs``: the per-pair forward arguments; ``other``: the rest. Returns ``(loss, terms,
    text_embeds, audio_embeds)``: ``loss`` back-propagates into every trainable parameter (step 3
    runs in its backward); the terms and embeddings carry no gradient.
    """
    rows_total = next(iter(inputs.values())).shape[0]
    distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    chunks = [slice(start, start + chunk_size) for start in range(0, rows_total, chunk_size)]
    device = next(model.parameters()).device

    # 1. Every chunk without a graph, remembering the RNG state it started from. (Keeping the last
    #    chunk's graph would save one re-embedding but hold that graph during step 2: at batch 4,096 the
    #    peak memory rose from 1.14x to 1.75x of a dense step on one chunk.)
    rng_states, texts, audios = [], [], []
    with torch.no_grad():
        for rows in chunks:
            rng_states.append(_rng_state(device))
            text, audio = model._embed(**{k: v[rows] for k, v in inputs.items()}, **other)
            texts.append(text)
            audios.append(audio)
    text_embeds = torch.cat(texts).requires_grad_(True)
    audio_embeds = torch.cat(audios).requires_grad_(True)

    # 2. The loss on the whole (gathered) batch; gradients of the embeddings and the loss parameters.
    params = [p for p in model.parameters() if p.requires_grad]
    loss_params, tower_params = loss_and_tower_parameters(model)
    with torch.enable_grad():
        scale_t, scale_a = model.logit_scales()
        # Anchors in checkpointed blocks when N is large: the loss's memory is O(block x N), not O(N x N).
        world_size = dist.get_world_size() if distributed else 1
        block = max(chunk_size, LOSS_BLOCK_ELEMENTS // (rows_total * world_size))
        terms = model.loss_fn(text_embeds, audio_embeds, scale_t, scale_a, anchor_chunk_size=block)
        all_grads = torch.autograd.grad(
            terms["loss"], (text_embeds, audio_embeds, *loss_params), allow_unused=True
        )
    text_grad, audio_grad, *loss_grads = (
        torch.zeros_like(target) if grad is None else grad
        for grad, target in zip(all_grads, (text_embeds, audio_embeds, *loss_params))
    )
    device_type = device.type if device.type in ("cuda", "cpu", "xpu", "mps") else "cpu"
    cache = {
        "model": model,
        "device": device,
        "distributed": distributed,
        "chunks": chunks,
        "rng_states": rng_states,
        "inputs": inputs,
        "other": other,
        "params": params,
        "tower_params": tower_params,
        "loss_params": loss_params,
        "text_grad": text_grad,
        "audio_grad": audio_grad,
        "loss_grads": loss_grads,
        # Step 3 runs in backward, outside the forward's autocast: re-enter the same one.
        "autocast": {
            "device_type": device_type,
            "dtype": torch.get_autocast_dtype(device_type),
            "enabled": torch.is_autocast_enabled(device_type),
        },
    }
    loss = _CachedLoss.apply(terms["loss"].detach(), cache, *params)
    detached = {name: value.detach() for name, value in terms.items()}
    return loss, detached, text_embeds.detach(), audio_embeds.detach()
