"""Encode a corpus with any CLAP-like model and score it: retrieval and zero-shot classification.

Where a batch is *scored* for evaluation. The metric math lives in the ``evaluate`` modules under
``metrics/``; this file turns records into embeddings and hands them over. Used by
``eval_supclap.py``, by validation inside ``train_supclap.py`` and by the Trainer's
``compute_metrics`` helper, so all three report the same numbers (``reporting.py`` prints them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import ClapProcessor

from .data.collator import AudioTextDataset
from .data.features import clap_features
from .data.loading import AudioTextRecord
from .metrics import compute_retrieval_metrics, compute_zero_shot_metrics

DEFAULT_PROMPT_TEMPLATE = "This is a sound of {label}."


@dataclass
class EncodedCorpus:
    """Embeddings of a corpus: one audio row per clip, one text row per caption."""

    audio_embeds: torch.Tensor  # (num_clips, d), L2-normalised
    text_embeds: torch.Tensor  # (num_captions, d), L2-normalised
    caption_audio_ids: torch.Tensor  # (num_captions,) clip index of each caption
    labels: list[str | None]  # class label of each clip
    num_skipped: int = 0  # clips dropped as bad samples (on_bad_sample="skip")


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
        dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=_collate_items
    )
    audio_chunks, captions, caption_ids, labels, skipped = [], [], [], [], 0
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


@torch.no_grad()
def zero_shot_results(
    model: torch.nn.Module,
    processor: ClapProcessor,
    corpus: EncodedCorpus,
    class_labels: Sequence[str] | None = None,
    template: str = DEFAULT_PROMPT_TEMPLATE,
) -> dict[str, Any] | None:
    """Zero-shot classification of every clip among ``class_labels`` (default: the labels seen)."""
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
    prompts = encode_texts(model, processor, [template.format(label=label) for label in class_labels])
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
) -> dict[str, Any]:
    """Retrieval (both directions, R@1/5/10, mAP@10) and zero-shot accuracy on ``records``."""
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
    if zero_shot:
        results["zero_shot"] = zero_shot_results(model, processor, corpus, class_labels, template)
    return results


def mean_recall_at_1(results: dict[str, Any]) -> float:
    """Validation score used for best-checkpoint selection: mean of T2A and A2T R@1."""
    retrieval = results["retrieval"]
    return (retrieval["t2a_R@1"] + retrieval["a2t_R@1"]) / 2
