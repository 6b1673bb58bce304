"""Where evaluation encodes: records in, L2-normalised embeddings out (one audio row per clip, one text row
per caption).

Every score the project reports starts here (``scoring.evaluate_records``, training validation, the
zero-shot suites), so they all embed the same way: audio decoded in DataLoader workers, features by
``data/features.py``'s batched path, seeded crops of clips longer than the extractor's window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import ProcessorMixin

from ..data.dataset import AudioTextDataset
from ..data.features import audio_model_inputs
from ..data.records import AudioTextRecord
from ..data.workers import ignore_stop_signals


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
    processor: ProcessorMixin,
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
    model: torch.nn.Module, processor: ProcessorMixin, audios: Sequence[np.ndarray], seed: int = 0
) -> torch.Tensor:
    """L2-normalised audio embeddings of one batch (either model family); long clips' crops are seeded."""
    state = np.random.get_state()
    np.random.seed(seed)  # ClapFeatureExtractor crops with the global numpy RNG
    try:
        inputs = audio_model_inputs(processor, audios)
    finally:
        np.random.set_state(state)
    device, dtype = _model_device(model), next(model.parameters()).dtype
    inputs = {
        name: value.to(device=device, dtype=dtype) if value.is_floating_point() else value.to(device)
        for name, value in inputs.items()
    }
    return model.get_audio_features(**inputs).pooler_output.float().cpu()


def _collate_items(items: list[dict[str, Any] | None]) -> list[dict[str, Any] | None]:
    return items


@torch.no_grad()
def encode_records(
    model: torch.nn.Module,
    processor: ProcessorMixin,
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
