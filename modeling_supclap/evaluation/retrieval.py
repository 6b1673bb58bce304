"""Retrieval scores of an encoded corpus: pooled, per caption language, and cross-lingual consistency.

The metric math is the ``retrieval`` and ``crosslingual_consistency`` ``evaluate`` modules
(``metrics/``); this file decides what is scored against what (which captions, which clips).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .encode import EncodedCorpus
from .metrics import RETRIEVAL_METRICS, compute_crosslingual_consistency, compute_retrieval_metrics


def retrieval_results(corpus: EncodedCorpus, chunk_size: int = 1024) -> dict[str, Any]:
    """Retrieval metrics (through the ``retrieval`` evaluate module) plus the chance levels."""
    return compute_retrieval_metrics(
        corpus.text_embeds,
        corpus.audio_embeds,
        corpus.caption_audio_ids,
        chunk_size=chunk_size,
        with_chance=True,
    )


def per_language_retrieval(corpus: EncodedCorpus, chunk_size: int = 1024) -> dict[str, Any] | None:
    """Retrieval per caption language (None with fewer than two languages) and the mean over languages.

    Language ``l`` is scored on its own captions against the clips that have a caption in ``l`` (both
    directions), so every language is ranked among the same kind of candidates. ``"mean"``: each metric
    averaged over the languages, unweighted.
    """
    if len(corpus.languages) < 2:
        return None
    per_language: dict[str, Any] = {}
    for language in corpus.languages:
        text, audio, ids = corpus.in_language(language)
        per_language[language] = compute_retrieval_metrics(
            text, audio, ids, chunk_size=chunk_size, with_chance=True
        )
        per_language[language]["num_captions"] = int(ids.numel())
        per_language[language]["num_clips"] = int(audio.shape[0])
    per_language["mean"] = {
        key: float(np.mean([per_language[lang][key] for lang in corpus.languages]))
        for key in RETRIEVAL_METRICS
        if all(key in per_language[lang] for lang in corpus.languages)
    }
    return per_language


def crosslingual_consistency_results(corpus: EncodedCorpus) -> dict[str, Any] | None:
    """Cross-lingual consistency (``metrics/crosslingual_consistency``) of the captions aligned across
    every language: caption k of a clip in each language (the k-th the corpus lists), for the clips with
    a k-th caption in all of them. None with fewer than two languages or no aligned caption."""
    languages = corpus.languages
    if len(languages) < 2:
        return None
    rows: dict[int, dict[str, list[int]]] = {}
    for row, (clip, language) in enumerate(
        zip(corpus.caption_audio_ids.tolist(), corpus.caption_languages or [])
    ):
        rows.setdefault(clip, {}).setdefault(language, []).append(row)
    aligned: dict[str, list[int]] = {language: [] for language in languages}
    for by_language in rows.values():
        if len(by_language) < len(languages):
            continue
        for k in range(min(len(r) for r in by_language.values())):
            for language in languages:
                aligned[language].append(by_language[language][k])
    if not aligned[languages[0]]:
        return None
    results = compute_crosslingual_consistency(
        {language: corpus.text_embeds[aligned[language]] for language in languages}, corpus.audio_embeds
    )
    results["num_aligned_captions"] = len(aligned[languages[0]])
    return results
