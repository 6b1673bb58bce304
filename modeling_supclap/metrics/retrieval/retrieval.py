# Copyright 2025 The SupCLAP Authors. Licensed under the Apache License, Version 2.0.
"""Audio-text retrieval metric (text->audio and audio->text) with several captions per clip.

This file is an ``evaluate`` module: it is copied by ``evaluate.load`` into the Hugging Face modules cache
and imported from there, so it must stay self-contained (no imports from ``modeling_supclap``).
Load it with ``modeling_supclap.metrics.load_metric("retrieval")`` or ``evaluate.load(<this folder>)``.

Design of the ``compute()`` call
--------------------------------
``evaluate`` stores every *feature* in an Arrow table (``add_batch`` -> Arrow writer -> read back) before
calling ``_compute``; extra keyword arguments of ``compute()`` are passed straight through to ``_compute``.
Declaring the text embeddings as a ``Sequence(float32)`` feature would send 50k x 512 floats through Arrow
and hand them back as Python lists of lists: measured 8.6 s and ~2 GB RSS for 50k x 512 with evaluate 0.4.6,
before any similarity is computed.  So the only Arrow feature is the small per-caption-row integer
``caption_audio_ids`` (50k int64: milliseconds), and both embedding matrices are passed as keyword
arguments (numpy arrays or torch tensors, used in place, no copy unless a dtype/device change is needed)::

    metric = load_metric("retrieval")
    metric.compute(caption_audio_ids=ids, text_embeds=text, audio_embeds=audio)

Consequence: ``add_batch`` only accumulates ``caption_audio_ids``; the complete embedding matrices must be
given to ``compute()`` (retrieval is a global, all-pairs metric, so in distributed evaluation gather the
embeddings first and compute on one process).

Protocol
--------
Scores are dot products ``text @ audio.T`` (pass L2-normalised embeddings to get cosine similarity).

* text->audio (T2A): every caption is a query ranked against all ``Na`` clips; its one relevant item is its
  clip.  ``t2a_R@k`` = percentage of captions whose clip has rank <= k.
* audio->text (A2T): every clip is a query ranked against all ``Nt`` captions; its relevant items are its
  captions.  ``a2t_R@k`` = percentage of clips for which ANY of their captions has rank <= k.
* ``mAP@10`` as LAION-CLAP reports it: for every (query, relevant item) pair, ``1/rank`` if rank <= 10 else
  0, averaged over all pairs.  T2A has one pair per caption; A2T has one pair per (clip, caption of that
  clip), i.e. each relevant caption's own rank in the clip's ranking of all captions (other relevant
  captions ranked above it count), averaged over all ``Nt`` pairs.  This is "mean reciprocal rank truncated
  at 10", not the textbook average precision.

All values are percentages in [0, 100] (R@k and mAP alike), as in the papers.

Tie rule (pessimistic, deterministic)
-------------------------------------
Candidates are ordered by score descending; among candidates with *exactly equal* scores, the non-relevant
ones come first and the relevant ones after them, in increasing index order.  The rank of a relevant item
is its 1-based position in that order::

    rank(p) = #{i : s_i > s_p} + #{non-relevant i : s_i == s_p} + #{relevant i < p : s_i == s_p} + 1
            = #{i : s_i >= s_p} - #{relevant i != p : s_i == s_p} + #{relevant i < p : s_i == s_p}

For T2A (one relevant item) this is simply ``#{i : s_i >= s_p}``.  Ties never help the model (constant
embeddings score R@1 = 0, not 100), and tied relevant captions of the same clip do not push each other out
(two identical best captions still give an A2T hit at R@1).  The count is exact and computed row by row,
so the result does not depend on ``chunk_size`` *given the score values*.  Caveat: BLAS may round the last
bit of a dot product differently depending on the shape of the matmul (with MKL, chunks of 1-7 rows
differ from larger ones by <= ~1.5e-7), which can swap two items whose scores differ by less than that;
results are identical across chunk sizes whenever the dot products are computed exactly (and, in
practice, for chunk sizes >= 8 with MKL).

Complexity: the similarities are computed in chunks of ``chunk_size`` queries, so peak extra memory is
O(chunk_size x N) (one float score block and its top-(K+1) values), never N x N.  Only ranks up to
``K = max(max(ks), map_k)`` matter, so each score row is reduced once with ``torch.topk(K + 1)`` and the
relevant scores are counted against those K + 1 values (exact: see ``_capped_ranks``); rows are scanned
in full again only for relevant items tied with each other below the top K + 1 (rare).  Time: one matmul
per direction plus one top-k pass over each score row.  50k captions x 10k clips x 512 on 2 CPU cores:
~13-17 s and ~0.4 GB extra peak RSS, vs ~175 s and ~7.5 GB for a full-matrix argsort
(``benchmarks/bench_eval_scaling.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import datasets
import evaluate
import numpy as np
import torch

_CITATION = """\
@inproceedings{laionclap2023,
  title = {Large-scale Contrastive Language-Audio Pretraining with Feature Fusion and Keyword-to-Caption
           Augmentation},
  author = {Wu*, Yusong and Chen*, Ke and Zhang*, Tianyu and Hui*, Yuchen and Berg-Kirkpatrick, Taylor and
            Dubnov, Shlomo},
  booktitle = {ICASSP},
  year = {2023}
}
"""

_DESCRIPTION = """\
Audio-text retrieval metrics (R@k both directions, LAION-CLAP mAP@10) for datasets with several captions per
audio clip (Clotho, AudioCaps).  Exact ranks with a pessimistic tie rule, computed in query chunks so memory
stays O(chunk_size x N).  Embeddings are passed as keyword arguments, not Arrow features (see module doc).
"""

_KWARGS_DESCRIPTION = """
Args:
    caption_audio_ids (`list[int]`, Arrow feature): for each caption row, the index (row of `audio_embeds`)
        of the clip it describes.  Every clip must have at least one caption.
    text_embeds (`np.ndarray | torch.Tensor`, keyword): (Nt, d) caption embeddings, one row per caption,
        normally L2-normalised.
    audio_embeds (`np.ndarray | torch.Tensor`, keyword): (Na, d) clip embeddings, normally L2-normalised.
    ks (`Sequence[int]`, keyword, default (1, 5, 10)): cut-offs for R@k (k >= N gives 100).
    map_k (`int`, keyword, default 10): cut-off of mAP@k.
    chunk_size (`int`, keyword, default 1024): number of queries scored at once (memory O(chunk_size x N)).
    device (`str | torch.device | None`, keyword): where to compute; default: the device of `text_embeds`
        if it is a tensor, else CPU.
Returns:
    dict with `t2a_R@{k}`, `a2t_R@{k}` for each k, `t2a_mAP@{map_k}`, `a2t_mAP@{map_k}` (floats, percent),
    `mAP_definition` (str), `num_captions` and `num_audio` (int).
Examples:
    >>> metric = evaluate.load("modeling_supclap/metrics/retrieval")
    >>> import numpy as np
    >>> eye = np.eye(2, dtype=np.float32)
    >>> out = metric.compute(caption_audio_ids=[0, 1], text_embeds=eye, audio_embeds=eye, ks=(1,))
    >>> out["t2a_R@1"], out["a2t_R@1"]
    (100.0, 100.0)
"""

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


def _a2t_miss_probability(num_text: int, num_pos: int, k: int) -> float:
    """``C(Nt - c, k) / C(Nt, k)``: probability that none of ``c`` relevant items is in a random top-k."""
    if k >= num_text - num_pos + 1:
        return 0.0
    # prod_{i<k} (Nt - c - i) / (Nt - i), exact in rationals; floats suffice (k small, factors in (0, 1]).
    p = 1.0
    for i in range(k):
        p *= (num_text - num_pos - i) / (num_text - i)
    return p


def chance_levels(
    num_audio: int,
    captions_per_clip: int | Sequence[int],
    ks: Sequence[int] = (1, 5, 10),
    map_k: int = 10,
) -> dict[str, float]:
    """Expected value of every retrieval metric under a uniformly random ranking (percent, exact).

    Args:
        num_audio: number of clips ``Na``.
        captions_per_clip: captions per clip ``c`` (int), or one count per clip (len ``Na``).
        ks, map_k: as for :func:`retrieval_scores`.

    Returns the same keys as the metric (``t2a_R@k``, ``a2t_R@k``, ``t2a_mAP@{map_k}``, ``a2t_mAP@{map_k}``):

    * T2A R@k = min(k, Na) / Na (the clip's rank is uniform on 1..Na).
    * A2T R@k = mean over clips of 1 - C(Nt - c_a, k) / C(Nt, k) (no relevant caption in a random top-k).
    * T2A mAP@K = H(min(K, Na)) / Na and A2T mAP@K = H(min(K, Nt)) / Nt, with H the harmonic number: each
      relevant item's own rank is marginally uniform (A2T counts the other relevant captions above it, as the
      metric does), and the mean over pairs is linear, so this is exact for any caption counts.
    """
    if isinstance(captions_per_clip, int):
        counts = [captions_per_clip] * num_audio
    else:
        counts = [int(c) for c in captions_per_clip]
        if len(counts) != num_audio:
            raise ValueError(f"captions_per_clip has {len(counts)} entries for {num_audio} clips")
    if num_audio < 1 or min(counts) < 1:
        raise ValueError("need at least one clip and one caption per clip")
    num_text = sum(counts)
    out: dict[str, float] = {}
    for k in ks:
        out[f"t2a_R@{k}"] = 100.0 * min(k, num_audio) / num_audio
    for k in ks:
        # group clips by caption count: the miss probability depends only on c
        miss = sum(counts.count(c) * _a2t_miss_probability(num_text, c, k) for c in set(counts))
        out[f"a2t_R@{k}"] = 100.0 * (1.0 - miss / num_audio)

    def harmonic(n: int) -> float:
        return math.fsum(1.0 / r for r in range(1, n + 1))

    out[f"t2a_mAP@{map_k}"] = 100.0 * harmonic(min(map_k, num_audio)) / num_audio
    out[f"a2t_mAP@{map_k}"] = 100.0 * harmonic(min(map_k, num_text)) / num_text
    return out


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Retrieval(evaluate.Metric):
    """Audio-text retrieval R@k / mAP@10 (see the module docstring for the protocol and tie rule)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"caption_audio_ids": datasets.Value("int64")}),
            format="numpy",
        )

    def _compute(
        self,
        caption_audio_ids: np.ndarray,
        text_embeds: Any = None,
        audio_embeds: Any = None,
        ks: Sequence[int] = (1, 5, 10),
        map_k: int = 10,
        chunk_size: int = 1024,
        device: str | torch.device | None = None,
        with_chance: bool = False,
    ) -> dict[str, Any]:
        if text_embeds is None or audio_embeds is None:
            raise ValueError("pass text_embeds=... and audio_embeds=... as keyword arguments to compute()")
        out = retrieval_scores(text_embeds, audio_embeds, caption_audio_ids, ks, map_k, chunk_size, device)
        if with_chance:
            counts = np.bincount(np.asarray(caption_audio_ids, dtype=np.int64), minlength=out["num_audio"])
            out["chance"] = chance_levels(out["num_audio"], counts.tolist(), ks, map_k)
        return out
