"""Score a corpus: retrieval (both directions) and zero-shot classification, from one encoding pass.

The one entry point of evaluation (``eval_supclap.py``, validation inside training, the final test and
the eval suites call it), so all of them report the same numbers; ``report.py`` prints them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from transformers import ProcessorMixin

from ..data.long_audio import LongAudioPolicy
from ..data.records import AudioTextRecord
from .encode import encode_records
from .retrieval import crosslingual_consistency_results, per_language_retrieval, retrieval_results
from .zero_shot import DEFAULT_PROMPT_TEMPLATE, zero_shot_results


def evaluate_records(
    model: torch.nn.Module,
    processor: ProcessorMixin,
    records: Sequence[AudioTextRecord],
    batch_size: int = 32,
    num_workers: int = 0,
    seed: int = 0,
    class_labels: Sequence[str] | None = None,
    template: str = DEFAULT_PROMPT_TEMPLATE,
    chunk_size: int = 1024,
    zero_shot: bool = True,
    on_bad_sample: str = "error",
    max_text_length: int = 64,
    zero_shot_templates: Mapping[str, Mapping[str, Any]] | None = None,
    per_language: bool = True,
    long_audio: LongAudioPolicy | str = "windows",
) -> dict[str, Any]:
    """Retrieval (both directions, R@1/5/10, mAP@10) and zero-shot accuracy on ``records``.

    With captions in two or more languages, also ``retrieval_per_language`` (each language and their
    mean, :func:`per_language_retrieval`) and ``crosslingual_consistency``; ``zero_shot_templates``
    (:func:`load_zero_shot_templates`) adds ``zero_shot["per_language"]``, one prompt per language.
    ``per_language=False`` skips the per-language scores (validation only needs the pooled R@1).
    ``long_audio``: how clips longer than the model's window are embedded (``data/long_audio.py``).
    """
    corpus = encode_records(
        model,
        processor,
        records,
        batch_size=batch_size,
        num_workers=num_workers,
        seed=seed,
        max_text_length=max_text_length,
        on_bad_sample=on_bad_sample,
        long_audio=long_audio,
    )
    results: dict[str, Any] = {
        "num_clips": len(corpus.labels),
        "num_captions": int(corpus.caption_audio_ids.numel()),
        "num_skipped": corpus.num_skipped,
        "retrieval": retrieval_results(corpus, chunk_size=chunk_size),
    }
    by_language = per_language_retrieval(corpus, chunk_size=chunk_size) if per_language else None
    if by_language is not None:
        results["caption_languages"] = corpus.languages
        results["retrieval_per_language"] = by_language
        results["crosslingual_consistency"] = crosslingual_consistency_results(corpus)
    if zero_shot:
        results["zero_shot"] = zero_shot_results(model, processor, corpus, class_labels, template)
        if results["zero_shot"] is not None and zero_shot_templates:
            results["zero_shot"]["per_language"] = {
                language: zero_shot_results(
                    model, processor, corpus, class_labels, entry["template"], entry.get("labels")
                )
                for language, entry in zero_shot_templates.items()
            }
    return results


def mean_recall_at_1(results: dict[str, Any]) -> float:
    """Validation score used for best-checkpoint selection: mean of T2A and A2T R@1."""
    retrieval = results["retrieval"]
    return (retrieval["t2a_R@1"] + retrieval["a2t_R@1"]) / 2
