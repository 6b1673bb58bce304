"""Encode a corpus with any CLAP-like model and score it: retrieval and zero-shot classification.

Where a batch is *scored* for evaluation. The metric math lives in the ``evaluate`` modules under
``metrics/``; this file turns records into embeddings and hands them over. Used by
``eval_supclap.py``, by validation inside ``train_supclap.py`` and by the Trainer's
``compute_metrics`` helper, so all three report the same numbers (``reporting.py`` prints them).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import ClapProcessor

from .data.collator import AudioTextDataset
from .data.features import clap_features
from .data.loading import AudioTextRecord
from .data.workers import ignore_stop_signals
from .metrics import (
    RETRIEVAL_METRICS,
    compute_crosslingual_consistency,
    compute_retrieval_metrics,
    compute_zero_shot_metrics,
)

DEFAULT_PROMPT_TEMPLATE = "This is a sound of {label}."


@dataclass
class EncodedCorpus:
    """Embeddings of a corpus: one audio row per clip, one text row per caption."""

    audio_embeds: torch.Tensor  # (num_clips, d), L2-normalised
    text_embeds: torch.Tensor  # (num_captions, d), L2-normalised
    caption_audio_ids: torch.Tensor  # (num_captions,) clip index of each caption
    labels: list[str | None]  # class label of each clip
    num_skipped: int = 0  # clips dropped as bad samples (on_bad_sample="skip")
    caption_languages: list[str] | None = None  # language of each caption (None: not known)

    @property
    def languages(self) -> list[str]:
        """The caption languages present, in order of first appearance."""
        return list(dict.fromkeys(self.caption_languages or []))

    def in_language(self, language: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(text_embeds, audio_embeds, caption_audio_ids)`` of the captions in ``language`` and of the
        clips that have one (ids renumbered over those clips)."""
        rows = torch.tensor([i for i, lang in enumerate(self.caption_languages or []) if lang == language])
        if rows.numel() == 0:
            raise ValueError(f"no caption in language {language!r}; languages: {self.languages}")
        clip_ids = self.caption_audio_ids[rows]
        clips = torch.unique(clip_ids)
        renumber = torch.full((self.audio_embeds.shape[0],), -1, dtype=torch.long)
        renumber[clips] = torch.arange(clips.numel())
        return self.text_embeds[rows], self.audio_embeds[clips], renumber[clip_ids]


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def encode_texts(
    model: torch.nn.Module,
    processor: ClapProcessor,
    texts: Sequence[str],
    batch_size: int = 64,
    max_text_length: int = 64,
) -> torch.Tensor:
    """L2-normalised text embeddings, computed in batches."""
    device, chunks = _model_device(model), []
    for start in range(0, len(texts), batch_size):
        tokens = processor.tokenizer(
            list(texts[start : start + batch_size]),
            padding=True,
            truncation=True,
            max_length=max_text_length,
            return_tensors="pt",
        )
        tokens = {
            key: value.to(device) for key, value in tokens.items() if key in ("input_ids", "attention_mask")
        }
        chunks.append(model.get_text_features(**tokens).pooler_output.float().cpu())
    return torch.cat(chunks) if chunks else torch.zeros(0, model.config.projection_dim)


@torch.no_grad()
def encode_audio(
    model: torch.nn.Module, processor: ClapProcessor, audios: Sequence[np.ndarray], seed: int = 0
) -> torch.Tensor:
    """L2-normalised audio embeddings of one batch. Random crops of long clips are seeded."""
    extractor = processor.feature_extractor
    state = np.random.get_state()
    np.random.seed(seed)  # ClapFeatureExtractor crops with the global numpy RNG
    try:
        features = clap_features(extractor, list(audios))
    finally:
        np.random.set_state(state)
    device = _model_device(model)
    out = model.get_audio_features(
        input_features=features["input_features"].to(device=device, dtype=next(model.parameters()).dtype),
        is_longer=features["is_longer"].to(device),
    )
    return out.pooler_output.float().cpu()


def _collate_items(items: list[dict[str, Any] | None]) -> list[dict[str, Any] | None]:
    return items


@torch.no_grad()
def encode_records(
    model: torch.nn.Module,
    processor: ClapProcessor,
    records: Sequence[AudioTextRecord],
    batch_size: int = 32,
    num_workers: int = 0,
    seed: int = 0,
    max_text_length: int = 64,
    on_bad_sample: str = "error",
) -> EncodedCorpus:
    """Encode every clip once and every caption of every clip (audio decoded in DataLoader workers)."""
    was_training = model.training
    model.eval()
    dataset = AudioTextDataset(
        records, processor.feature_extractor.sampling_rate, on_bad_sample=on_bad_sample
    )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=_collate_items,
        worker_init_fn=ignore_stop_signals,
    )
    audio_chunks, captions, caption_ids, labels, skipped = [], [], [], [], 0
    languages: list[str] | None = []
    for batch_index, items in enumerate(loader):
        good = [item for item in items if item is not None]
        skipped += len(items) - len(good)
        if not good:
            continue
        audio_chunks.append(
            encode_audio(model, processor, [item["audio"] for item in good], seed + batch_index)
        )
        for item in good:
            clip = len(labels)
            labels.append(item["label"])
            captions.extend(item["captions"])
            caption_ids.extend([clip] * len(item["captions"]))
            if languages is not None and item.get("languages") is not None:
                languages.extend(item["languages"])
            else:
                languages = None
    if not labels:
        raise ValueError("no clip could be encoded: the evaluation set is empty (or every sample was bad)")
    text_embeds = encode_texts(model, processor, captions, max_text_length=max_text_length)
    model.train(was_training)
    return EncodedCorpus(
        audio_embeds=torch.cat(audio_chunks),
        text_embeds=text_embeds,
        caption_audio_ids=torch.tensor(caption_ids, dtype=torch.long),
        labels=labels,
        num_skipped=skipped,
        caption_languages=languages,
    )


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


def load_zero_shot_templates(path: str | Path) -> dict[str, dict[str, Any]]:
    """A ``--zero_shot_templates`` JSON file as ``{language: {"template": str, "labels": {label: name}}}``.

    Each language maps to a prompt with ``{label}``, or to ``{"template": ..., "labels": {...}}`` where
    ``labels`` gives the class names in that language (labels not listed keep their own name).
    """
    from .data.loading import normalize_language

    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise ValueError(f"--zero_shot_templates {path}: cannot read it ({err})") from err
    except ValueError as err:
        raise ValueError(f"--zero_shot_templates {path}: not valid JSON ({err})") from err
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"--zero_shot_templates {path}: expected a non-empty {{language: template}} object")
    templates: dict[str, dict[str, Any]] = {}
    for key, value in raw.items():
        language = normalize_language(key, f"--zero_shot_templates {path}")
        entry = {"template": value, "labels": {}} if isinstance(value, str) else value
        template = entry.get("template") if isinstance(entry, dict) else None
        labels = entry.get("labels", {}) if isinstance(entry, dict) else None
        if not isinstance(template, str) or "{label}" not in template:
            raise ValueError(
                f"--zero_shot_templates {path}: language {key!r} needs a template with '{{label}}'"
            )
        if not isinstance(labels, dict) or not all(isinstance(v, str) and v.strip() for v in labels.values()):
            raise ValueError(
                f"--zero_shot_templates {path}: language {key!r}: 'labels' must map labels to names"
            )
        templates[language] = {"template": template, "labels": dict(labels)}
    return templates


TEMPLATES_FILE_NAME = "zero_shot_templates.json"


def find_zero_shot_templates(explicit: str | None, data: str | None) -> dict[str, dict[str, Any]] | None:
    """``--zero_shot_templates`` if given, else the corpus folder's ``zero_shot_templates.json`` (the
    multilingual demo corpus writes one), else None."""
    if explicit:
        return load_zero_shot_templates(explicit)
    if data and (Path(data) / TEMPLATES_FILE_NAME).is_file():
        return load_zero_shot_templates(Path(data) / TEMPLATES_FILE_NAME)
    return None


@torch.no_grad()
def zero_shot_results(
    model: torch.nn.Module,
    processor: ClapProcessor,
    corpus: EncodedCorpus,
    class_labels: Sequence[str] | None = None,
    template: str = DEFAULT_PROMPT_TEMPLATE,
    label_names: Mapping[str, str] | None = None,
) -> dict[str, Any] | None:
    """Zero-shot classification of every clip among ``class_labels`` (default: the labels seen).

    ``label_names``: what each label is called in the prompt (a translation), default the label itself.
    """
    known = [label for label in corpus.labels if label is not None]
    if not known:
        return None
    class_labels = sorted(set(known)) if class_labels is None else list(class_labels)
    if "{label}" not in template:
        raise ValueError(f"the prompt template must contain '{{label}}', got {template!r}")
    index = {label: i for i, label in enumerate(class_labels)}
    missing = sorted(set(known) - set(index))
    if missing:
        raise ValueError(f"clip labels {missing[:5]} are not among the class labels {class_labels[:10]}")
    names = [(label_names or {}).get(label, label) for label in class_labels]
    prompts = encode_texts(model, processor, [template.format(label=name) for name in names])
    keep = [i for i, label in enumerate(corpus.labels) if label is not None]
    predictions = (corpus.audio_embeds[keep] @ prompts.t()).argmax(dim=1)
    references = torch.tensor([index[corpus.labels[i]] for i in keep])
    results = compute_zero_shot_metrics(predictions.tolist(), references.tolist(), label_names=class_labels)
    results["chance_accuracy"] = 100.0 / len(class_labels)
    results["template"] = template
    return results


def evaluate_records(
    model: torch.nn.Module,
    processor: ClapProcessor,
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
) -> dict[str, Any]:
    """Retrieval (both directions, R@1/5/10, mAP@10) and zero-shot accuracy on ``records``.

    With captions in two or more languages, also ``retrieval_per_language`` (each language and their
    mean, :func:`per_language_retrieval`) and ``crosslingual_consistency``; ``zero_shot_templates``
    (:func:`load_zero_shot_templates`) adds ``zero_shot["per_language"]``, one prompt per language.
    ``per_language=False`` skips the per-language scores (validation only needs the pooled R@1).
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
