"""The retrieval metric as it was before the one-pass rewrite (two passes): the exactness reference.

A verbatim copy of ``retrieval_scores`` and its helpers from
``modeling_supclap/evaluation/metrics/retrieval/retrieval.py`` at commit 86b4069 (two chunked passes, one per
direction, each score row reduced with ``torch.topk``).  Tests compare the shipped module with it
*exactly* (``==``); do not "fix" or optimise it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

MAP_DEFINITION = (
    "LAION-CLAP mAP@{k}: mean over (query, relevant item) pairs of 1/rank if rank <= {k} else 0 "
    "(T2A: one pair per caption; A2T: one pair per (clip, caption of that clip), each caption ranked among "
    "all captions); 1-based ranks, ties broken pessimistically (non-relevant before relevant, relevant by "
    "index); percent"
)


def _to_tensor(x: Any, name: str, device: torch.device | None) -> torch.Tensor:
    """Convert a 2-D numpy array / tensor / nested list of embeddings to a float tensor on ``device``."""
    t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.ndim != 2:
        raise ValueError(f"{name} must be 2-D (rows, dim), got shape {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    dtype = torch.float64 if t.dtype == torch.float64 else torch.float32
    t = t.to(device=device if device is not None else t.device, dtype=dtype)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or inf")
    return t


def _group_captions(ids: torch.Tensor, num_audio: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Caption indices of every clip, padded: ``(groups, valid)``, both (Na, max captions per clip).

    Within a clip the captions appear in increasing caption index (stable sort), which the tie rule uses.
    """
    counts = torch.bincount(ids, minlength=num_audio)
    order = torch.argsort(ids, stable=True)
    sorted_ids = ids[order]
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(ids.numel(), device=ids.device) - starts[sorted_ids]
    width = int(counts.max())
    groups = torch.zeros(num_audio, width, dtype=torch.long, device=ids.device)
    valid = torch.zeros(num_audio, width, dtype=torch.bool, device=ids.device)
    groups[sorted_ids, slot] = order
    valid[sorted_ids, slot] = True
    return groups, valid


def _capped_ranks(
    scores: torch.Tensor, positive: torch.Tensor, valid: torch.Tensor, cap: int
) -> torch.Tensor:
    """Ranks (B, c) of the relevant items of each row of ``scores`` (B, N), under the tie rule, capped.

    ``positive`` (B, c) holds the scores of the relevant items of each row, in increasing item index, and
    ``valid`` (B, c) masks padding.  Ranks <= ``cap`` are exact; larger ranks are returned as ``cap + 1``
    (every metric only asks "rank <= k" for k <= cap).  Instead of comparing every relevant score with the
    whole row, we compare with the row's top ``cap + 1`` scores (one ``torch.topk`` pass): if ``s_p`` is
    above the smallest of them, every score >= ``s_p`` is among them, so the count is exact; otherwise at
    least ``cap + 1`` scores are >= ``s_p`` and the count is capped at ``cap + 1``.
    """
    num_items = scores.shape[1]
    capped_path = cap + 1 < num_items
    top = torch.topk(scores, cap + 1, dim=1, sorted=False).values if capped_path else scores
    # ge[r, m] = min(#{i : s_ri >= s_rm}, cap + 1)   (exact when the whole row is used)
    ge = (top.unsqueeze(1) >= positive.unsqueeze(2)).sum(2, dtype=torch.int32).long()
    rank = ge
    if positive.shape[1] > 1:
        # Ties between relevant items of one row (rare): rank = ge - #tied others + #tied with lower index.
        sorted_pos = positive.masked_fill(~valid, float("nan")).sort(1).values
        tied_rows = (sorted_pos[:, 1:] == sorted_pos[:, :-1]).any(1).nonzero().squeeze(1)
        if tied_rows.numel():
            width = positive.shape[1]
            p, pv, g = positive[tied_rows], valid[tied_rows], ge[tied_rows]
            eq = (p.unsqueeze(2) == p.unsqueeze(1)) & pv.unsqueeze(1) & pv.unsqueeze(2)
            eq &= ~torch.eye(width, dtype=torch.bool, device=eq.device)
            others = eq.sum(2)
            lower = (eq & torch.ones_like(eq[0]).tril(-1)).sum(2)  # [m, m2] with m2 < m
            if capped_path:
                # A capped count minus tied relevant items may fall back to <= cap: count those exactly.
                fix = (g == cap + 1) & (others > 0) & pv
                if bool(fix.any()):
                    r_idx, m_idx = fix.nonzero(as_tuple=True)
                    values = p[r_idx, m_idx].unsqueeze(1)
                    g[r_idx, m_idx] = (scores[tied_rows[r_idx]] >= values).sum(1, dtype=torch.int32).long()
            rank = rank.clone()
            rank[tied_rows] = g - others + lower
    return rank.clamp_(max=cap + 1)


def t2a_ranks(
    text: torch.Tensor, audio: torch.Tensor, ids: torch.Tensor, chunk_size: int, cap: int
) -> torch.Tensor:
    """Rank of each caption's clip among all clips, shape (Nt,); exact up to ``cap``, else ``cap + 1``."""
    ranks = torch.empty(text.shape[0], dtype=torch.long, device=text.device)
    audio_t = audio.T.contiguous()  # contiguous (d, Na): ~1.5x faster matmul than the transposed view
    for start in range(0, text.shape[0], chunk_size):
        stop = min(start + chunk_size, text.shape[0])
        scores = text[start:stop] @ audio_t  # (B, Na)
        positive = scores.gather(1, ids[start:stop, None])
        valid = torch.ones_like(positive, dtype=torch.bool)
        ranks[start:stop] = _capped_ranks(scores, positive, valid, cap)[:, 0]
        del scores
    return ranks


def a2t_ranks(
    text: torch.Tensor, audio: torch.Tensor, ids: torch.Tensor, chunk_size: int, cap: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """A2T ranks ``(pair_ranks, best_ranks)``, exact up to ``cap``, else ``cap + 1``.

    ``pair_ranks[j]`` (Nt,) is the rank of caption ``j`` in the ranking of all captions for its own clip;
    ``best_ranks[a]`` (Na,) is the best (smallest) rank among clip ``a``'s captions.
    """
    num_audio = audio.shape[0]
    groups, valid = _group_captions(ids, num_audio)
    pair_ranks = torch.empty(text.shape[0], dtype=torch.long, device=text.device)
    best_ranks = torch.empty(num_audio, dtype=torch.long, device=text.device)
    text_t = text.T.contiguous()
    for start in range(0, num_audio, chunk_size):
        stop = min(start + chunk_size, num_audio)
        scores = audio[start:stop] @ text_t  # (B, Nt)
        g, v = groups[start:stop], valid[start:stop]
        positive = scores.gather(1, g)  # (B, width); padded slots hold junk, masked by v
        rank = _capped_ranks(scores, positive, v, cap)
        del scores
        pair_ranks[g[v]] = rank[v]
        best_ranks[start:stop] = rank.masked_fill(~v, cap + 1).min(1).values
    return pair_ranks, best_ranks


def _recall(ranks: torch.Tensor, k: int) -> float:
    return float((ranks <= k).double().mean() * 100.0)


def _map_at(ranks: torch.Tensor, k: int) -> float:
    r = ranks.double()
    return float(torch.where(ranks <= k, 1.0 / r, torch.zeros_like(r)).mean() * 100.0)


def retrieval_scores(
    text_embeds: Any,
    audio_embeds: Any,
    caption_audio_ids: Any,
    ks: Sequence[int] = (1, 5, 10),
    map_k: int = 10,
    chunk_size: int = 1024,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """The whole metric; ``Retrieval._compute`` is a thin wrapper.  See the module docstring."""
    ks = [int(k) for k in ks]
    if not ks or min(ks) < 1 or int(map_k) < 1:
        raise ValueError(f"ks and map_k must be positive integers, got ks={ks}, map_k={map_k}")
    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    chunk_size = int(chunk_size)
    dev = torch.device(device) if device is not None else None
    with torch.inference_mode():
        text = _to_tensor(text_embeds, "text_embeds", dev)
        audio = _to_tensor(audio_embeds, "audio_embeds", text.device)
        if text.dtype != audio.dtype:
            text, audio = text.double(), audio.double()
        if text.shape[1] != audio.shape[1]:
            raise ValueError(f"embedding dims differ: text {tuple(text.shape)} vs audio {tuple(audio.shape)}")
        if isinstance(caption_audio_ids, torch.Tensor):
            caption_audio_ids = caption_audio_ids.detach().cpu().numpy()
        ids_np = np.asarray(caption_audio_ids)
        if ids_np.ndim != 1 or ids_np.shape[0] != text.shape[0]:
            raise ValueError(
                f"caption_audio_ids needs one entry per text row ({text.shape[0]}), got shape {ids_np.shape}"
            )
        if not np.issubdtype(ids_np.dtype, np.integer):
            raise ValueError(f"caption_audio_ids must be integers, got dtype {ids_np.dtype}")
        num_audio = audio.shape[0]
        if ids_np.min() < 0 or ids_np.max() >= num_audio:
            raise ValueError(
                f"caption_audio_ids must lie in [0, {num_audio}), got [{ids_np.min()}, {ids_np.max()}]"
            )
        ids = torch.as_tensor(ids_np.astype(np.int64), device=text.device)
        missing = int((torch.bincount(ids, minlength=num_audio) == 0).sum())
        if missing:
            raise ValueError(f"{missing} of {num_audio} clips have no caption (A2T undefined for them)")

        cap = max(max(ks), int(map_k))
        t2a = t2a_ranks(text, audio, ids, chunk_size, cap)
        a2t_pairs, a2t_best = a2t_ranks(text, audio, ids, chunk_size, cap)

        out: dict[str, Any] = {}
        for k in ks:
            out[f"t2a_R@{k}"] = _recall(t2a, k)
        for k in ks:
            out[f"a2t_R@{k}"] = _recall(a2t_best, k)
        out[f"t2a_mAP@{map_k}"] = _map_at(t2a, int(map_k))
        out[f"a2t_mAP@{map_k}"] = _map_at(a2t_pairs, int(map_k))
    out["mAP_definition"] = MAP_DEFINITION.format(k=int(map_k))
    out["num_captions"] = int(text.shape[0])
    out["num_audio"] = int(num_audio)
    return out
