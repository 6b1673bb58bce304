# Copyright 2025 The SupCLAP Authors. Licensed under the Apache License, Version 2.0.
"""Audio-text retrieval metric (text->audio and audio->text) with several captions per clip.

This file is an ``evaluate`` module: it is copied by ``evaluate.load`` into the Hugging Face modules cache
and imported from there, so it must stay self-contained (no imports from ``modeling_supclap``).
Load it with ``modeling_supclap.evaluation.metrics.load_metric("retrieval")`` or
``evaluate.load(<this folder>)``.

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
so the result does not depend on ``chunk_size`` *given the score values*.  The score of every relevant
(caption, own clip) pair is computed once, as a row-wise dot product independent of ``chunk_size``, and
written over its matmul entry, so both directions compare against the same value.

Rounding slack: BLAS rounds a matmul entry and the row-wise dot product of the same two vectors
differently (measured: up to 1 ulp of ``|t| |a|``, depending on the matmul's shape), so a non-relevant
candidate that ties a relevant one in exact arithmetic (collapsed embeddings, identical captions) could
land just below it and count as beaten.  Every relevant score is therefore lowered by
``ROUNDING_SLACK_ULPS * eps(dtype) * max|t| * max|a|`` (about 1.9e-6 for unit float32 vectors) before
comparing: a non-relevant candidate within that slack counts as tied, hence ranked first (pessimistic).
Relevant items compare with each other exactly (all are lowered alike).  Exactly computed scores (small
integers) differ by far more than the slack, so for them the rule is the exact one above.  TF32 matmuls
(``torch.backends.cuda.matmul.allow_tf32``) round far more coarsely than the slack: leave them off.

Complexity: ONE chunked pass over the caption x clip score matrix ``text @ audio.T`` gives both
directions.  First the Nt relevant scores (a gather, O(Nt d)); then, for each chunk of ``chunk_size``
captions, one matmul into a reused (chunk_size, Na) buffer and two max-reductions of it, which are the
only full reads of the chunk:

* T2A: rank = #{clips scoring >= the caption's clip}.  The Na columns are split into 16-column groups;
  a group whose max (in that row) is below the relevant score holds nothing to count, and more than
  ``K`` groups reaching it mean rank > K (capped).  Only the few groups that reach it in rows that can
  still rank <= K are re-read and counted.
* A2T: per clip (column), the counts #{captions scoring >= s(a, p)} for each of its captions p, summed
  over chunks.  Each clip keeps ``theta`` = its lowest caption score whose count can still give a rank
  <= K (a count above ``K + c - 1`` cannot, c = captions of the clip); a 16-row block whose max in that
  column is below ``theta`` adds nothing, so only the entries of the blocks reaching ``theta`` are read
  again, bucketed against the clip's sorted caption scores (``searchsorted``) into a per-clip histogram
  whose suffix sums are the counts.  ``theta`` rises as counts pass the limit (in the first chunk
  already after its first eighth), so a poor model stops being looked at early.  The tie rule then
  needs only the clip's own caption scores.

``K`` is the largest cut-off below the number of candidates (k >= N gives 100 whatever the rank), so
ranks are exact up to every requested k.  Extra memory: the score buffer, its two reductions (1/16 of it
each) and the re-read entries, i.e. O(chunk_size x N) plus O(Na x max captions per clip), never
N x N.  Time (``benchmarks/bench_eval_scaling.py``, float32, dim 512, chunk 1,024, 2 CPU threads, quiet
machine): 1.32x a bare chunked matmul of the same run at 20k x 20k (2.06 s vs 1.56 s) and 1.45x at 50k
captions x 10k clips (2.67 s vs 1.84 s); the previous two-pass implementation took 3.2x; extra peak
memory ~0.2-0.3 GB.
On CPU, ``compute()`` lowers torch's intra-op thread count to 1 for its small per-chunk steps and
restores it before returning (see ``one_pass_ranks``); other threads using torch at the same time see it.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
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


ROW_BLOCK = 16  # A2T filter: maxima of blocks of this many caption rows, per clip column
GROUP_COLS = 16  # T2A filter: maxima of groups of this many clip columns (strided), per caption row
GATHER_ROWS = 1024  # rows per step of the positive-score gather (fixed: positives never depend on chunks)
# relevant scores are lowered by this many eps of max|t| max|a| (see "Rounding slack" above)
ROUNDING_SLACK_ULPS = 16


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


def positive_scores(text: torch.Tensor, audio: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``pos[j] = text[j] . audio[ids[j]]`` (Nt,): the score of every caption with its own clip, O(Nt d).

    These values ARE the scores of the relevant pairs in both directions: each similarity chunk gets them
    written over its matmul entries, so every comparison with a relevant pair uses this one value.
    """
    num_text = text.shape[0]
    pos = torch.empty(num_text, dtype=text.dtype, device=text.device)
    rows = min(GATHER_ROWS, num_text)
    own = torch.empty(rows, text.shape[1], dtype=text.dtype, device=text.device)  # reused: no page faults
    for start in range(0, num_text, rows):
        stop = min(start + rows, num_text)
        block = own[: stop - start]
        torch.index_select(audio, 0, ids[start:stop], out=block)
        pos[start:stop] = block.mul_(text[start:stop]).sum(1)
    return pos


def rounding_slack(text: torch.Tensor, audio: torch.Tensor) -> float:
    """How far a matmul entry may round from the row-wise dot product of the same vectors (an upper bound
    with a wide margin on what BLAS does; see "Rounding slack" in the module docstring)."""
    largest = float(text.norm(dim=1).max()) * float(audio.norm(dim=1).max())
    return ROUNDING_SLACK_ULPS * torch.finfo(text.dtype).eps * largest


def _ties_in_runs(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For rows of ascending ``values`` (Na, w): ``(offset in its run of equal values, run length - 1)``."""
    width = values.shape[1]
    idx = torch.arange(width, device=values.device).expand_as(values)
    starts = torch.ones_like(values, dtype=torch.bool)
    starts[:, 1:] = values[:, 1:] != values[:, :-1]
    ends = torch.ones_like(starts)
    ends[:, :-1] = starts[:, 1:]
    run_start = torch.where(starts, idx, 0).cummax(1).values
    run_end = torch.where(ends, idx, width).flip(1).cummin(1).values.flip(1)
    return idx - run_start, run_end - run_start


def _hits(values: torch.Tensor, thresholds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rows, cols)`` of the entries of the 2-D ``values`` that are >= ``thresholds`` (broadcast)."""
    flat = (values >= thresholds).flatten().nonzero().squeeze(1)
    cols = values.shape[1]
    return flat // cols, flat % cols


@contextlib.contextmanager
def _cpu_threads(device: torch.device, threads: int) -> Iterator[None]:
    """Run the block with ``threads`` torch intra-op threads when on CPU (the previous number restored)."""
    before = torch.get_num_threads()
    if device.type != "cpu" or before == threads:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _row_hits(values: torch.Tensor, thresholds: torch.Tensor, cap: int) -> tuple[torch.Tensor, ...]:
    """``(per_row, rows, cols)``: per row, how many entries of ``values`` are >= its threshold (rows, 1);
    and where they are, only in the rows with at most ``cap`` of them (the others' ranks are capped)."""
    mask = values >= thresholds
    per_row = mask.sum(1)
    rows_ok = (per_row <= cap).nonzero().squeeze(1)
    local, cols = mask[rows_ok].nonzero(as_tuple=True)
    return per_row, rows_ok[local], cols


def one_pass_ranks(
    text: torch.Tensor,
    audio: torch.Tensor,
    ids: torch.Tensor,
    chunk_size: int,
    cap_t2a: int,
    cap_a2t: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Both directions from one chunked pass over ``text @ audio.T``: ``(t2a, a2t_pairs, a2t_best)``.

    ``t2a[j]`` (Nt,) is the rank of caption ``j``'s clip among all clips; ``a2t_pairs[j]`` (Nt,) the rank of
    caption ``j`` among all captions for its own clip; ``a2t_best[a]`` (Na,) the best rank among clip
    ``a``'s captions.  T2A ranks are exact up to ``cap_t2a`` (larger ones are ``cap_t2a + 1``), A2T ranks up
    to ``cap_a2t`` (larger ones ``cap_a2t + 1``).  See the module docstring for the algorithm.

    On CPU only the matmul and the two filter reductions use torch's intra-op threads; the small bookkeeping
    ops in between run on one thread (torch's thread count is lowered, then restored): with several
    threads, each of them would wait for the busiest core whenever the machine is shared.
    """
    threads = torch.get_num_threads()
    with _cpu_threads(text.device, 1):
        return _one_pass_ranks(text, audio, ids, chunk_size, cap_t2a, cap_a2t, threads)


def _one_pass_ranks(
    text: torch.Tensor,
    audio: torch.Tensor,
    ids: torch.Tensor,
    chunk_size: int,
    cap_t2a: int,
    cap_a2t: int,
    threads: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    num_text, num_audio = text.shape[0], audio.shape[0]
    dev, dtype = text.device, text.dtype
    chunk_size = min(chunk_size, num_text)  # no buffer rows beyond the data (the chunks are the same)
    pos = positive_scores(text, audio, ids) - rounding_slack(text, audio)

    # A2T thresholds: the scores of every clip's captions, ascending (stable: tied ones by caption index).
    groups, valid = _group_captions(ids, num_audio)
    width = groups.shape[1]
    thr, order = pos[groups].masked_fill(~valid, float("inf")).sort(dim=1, stable=True)
    captions, valid = groups.gather(1, order), valid.gather(1, order)
    # A count above ``limit`` cannot give a rank <= cap_a2t: the tie corrections are at most width - 1.
    limit = cap_a2t + width - 1
    # hist[a, b]: captions seen so far with exactly b of clip a's thresholds <= their score (b = 0 unused).
    hist = torch.zeros(num_audio, width + 1, dtype=torch.long, device=dev)
    theta = thr[:, 0].clone()  # per clip: its lowest threshold whose count can still matter

    # One score buffer, reused (a fresh chunk-sized tensor costs a page fault per 4 KiB); padding: -inf.
    rows = min(ROW_BLOCK, chunk_size)
    rows_pad = -(-chunk_size // rows) * rows
    cols_pad = -(-num_audio // GROUP_COLS) * GROUP_COLS
    audio_t = torch.empty(text.shape[1], cols_pad, dtype=dtype, device=dev)
    with _cpu_threads(dev, threads):
        audio_t[:, :num_audio] = audio.T
    audio_t[:, num_audio:] = 0
    buf = torch.empty(rows_pad, cols_pad, dtype=dtype, device=dev)
    by_rows = buf.view(rows_pad // rows, rows, cols_pad)  # (row blocks, rows, clips)
    # column group g = clips {g, g + groups, g + 2 groups, ...}: the max over a strided middle dim is the
    # fastest reduction here (vectorised along the contiguous last dim)
    by_cols = buf.view(rows_pad, GROUP_COLS, cols_pad // GROUP_COLS)  # (captions, clips, column groups)
    pos_pad = torch.full((rows_pad, 1), float("inf"), dtype=dtype, device=dev)
    t2a = torch.empty(num_text, dtype=torch.long, device=dev)
    blocks = rows_pad // rows
    first = max(1, blocks // 8)
    first_stages = [(0, first), (first, blocks)] if blocks > 1 else [(0, 1)]

    for index, start in enumerate(range(0, num_text, chunk_size)):
        stop = min(start + chunk_size, num_text)
        n = stop - start
        with _cpu_threads(dev, threads):
            torch.matmul(text[start:stop], audio_t, out=buf[:n])
        if n < rows_pad:
            buf[n:] = float("-inf")
            pos_pad[n:] = float("inf")
        buf[:, num_audio:] = float("-inf")
        buf[:n].scatter_(1, ids[start:stop, None], pos[start:stop, None])  # the one score of each pair
        pos_pad[:n, 0] = pos[start:stop]
        # the filters, the only full reads of the chunk: (captions, groups) and (row blocks, clips)
        with _cpu_threads(dev, threads):
            group_max, blk_max = by_cols.amax(1), by_rows.amax(1)[:, :num_audio]

        # T2A: rank = #{clips scoring >= the caption's own clip}.  A column group whose max is below the
        # caption's score holds no such clip; more than cap_t2a groups reaching it mean rank > cap_t2a.
        per_row, r_idx, s_idx = _row_hits(group_max, pos_pad, cap_t2a)
        ge = (by_cols[r_idx, :, s_idx] >= pos_pad[r_idx]).sum(1)
        count = torch.zeros(rows_pad, dtype=torch.long, device=dev).index_add_(0, r_idx, ge)
        t2a[start:stop] = torch.where(per_row > cap_t2a, cap_t2a + 1, count)[:n]

        # A2T: per clip, count the captions scoring >= each of its thresholds that are still live.  A block
        # of rows whose max in the clip's column is below theta adds nothing to any live count.  In the first
        # chunk, its first eighth of row blocks goes first, so that on a poor model (most scores above the
        # initial theta) theta rises before the other blocks are looked at.
        for lo, hi in first_stages if index == 0 else [(0, blocks)]:
            b_idx, a_idx = _hits(blk_max[lo:hi], theta)
            if not b_idx.numel():
                continue
            scores = by_rows[b_idx + lo, :, a_idx]  # (hits, rows)
            h_idx, r_idx = _hits(scores, theta[a_idx, None])  # the scores that reach theta
            clip, scores = a_idx[h_idx], scores[h_idx, r_idx]
            if width > 1:  # how many of the clip's thresholds each score reaches (>= 1 here)
                bucket = torch.searchsorted(thr[clip], scores[:, None], right=True).squeeze(1)
            else:
                bucket = torch.ones_like(clip)
            flat = clip * (width + 1) + bucket
            hist.view(-1).index_add_(0, flat, torch.ones_like(flat))
            clips = torch.unique(a_idx) if hi - lo > 1 else a_idx
            counts = hist[clips, 1:].flip(1).cumsum(1).flip(1)  # counts[., q] = #{i : s_ia >= thr[a, q]}
            dead = (counts > limit) | ~valid[clips]
            theta[clips] = thr[clips].masked_fill(dead, float("inf")).amin(1)

    counts = hist[:, 1:].flip(1).cumsum(1).flip(1)
    # rank(p) = #{i: s_i >= s_p} - #{other relevant tied with p} + #{relevant tied with p, lower index}
    offset, others = _ties_in_runs(thr)
    rank = torch.where(counts <= limit, counts - others + offset, cap_a2t + 1).clamp_(max=cap_a2t + 1)
    rank = rank.masked_fill(~valid, cap_a2t + 1)
    a2t_pairs = torch.empty(num_text, dtype=torch.long, device=dev)
    a2t_pairs[captions[valid]] = rank[valid]
    return t2a.clamp_(max=cap_t2a + 1), a2t_pairs, rank.amin(1)


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

        # Ranks only need to be exact up to the largest cut-off below the number of candidates: for k >= N
        # every rank (a capped one too, <= N) is <= k.
        cap_t2a = max([int(map_k)] + [k for k in ks if k < num_audio])
        cap_a2t = max([int(map_k)] + [k for k in ks if k < text.shape[0]])
        t2a, a2t_pairs, a2t_best = one_pass_ranks(text, audio, ids, chunk_size, cap_t2a, cap_a2t)

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
