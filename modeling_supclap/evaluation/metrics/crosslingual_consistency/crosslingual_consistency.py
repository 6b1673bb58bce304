# Copyright 2025 The SupCLAP Authors. Licensed under the Apache License, Version 2.0.
"""Cross-lingual consistency of text-to-audio retrieval: do a caption's translations retrieve alike?

This file is an ``evaluate`` module (copied to the Hugging Face modules cache by ``evaluate.load``), so it
must stay self-contained.  Load it with
``modeling_supclap.evaluation.metrics.load_metric("crosslingual_consistency")``.

Inputs: the same N captions in L >= 2 languages (``text_embeds[l][i]`` is caption i in language l, rows
aligned across languages) and the M clips they are scored against, all L2-normalised.  For each caption i
and each pair of languages (l, l'), over the L (L - 1) / 2 pairs:

* ``top1_agreement``: percentage of (caption, language pair) cases in which both languages' captions
  retrieve the same top-1 clip (ties: the lowest clip index, as ``argmax`` does);
* ``rank_correlation``: mean Spearman correlation between the two languages' score vectors over the M
  clips (ranks with ties averaged; a constant score vector has no ranking and counts as 0).

Both are 100 / 1 when every language embeds its captions identically, and fall when one language's
captions are shuffled.  Per language pair values are in ``per_pair``.  These are the two measures
suggested by the cross-lingual consistency analysis of ATRI (arXiv 2502.14627) for multilingual
audio-text retrieval; we define them here exactly as above rather than claim to reproduce that paper's.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import combinations
from typing import Any

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """\
Cross-lingual consistency of text-to-audio retrieval: top-1 agreement (percent) and mean Spearman rank
correlation of the clip scores, between every pair of languages of the same captions.
"""

_KWARGS_DESCRIPTION = """
Args:
    caption_ids (`list[int]`): 0..N-1, one per caption (the row shared by every language).
    text_embeds (`dict[str, array]`, keyword): language -> (N, d) caption embeddings, rows aligned.
    audio_embeds (`array`, keyword): (M, d) clip embeddings.
Returns:
    top1_agreement (`float`, percent), rank_correlation (`float`), per_pair
    (`dict["l1-l2", {"top1_agreement", "rank_correlation"}]`), languages, num_captions, num_audio.
Examples:
    >>> import numpy as np
    >>> audio = np.eye(3, dtype=np.float32)
    >>> metric = evaluate.load("modeling_supclap/metrics/crosslingual_consistency")
    >>> metric.compute(caption_ids=[0, 1, 2], text_embeds={"en": audio, "fr": audio},
    ...                audio_embeds=audio)["top1_agreement"]
    100.0
"""

_CITATION = "ATRI, arXiv:2502.14627 (motivation; the definitions are this module's own)."


def _ranks(scores: np.ndarray) -> np.ndarray:
    """Row-wise ranks of ``scores`` (n, m), ties given their average rank (as scipy's rankdata)."""
    order = np.argsort(scores, axis=1, kind="stable")
    sorted_scores = np.take_along_axis(scores, order, axis=1)
    ranks = np.empty_like(scores, dtype=np.float64)
    for row in range(scores.shape[0]):
        values, starts, counts = np.unique(sorted_scores[row], return_index=True, return_counts=True)
        average = starts + (counts - 1) / 2.0
        ranks[row, order[row]] = np.repeat(average, counts)
    return ranks


def _spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row of ``a`` with the same row of ``b``; 0 where a row is constant."""
    ra, rb = _ranks(a), _ranks(b)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    denominator = np.sqrt((ra * ra).sum(axis=1) * (rb * rb).sum(axis=1))
    numerator = (ra * rb).sum(axis=1)
    return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1.0), 0.0)


def consistency(text_embeds: Mapping[str, Any], audio_embeds: Any) -> dict[str, Any]:
    """The metric on numpy-convertible embeddings (see the module docstring)."""
    languages = list(text_embeds)
    if len(languages) < 2:
        raise ValueError(f"cross-lingual consistency needs at least 2 languages, got {languages}")
    audio = np.asarray(audio_embeds, dtype=np.float64)
    scores = {}
    for language in languages:
        text = np.asarray(text_embeds[language], dtype=np.float64)
        if text.ndim != 2 or text.shape[1] != audio.shape[1]:
            raise ValueError(
                f"text_embeds[{language!r}] has shape {text.shape}; expected (N, {audio.shape[1]})"
            )
        scores[language] = text @ audio.T
    sizes = {language: s.shape[0] for language, s in scores.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"every language needs the same captions (rows aligned); got row counts {sizes}")
    per_pair = {}
    for first, second in combinations(languages, 2):
        a, b = scores[first], scores[second]
        per_pair[f"{first}-{second}"] = {
            "top1_agreement": float((a.argmax(axis=1) == b.argmax(axis=1)).mean() * 100),
            "rank_correlation": float(_spearman_rows(a, b).mean()),
        }
    return {
        "top1_agreement": float(np.mean([p["top1_agreement"] for p in per_pair.values()])),
        "rank_correlation": float(np.mean([p["rank_correlation"] for p in per_pair.values()])),
        "per_pair": per_pair,
        "languages": languages,
        "num_captions": next(iter(sizes.values())),
        "num_audio": int(audio.shape[0]),
    }


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class CrosslingualConsistency(evaluate.Metric):
    """Cross-lingual consistency of text-to-audio retrieval (see the module docstring)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"caption_ids": datasets.Value("int64")}),
            format="numpy",
        )

    def _compute(
        self, caption_ids: np.ndarray, text_embeds: Mapping[str, Any] | None = None, audio_embeds: Any = None
    ) -> dict[str, Any]:
        if text_embeds is None or audio_embeds is None:
            raise ValueError("text_embeds (language -> (N, d)) and audio_embeds ((M, d)) are required")
        text_embeds = {
            k: v.detach().cpu().numpy() if hasattr(v, "detach") else v for k, v in text_embeds.items()
        }
        if hasattr(audio_embeds, "detach"):
            audio_embeds = audio_embeds.detach().cpu().numpy()
        results = consistency(text_embeds, audio_embeds)
        if len(caption_ids) != results["num_captions"]:
            raise ValueError(
                f"{len(caption_ids)} caption_ids for {results['num_captions']} captions per language"
            )
        return results
