"""Tests of the retrieval / zero-shot evaluate modules and the helpers in
``modeling_supclap.evaluation.metrics``.

Everything goes through ``evaluate.load`` of the local module folders (offline, no Hub access).
"""

from __future__ import annotations

import ast
import math
import os
import sys
import textwrap

import numpy as np
import pytest
import torch
from helpers.processes import run_bounded

from modeling_supclap.evaluation.metrics import (
    AVAILABLE_METRICS,
    compute_retrieval_metrics,
    compute_zero_shot_metrics,
    load_metric,
    metric_path,
    retrieval_chance_levels,
)
from modeling_supclap.evaluation.report import format_retrieval_table

# --------------------------------------------------------------------------------------------------
# Naive reference: full score matrix + one explicit total order per query (np.lexsort).
# --------------------------------------------------------------------------------------------------


def _positions(scores: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """1-based position of every item in the order: score desc, then non-relevant first, then index asc."""
    idx = np.arange(scores.shape[0])
    order = np.lexsort((idx, relevant.astype(np.int64), -scores))  # last key is the primary one
    pos = np.empty_like(idx)
    pos[order] = idx + 1
    return pos


def naive_reference(text, audio, ids, ks=(1, 5, 10), map_k=10) -> dict[str, float]:
    text, audio, ids = np.asarray(text), np.asarray(audio), np.asarray(ids)
    s = (torch.as_tensor(text) @ torch.as_tensor(audio).T).numpy()  # (Nt, Na), full matrix
    t2a = np.array([_positions(s[q], np.arange(audio.shape[0]) == ids[q])[ids[q]] for q in range(len(ids))])
    pair, best = np.zeros(len(ids), dtype=np.int64), np.zeros(audio.shape[0], dtype=np.int64)
    for a in range(audio.shape[0]):
        rel = ids == a
        pos = _positions(s[:, a], rel)
        pair[rel] = pos[rel]
        best[a] = pos[rel].min()
    out = {f"t2a_R@{k}": 100 * np.mean(t2a <= k) for k in ks}
    out |= {f"a2t_R@{k}": 100 * np.mean(best <= k) for k in ks}
    out[f"t2a_mAP@{map_k}"] = 100 * np.mean(np.where(t2a <= map_k, 1.0 / t2a, 0.0))
    out[f"a2t_mAP@{map_k}"] = 100 * np.mean(np.where(pair <= map_k, 1.0 / pair, 0.0))
    return out


def _numbers(d: dict) -> dict[str, float]:
    return {k: v for k, v in d.items() if isinstance(v, float)}


def _assert_same(got: dict, want: dict) -> None:
    got = _numbers(got)
    assert set(got) == set(want)
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-9), key


def _tied_data(seed: int, num_audio: int, counts: list[int] | None = None, dim: int = 3):
    """Small-integer embeddings: every dot product is exact in float32 (any summation order), many ties."""
    rng = np.random.default_rng(seed)
    counts = counts if counts is not None else list(rng.integers(1, 5, size=num_audio))
    ids = np.repeat(np.arange(num_audio), counts)
    rng.shuffle(ids)
    text = rng.integers(-1, 2, size=(len(ids), dim)).astype(np.float32)
    audio = rng.integers(-1, 2, size=(num_audio, dim)).astype(np.float32)
    return text, audio, ids


def _gaussian_data(seed: int, num_audio: int, per_clip: int, dim: int = 16):
    g = torch.Generator().manual_seed(seed)
    ids = torch.arange(num_audio).repeat_interleave(per_clip)
    audio = torch.nn.functional.normalize(torch.randn(num_audio, dim, generator=g), dim=1)
    text = torch.nn.functional.normalize(audio[ids] + 1.5 * torch.randn(len(ids), dim, generator=g), dim=1)
    return text, audio, ids


# --------------------------------------------------------------------------------------------------
# Hand-computed example: 3 clips, 5 captions.  audio = identity, so text rows ARE the score rows.
# --------------------------------------------------------------------------------------------------
#            clip0 clip1 clip2      T2A rank (pessimistic ties)
# cap0 (c0)   0.9   0.5   0.1       1
# cap1 (c0)   0.9   0.6   0.2       1
# cap2 (c1)   0.4   0.4   0.8       3  (0.8 above; 0.4 of clip0 ties -> placed before the relevant one)
# cap3 (c1)   0.1   0.7   0.7       2  (tie with clip2)
# cap4 (c2)   0.2   0.3   0.7       1
# A2T, clip0 column [.9 .9 .4 .1 .2]: relevant cap0, cap1 tied at the top -> ranks 1 and 2 (by index), best 1
#      clip1 column [.5 .6 .4 .7 .3]: cap3 1st, cap2 after .7 .6 .5 -> 4, best 1
#      clip2 column [.1 .2 .8 .7 .7]: cap4 after .8 and the tied non-relevant cap3 -> 3, best 3
HAND_TEXT = np.array(
    [[0.9, 0.5, 0.1], [0.9, 0.6, 0.2], [0.4, 0.4, 0.8], [0.1, 0.7, 0.7], [0.2, 0.3, 0.7]], dtype=np.float32
)
HAND_AUDIO = np.eye(3, dtype=np.float32)
HAND_IDS = [0, 0, 1, 1, 2]
T2A_RANKS = [1, 1, 3, 2, 1]
A2T_PAIR_RANKS = [1, 2, 4, 1, 3]
A2T_BEST = [1, 1, 3]


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 7, 1024])
def test_hand_example(chunk_size):
    out = compute_retrieval_metrics(HAND_TEXT, HAND_AUDIO, HAND_IDS, ks=(1, 2, 3, 5), chunk_size=chunk_size)
    expected = {
        "t2a_R@1": 60.0,  # ranks 1,1,1 of 5
        "t2a_R@2": 80.0,
        "t2a_R@3": 100.0,
        "t2a_R@5": 100.0,  # k >= Na
        "a2t_R@1": 200 / 3,  # best ranks 1,1,3
        "a2t_R@2": 200 / 3,
        "a2t_R@3": 100.0,
        "a2t_R@5": 100.0,
        "t2a_mAP@10": 100 * (1 + 1 + 1 / 3 + 1 / 2 + 1) / 5,
        "a2t_mAP@10": 100 * (1 + 1 / 2 + 1 / 4 + 1 + 1 / 3) / 5,
    }
    _assert_same(out, expected)
    assert out["num_captions"] == 5 and out["num_audio"] == 3
    assert "1/rank" in out["mAP_definition"] and "pessimistic" in out["mAP_definition"]
    # the same numbers from the derived rank lists, and from the independent lexsort reference
    assert expected["a2t_mAP@10"] == pytest.approx(100 * np.mean([1 / r for r in A2T_PAIR_RANKS]))
    assert expected["t2a_R@2"] == 100 * np.mean(np.array(T2A_RANKS) <= 2)
    assert expected["a2t_R@1"] == pytest.approx(100 * np.mean(np.array(A2T_BEST) <= 1))
    _assert_same(out, naive_reference(HAND_TEXT, HAND_AUDIO, HAND_IDS, ks=(1, 2, 3, 5)))


@pytest.mark.parametrize("chunk_size", [1, 3, 1024])
def test_hand_example_small_cutoffs(chunk_size):
    """map_k / ks below N take the top-(cap+1) path, including two tied relevant captions at the top."""

    def run(ks, map_k):
        return compute_retrieval_metrics(HAND_TEXT, HAND_AUDIO, HAND_IDS, ks, chunk_size, map_k=map_k)

    _assert_same(run((1,), 1), {"t2a_R@1": 60.0, "a2t_R@1": 200 / 3, "t2a_mAP@1": 60.0, "a2t_mAP@1": 40.0})
    want = {"t2a_R@1": 60.0, "t2a_R@2": 80.0, "a2t_R@1": 200 / 3, "a2t_R@2": 200 / 3}
    _assert_same(run((1, 2), 2), want | {"t2a_mAP@2": 70.0, "a2t_mAP@2": 50.0})


def test_ties_are_pessimistic():
    """Constant embeddings: every score ties, so nothing is retrieved before all the wrong items."""
    text, audio = np.ones((6, 4), np.float32), np.ones((3, 4), np.float32)
    ids = [0, 0, 1, 1, 2, 2]
    out = compute_retrieval_metrics(text, audio, ids, ks=(1, 2, 3, 4, 5))
    assert out["t2a_R@1"] == out["t2a_R@2"] == 0.0 and out["t2a_R@3"] == 100.0  # rank = Na = 3
    # A2T: each clip's first caption comes after the 4 other captions -> best rank 5; its second one is 6th
    assert out["a2t_R@4"] == 0.0 and out["a2t_R@5"] == 100.0
    assert out["a2t_mAP@10"] == pytest.approx(100 * (1 / 5 + 1 / 6) / 2)
    assert out["t2a_mAP@10"] == pytest.approx(100 / 3)


def test_duplicate_captions_do_not_hide_each_other():
    """Two identical relevant captions scored highest: still an A2T hit at R@1 (ranks 1 and 2)."""
    audio = np.eye(2, dtype=np.float32)
    text = np.array([[1, 0], [1, 0], [0, 1]], np.float32)
    for ks, map_k in (((1, 2), 10), ((1,), 1)):
        out = compute_retrieval_metrics(text, audio, [0, 0, 1], ks=ks, map_k=map_k)
        assert out["a2t_R@1"] == 100.0
        assert out[f"a2t_mAP@{map_k}"] == pytest.approx(100 * (1 + (0.5 if map_k >= 2 else 0) + 1) / 3)


def test_k_larger_than_n():
    text, audio, ids = _tied_data(0, num_audio=4, counts=[1, 2, 1, 3])
    out = compute_retrieval_metrics(text, audio, ids, ks=(4, 7, 10, 1000), map_k=1000)
    for k in (4, 7, 10, 1000):  # Na = 4, Nt = 7
        assert out[f"t2a_R@{k}"] == 100.0
    for k in (7, 10, 1000):
        assert out[f"a2t_R@{k}"] == 100.0
    _assert_same(out, naive_reference(text, audio, ids, ks=(4, 7, 10, 1000), map_k=1000))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("cutoffs", [((1, 5, 10), 10), ((1, 2), 3), ((1,), 1), ((1, 3, 60), 60)])
def test_matches_naive_reference_with_ties(seed, cutoffs):
    """Several (ragged) captions per clip, lots of exact ties; chunked == full matrix == lexsort reference."""
    ks, map_k = cutoffs
    text, audio, ids = _tied_data(seed, num_audio=17)
    want = naive_reference(text, audio, ids, ks=ks, map_k=map_k)
    results = [compute_retrieval_metrics(text, audio, ids, ks, c, map_k=map_k) for c in (1, 3, 7, 4096)]
    for got in results:
        _assert_same(got, want)
        assert _numbers(got) == _numbers(results[-1])  # bitwise equal across chunk sizes


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_naive_reference_every_rank(seed):
    """R@k for every k (and mAP@N) pins down the whole rank histogram in both directions."""
    text, audio, ids = _tied_data(seed, num_audio=9, counts=[1, 2, 3, 1, 5, 2, 1, 1, 4])
    ks = tuple(range(1, len(ids) + 2))
    want = naive_reference(text, audio, ids, ks=ks, map_k=len(ids))
    for c in (1, 3, 7):
        _assert_same(compute_retrieval_metrics(text, audio, ids, ks=ks, chunk_size=c, map_k=len(ids)), want)


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_naive_reference_random_gaussian(seed):
    text, audio, ids = _gaussian_data(seed, num_audio=60, per_clip=5, dim=32)
    want = naive_reference(text, audio, ids)
    assert 0 < want["t2a_R@1"] < 100  # informative, not degenerate
    for c in (1, 3, 7, 1024):
        _assert_same(compute_retrieval_metrics(text, audio, ids, chunk_size=c), want)


def test_input_types_and_device():
    text, audio, ids = _gaussian_data(3, num_audio=20, per_clip=2)
    want = _numbers(compute_retrieval_metrics(text.numpy(), audio.numpy(), ids.numpy()))
    assert _numbers(compute_retrieval_metrics(text, audio, ids, device="cpu")) == want
    assert _numbers(compute_retrieval_metrics(text.tolist(), audio.tolist(), ids.tolist())) == want
    got64 = compute_retrieval_metrics(text.double(), audio.double(), ids)
    _assert_same(got64, want)
    # through the module directly, embeddings as keyword arguments, ids as the Arrow feature
    metric = load_metric("retrieval")
    direct = metric.compute(
        caption_audio_ids=ids.tolist(), text_embeds=text, audio_embeds=audio, chunk_size=4
    )
    _assert_same(direct, want)
    # add_batch accumulates the ids; the embeddings come with compute()
    metric.add_batch(caption_audio_ids=ids[:10].tolist())
    metric.add_batch(caption_audio_ids=ids[10:].tolist())
    assert _numbers(metric.compute(text_embeds=text, audio_embeds=audio)) == want


def test_invalid_inputs():
    text, audio = np.eye(3, dtype=np.float32), np.eye(3, dtype=np.float32)
    with pytest.raises(ValueError, match="no caption"):
        compute_retrieval_metrics(text, audio, [0, 0, 1])
    with pytest.raises(ValueError, match="must lie in"):
        compute_retrieval_metrics(text, audio, [0, 1, 3])
    with pytest.raises(ValueError, match="one entry per text row"):
        compute_retrieval_metrics(text, audio, [0, 1])
    with pytest.raises(ValueError, match="dims differ"):
        compute_retrieval_metrics(text, audio[:, :2], [0, 1, 2])
    bad = text.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        compute_retrieval_metrics(bad, audio, [0, 1, 2])
    with pytest.raises(ValueError, match="audio_embeds"):
        load_metric("retrieval").compute(caption_audio_ids=[0, 1, 2], text_embeds=text)
    with pytest.raises(ValueError, match="unknown metric"):
        load_metric("bleu")


# --------------------------------------------------------------------------------------------------
# Chance levels
# --------------------------------------------------------------------------------------------------


def test_chance_levels_closed_forms():
    ch = retrieval_chance_levels(num_audio=100, captions_per_clip=1, ks=(1, 5, 100, 200))
    assert ch["t2a_R@1"] == pytest.approx(1.0) and ch["t2a_R@5"] == pytest.approx(5.0)
    assert ch["t2a_R@100"] == ch["t2a_R@200"] == 100.0
    assert ch["a2t_R@5"] == pytest.approx(5.0)  # one caption per clip: symmetric
    assert ch["t2a_mAP@10"] == pytest.approx(100 * sum(1 / r for r in range(1, 11)) / 100)
    ch5 = retrieval_chance_levels(num_audio=1000, captions_per_clip=5, ks=(1, 10))
    assert ch5["a2t_R@1"] == pytest.approx(100 * 5 / 5000)
    assert ch5["a2t_R@10"] == pytest.approx(100 * (1 - math.comb(4995, 10) / math.comb(5000, 10)))
    ragged = retrieval_chance_levels(num_audio=3, captions_per_clip=[2, 2, 1], ks=(1, 5))
    assert ragged["a2t_R@1"] == pytest.approx(100 * (2 / 5 + 2 / 5 + 1 / 5) / 3)
    assert ragged["a2t_R@5"] == 100.0
    with pytest.raises(ValueError):
        retrieval_chance_levels(num_audio=3, captions_per_clip=[2, 2])


@pytest.mark.slow
def test_chance_levels_monte_carlo():
    """Random embeddings give uniformly random rankings: the metric averages to the exact chance levels."""
    num_audio, per_clip, trials, ks = 30, 3, 60, (1, 5, 10)
    gen = torch.Generator().manual_seed(1234)
    ids = torch.arange(num_audio).repeat_interleave(per_clip)
    runs = []
    for _ in range(trials):
        text = torch.nn.functional.normalize(torch.randn(len(ids), 16, generator=gen), dim=1)
        audio = torch.nn.functional.normalize(torch.randn(num_audio, 16, generator=gen), dim=1)
        runs.append(_numbers(compute_retrieval_metrics(text, audio, ids, ks=ks)))
    exact = retrieval_chance_levels(num_audio, per_clip, ks)
    assert set(exact) == set(runs[0])
    for key, value in exact.items():
        samples = np.array([r[key] for r in runs])
        sem = samples.std(ddof=1) / math.sqrt(trials)
        assert abs(samples.mean() - value) <= 5 * sem + 1e-9, (key, samples.mean(), value, sem)


def test_format_retrieval_table():
    out = compute_retrieval_metrics(HAND_TEXT, HAND_AUDIO, HAND_IDS, ks=(1, 5, 10))
    table = format_retrieval_table(out, retrieval_chance_levels(3, [2, 2, 1], (1, 5, 10)))
    lines = table.splitlines()
    assert lines[0].split("|")[1:-1] == [" Direction    ", "   R@1 ", "    R@5 ", "   R@10 ", " mAP@10 "]
    row_names = [line.split("|")[1].strip() for line in lines[2:]]
    assert row_names == ["T2A", "A2T", "T2A (chance)", "A2T (chance)"]
    assert "60.00" in lines[2] and "66.67" in lines[3]
    assert len(format_retrieval_table(out).splitlines()) == 4  # no chance rows
    assert "-" in format_retrieval_table({"t2a_R@1": 5.0})  # missing a2t values


# --------------------------------------------------------------------------------------------------
# Zero-shot
# --------------------------------------------------------------------------------------------------


def test_zero_shot_hand_example():
    preds, refs = [0, 1, 1, 2, 2, 0], [0, 1, 2, 2, 2, 1]
    out = compute_zero_shot_metrics(preds, refs, label_names=["dog", "cat", "bird"])
    assert out["accuracy"] == pytest.approx(100 * 4 / 6)
    assert out["per_class_accuracy"] == pytest.approx({"dog": 100.0, "cat": 50.0, "bird": 200 / 3})
    assert list(out["per_class_accuracy"]) == ["dog", "cat", "bird"]
    assert out["balanced_accuracy"] == pytest.approx((100 + 50 + 200 / 3) / 3)
    plain = compute_zero_shot_metrics(torch.tensor(preds), np.array(refs))
    assert plain["per_class_accuracy"] == pytest.approx({"0": 100.0, "1": 50.0, "2": 200 / 3})


def test_zero_shot_absent_class_and_errors():
    out = compute_zero_shot_metrics([0, 2, 2], [0, 0, 2], label_names=["a", "b", "c"])
    assert out["per_class_accuracy"] == {"a": 50.0, "c": 100.0}  # "b" has no sample: no accuracy
    assert out["balanced_accuracy"] == 75.0 and out["accuracy"] == pytest.approx(200 / 3)
    with pytest.raises(ValueError, match="unique"):
        compute_zero_shot_metrics([0], [0], label_names=["a", "a"])
    with pytest.raises(ValueError, match="match label_names"):
        compute_zero_shot_metrics([0], [3], label_names=["a", "b"])


# --------------------------------------------------------------------------------------------------
# Loading: local path, offline, fresh process, fresh cache
# --------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_load_in_fresh_process_offline(tmp_path):
    """Fresh HF cache, proxies pointing nowhere: loading twice and computing never needs the network."""
    code = textwrap.dedent(
        """
        from modeling_supclap.evaluation.metrics import load_metric, compute_zero_shot_metrics
        for _ in range(2):
            m = load_metric("retrieval")
            out = m.compute(caption_audio_ids=[0, 1], text_embeds=[[1.0, 0.0], [0.0, 1.0]],
                            audio_embeds=[[1.0, 0.0], [0.0, 1.0]], ks=(1,))
            assert out["t2a_R@1"] == 100.0 and out["a2t_R@1"] == 100.0, out
        assert compute_zero_shot_metrics([1], [1])["accuracy"] == 100.0
        print("OK")
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
    dead = "http://127.0.0.1:9"
    env |= {"HF_HOME": str(tmp_path / "hf"), "HTTP_PROXY": dead, "HTTPS_PROXY": dead, "ALL_PROXY": dead}
    env |= {"http_proxy": dead, "https_proxy": dead, "NO_PROXY": "", "no_proxy": ""}
    proc = run_bounded([sys.executable, "-c", code], env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("OK")
    assert (tmp_path / "hf" / "modules").exists()  # evaluate copied the module into the fresh cache


def test_metric_modules_are_self_contained():
    """evaluate copies only <name>.py into its cache: no package-relative or project imports allowed."""
    for name in AVAILABLE_METRICS:
        with open(os.path.join(metric_path(name), f"{name}.py"), encoding="utf-8") as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert node.level == 0 and not node.module.startswith("modeling_supclap"), ast.dump(node)
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("modeling_supclap") for a in node.names)
