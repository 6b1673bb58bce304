"""The one-pass ``retrieval`` module against its previous two-pass implementation, EXACTLY.

``helpers.retrieval_reference`` is the old code, kept verbatim.  Every comparison is ``==`` on the whole
result dict (metric floats, ``mAP_definition``, counts) or on rank tensors, never approximate: random
scores (no ties), tie-heavy small-integer embeddings (every dot product exact in float32, so both
implementations see the same score values), constant embeddings, ragged captions per clip, cut-offs
at and beyond N, and chunk sizes 1, 7 and 1024 (plus sizes that are not multiples of the filter blocks).
Gaussian embeddings are put on a coarse grid so that their dot products are exact too.  Where BLAS
rounding does matter (collapsed float32 embeddings whose exact ties round apart), the tests at the end
check the pessimistic rule itself.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import retrieval_reference as reference

from modeling_supclap.evaluation.metrics import compute_retrieval_metrics, metric_function

CHUNKS = (1, 7, 1024)


def _new(text, audio, ids, ks=(1, 5, 10), map_k=10, chunk_size=1024):
    return metric_function("retrieval", "retrieval_scores")(text, audio, ids, ks, map_k, chunk_size)


def _old(text, audio, ids, ks=(1, 5, 10), map_k=10, chunk_size=1024):
    return reference.retrieval_scores(text, audio, ids, ks, map_k, chunk_size)


def _tied(seed: int, counts: list[int], dim: int = 3, low: int = -1, high: int = 2):
    """Small-integer embeddings: exact dot products, many exact ties; captions shuffled (ragged groups)."""
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(len(counts)), counts)
    rng.shuffle(ids)
    text = rng.integers(low, high, size=(len(ids), dim)).astype(np.float32)
    audio = rng.integers(low, high, size=(len(counts), dim)).astype(np.float32)
    return text, audio, ids


def _gaussian(seed: int, num_audio: int, counts, dim: int = 16, noise: float = 1.5):
    g = torch.Generator().manual_seed(seed)
    ids = torch.repeat_interleave(torch.arange(num_audio), torch.as_tensor(counts))
    ids = ids[torch.randperm(len(ids), generator=g)]
    audio = torch.nn.functional.normalize(torch.randn(num_audio, dim, generator=g), dim=1)
    text = torch.nn.functional.normalize(audio[ids] + noise * torch.randn(len(ids), dim, generator=g), dim=1)
    # On a grid of 2**-6: every dot product is exact in float32 and two different scores differ by at least
    # 2**-12, far beyond the module's rounding slack, so the exact tie rule of the reference applies.
    return _on_grid(text), _on_grid(audio), ids


def _on_grid(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x * 64) / 64


@pytest.mark.parametrize("chunk_size", CHUNKS)
@pytest.mark.parametrize("seed", [0, 1])
def test_random_scores_ragged(seed, chunk_size):
    counts = np.random.default_rng(seed).integers(1, 6, size=70)
    text, audio, ids = _gaussian(seed, 70, counts)
    for ks, map_k in (((1, 5, 10), 10), ((1, 2), 3), ((1,), 1), ((3, 40, 10_000), 10)):
        want = _old(text, audio, ids, ks, map_k, chunk_size)
        assert 0 < want[f"t2a_R@{ks[0]}"] < 100 and 0 < want[f"a2t_R@{ks[0]}"] < 100  # informative
        assert _new(text, audio, ids, ks, map_k, chunk_size) == want


@pytest.mark.parametrize("chunk_size", CHUNKS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tie_heavy_ragged(seed, chunk_size):
    """Ties everywhere, relevant captions tied with each other and with non-relevant ones, below any cap."""
    rng = np.random.default_rng(100 + seed)
    counts = list(rng.integers(1, 7, size=23))
    text, audio, ids = _tied(seed, counts, dim=2)
    num = len(ids)
    for ks, map_k in (((1, 5, 10), 10), ((1,), 1), ((1, 2), 2), ((2, 7), 5), (tuple(range(1, num + 2)), num)):
        assert _new(text, audio, ids, ks, map_k, chunk_size) == _old(text, audio, ids, ks, map_k, chunk_size)


@pytest.mark.parametrize("chunk_size", CHUNKS)
def test_constant_embeddings(chunk_size):
    """Every score ties: the pessimistic rule puts every relevant item after all the others."""
    for counts in ([1] * 9, [2, 2, 2], [1, 3, 5, 2]):
        ids = np.repeat(np.arange(len(counts)), counts)
        text, audio = np.ones((len(ids), 4), np.float32), np.ones((len(counts), 4), np.float32)
        for ks, map_k in (((1, 5, 10), 10), ((1, 2, 3, 100), 1)):
            got = _new(text, audio, ids, ks, map_k, chunk_size)
            assert got == _old(text, audio, ids, ks, map_k, chunk_size)
        assert got["t2a_R@1"] == 0.0


@pytest.mark.parametrize("chunk_size", CHUNKS)
def test_k_at_and_beyond_n(chunk_size):
    text, audio, ids = _tied(3, [1, 2, 1, 3, 1], dim=3)  # Na = 5, Nt = 8
    for ks, map_k in (((4, 5, 7, 8, 9, 1000), 10), ((1, 5, 8), 1000), ((5,), 4), ((1000,), 1)):
        got = _new(text, audio, ids, ks, map_k, chunk_size)
        assert got == _old(text, audio, ids, ks, map_k, chunk_size)
    assert got["t2a_R@1000"] == got["a2t_R@1000"] == 100.0


@pytest.mark.parametrize("chunk_size", (1, 7, 100, 1024))
def test_one_caption_per_clip_and_odd_sizes(chunk_size):
    """Na not a multiple of the 16-column groups, chunks not multiples of the 16-row blocks."""
    text, audio, ids = _gaussian(5, 45, [1] * 45, dim=8, noise=0.6)
    assert _new(text, audio, ids, chunk_size=chunk_size) == _old(text, audio, ids, chunk_size=chunk_size)
    text, audio, ids = _tied(6, [1] * 45, dim=3)
    assert _new(text, audio, ids, chunk_size=chunk_size) == _old(text, audio, ids, chunk_size=chunk_size)


def test_several_chunks_caps_and_poor_model():
    """Larger sets (several 1024-chunks, capped ranks, theta rising mid-chunk); informative and random."""
    for noise in (1.0, 100.0):  # 100: captions are ~independent of their clip (chance-level model)
        text, audio, ids = _gaussian(7, 600, np.random.default_rng(7).integers(1, 6, size=600), 32, noise)
        for ks, map_k in (((1, 5, 10), 10), ((1, 50), 50)):
            assert _new(text, audio, ids, ks, map_k) == _old(text, audio, ids, ks, map_k)
    text, audio, ids = _tied(8, list(np.random.default_rng(8).integers(1, 6, size=500)), dim=4)
    assert _new(text, audio, ids, chunk_size=256) == _old(text, audio, ids, chunk_size=256)


def test_float64_and_mixed_dtypes():
    text, audio, ids = _gaussian(9, 40, [3] * 40)
    assert _new(text.double(), audio.double(), ids) == _old(text.double(), audio.double(), ids)
    assert _new(text, audio.double(), ids) == _old(text, audio.double(), ids)


@pytest.mark.parametrize("chunk_size", CHUNKS)
def test_ranks_equal_reference_ranks(chunk_size):
    """Rank by rank (not only the averages): T2A ranks, A2T pair ranks and best ranks, capped alike."""
    one_pass_ranks = metric_function("retrieval", "one_pass_ranks")
    text, audio, ids = _tied(11, list(np.random.default_rng(11).integers(1, 5, size=31)), dim=2)
    text, audio, ids = torch.as_tensor(text), torch.as_tensor(audio), torch.as_tensor(ids)
    for cap in (1, 3, 10, len(ids)):
        t2a, pairs, best = one_pass_ranks(text, audio, ids, chunk_size, cap, cap)
        assert torch.equal(t2a, reference.t2a_ranks(text, audio, ids, chunk_size, cap))
        old_pairs, old_best = reference.a2t_ranks(text, audio, ids, chunk_size, cap)
        assert torch.equal(pairs, old_pairs) and torch.equal(best, old_best)


def test_thread_count_restored_and_public_wrapper():
    torch_threads = torch.get_num_threads()
    text, audio, ids = _gaussian(12, 20, [2] * 20)
    out = compute_retrieval_metrics(text, audio, ids, with_chance=True)
    assert torch.get_num_threads() == torch_threads
    assert {k: v for k, v in out.items() if k != "chance"} == _old(text, audio, ids)
    assert set(out["chance"]) == {k for k, v in out.items() if isinstance(v, float)}


def _unit(rows: int, dim: int, seed: int) -> torch.Tensor:
    return torch.nn.functional.normalize(
        torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed)), dim=1
    )


@pytest.mark.parametrize("chunk_size", CHUNKS)
def test_collapsed_text_embeddings_never_score(chunk_size):
    """Every caption embeds alike (e.g. captions cut to <s></s>): in exact arithmetic every clip's captions
    tie with all the others, so no clip may find its own; BLAS rounds the row-wise positive scores and the
    matmul entries apart by an ulp, which must not turn those ties into wins."""
    audio = _unit(40, 512, 0)
    text = _unit(1, 512, 1).repeat(200, 1)
    ids = torch.arange(40).repeat_interleave(5)
    got = _new(text, audio, ids, chunk_size=chunk_size)
    assert got["a2t_R@1"] == got["a2t_R@10"] == got["a2t_mAP@10"] == 0.0
    # T2A: the one clip scoring highest with the shared caption is found by its own 5 captions.
    assert got["t2a_R@1"] == pytest.approx(100 * 5 / 200)


@pytest.mark.parametrize("chunk_size", CHUNKS)
def test_collapsed_audio_embeddings_never_score(chunk_size):
    text = _unit(120, 512, 2)
    audio = _unit(1, 512, 3).repeat(30, 1)
    ids = torch.arange(30).repeat_interleave(4)
    got = _new(text, audio, ids, chunk_size=chunk_size)
    assert got["t2a_R@1"] == got["t2a_R@10"] == got["t2a_mAP@10"] == 0.0


def test_rounding_slack_is_far_below_meaningful_score_gaps():
    """The slack (16 ulps of max|t| max|a|) exceeds what BLAS was measured to do (1 ulp), and a genuine
    score gap above it is still ranked by score."""
    slack = metric_function("retrieval", "rounding_slack")
    audio, text = _unit(300, 512, 4), _unit(500, 512, 5)
    ids = torch.randint(0, 300, (500,), generator=torch.Generator().manual_seed(6))
    rowwise = metric_function("retrieval", "positive_scores")(text, audio, ids)
    matmul = (text @ audio.T)[torch.arange(500), ids]
    assert float((rowwise - matmul).abs().max()) < slack(text, audio) / 4
    assert slack(text, audio) < 2e-6
    # Two clips 1e-5 apart for a caption: the better one is ranked first, the other is not.
    audio = torch.tensor([[1.0, 0.0], [1.0 - 1e-5, 0.0]])
    text = torch.tensor([[1.0, 0.0], [1.0 - 1e-5, 0.0]])
    got = _new(text, audio, torch.tensor([0, 1]), ks=(1,), map_k=1)
    assert got["t2a_R@1"] == 50.0  # caption 0 finds clip 0; caption 1 scores clip 0 higher than its clip 1
