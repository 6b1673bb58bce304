"""Where clips and captions become embeddings: records in, L2-normalised embeddings out (one audio row per
clip, one text row per caption).

Every score the project reports starts here (``scoring.evaluate_records``, training validation, the
zero-shot suites), and so does every index ``supclap-embed`` writes, so they all embed the same way: audio
decoded in DataLoader workers, features by ``data/features.py``'s batched path, clips longer than the
model's window embedded as the long-audio policy says (``data/long_audio.py``; default: the mean of windows
covering the whole clip).

A clip's embedding depends on nothing but the clip: windows go through the audio tower in chunks of a
fixed shape (``window_batch_size`` rows, the last chunk padded by repeating a row), because CPU kernels
choose their blocking by batch size and a window forwarded among 7 others differs in its last bits from
the same window among 31. So batch size, worker count and neighbours change no bit (tests/evaluation/
test_long_audio.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import ProcessorMixin

from ..data.dataset import AudioTextDataset
from ..data.features import audio_model_inputs, finish_on_device
from ..data.long_audio import LongAudioPolicy, audio_window_samples
from ..data.records import AudioTextRecord
from ..data.workers import ignore_stop_signals

# Rows per forward of the audio tower (see the module docstring: a fixed shape makes embeddings independent
# of their neighbours). 32 windows of a 10 s CLAP model are a few hundred MB of activations.
DEFAULT_WINDOW_BATCH_SIZE = 32


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


def _to_model(inputs: dict[str, torch.Tensor], device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """Inputs on the model's device; floating ones in its dtype."""
    return {
        name: value.to(device=device, dtype=dtype) if value.is_floating_point() else value.to(device)
        for name, value in inputs.items()
    }


def _padded_to(inputs: dict[str, torch.Tensor], rows: int) -> dict[str, torch.Tensor]:
    """Each input grown to ``rows`` rows by repeating its first row (the padding rows' outputs are
    dropped)."""
    missing = rows - next(iter(inputs.values())).shape[0]
    if missing <= 0:
        return inputs
    return {
        name: torch.cat([value, value[:1].expand(missing, *value.shape[1:])])
        for name, value in inputs.items()
    }


@dataclass
class AudioEmbeddings:
    """Embeddings of clips: ``embeds`` (num_clips, d) L2-normalised; ``num_windows``: windows per clip."""

    embeds: torch.Tensor
    num_windows: list[int]


@torch.no_grad()
def embed_window_inputs(
    model: torch.nn.Module, processor: ProcessorMixin, inputs: dict[str, torch.Tensor], window_batch_size: int
) -> torch.Tensor:
    """L2-normalised embeddings ``(W, d)`` (float32, CPU) of ``W`` windows' model inputs
    (``audio_model_inputs`` rows), forwarded ``window_batch_size`` rows at a time, the last chunk padded
    to that shape (module docstring); CLAP waveforms left for the device get their log-mel there."""
    device, dtype = _model_device(model), next(model.parameters()).dtype
    total = next(iter(inputs.values())).shape[0]
    chunks = []
    for start in range(0, total, window_batch_size):
        chunk = {name: value[start : start + window_batch_size] for name, value in inputs.items()}
        chunk = finish_on_device(processor, _to_model(_padded_to(chunk, window_batch_size), device, dtype))
        rows = min(window_batch_size, total - start)
        chunks.append(model.get_audio_features(**chunk).pooler_output[:rows].float().cpu())
    if not chunks:
        return torch.zeros(0, model.config.projection_dim)
    return torch.nn.functional.normalize(torch.cat(chunks), dim=-1)


def pool_windows(window_embeds: torch.Tensor, num_windows: Sequence[int]) -> torch.Tensor:
    """One embedding per clip: the L2-normalised mean of its consecutive ``num_windows`` rows."""
    if not num_windows:
        return window_embeds.new_zeros(0, window_embeds.shape[1])
    pooled = [
        torch.nn.functional.normalize(rows.mean(dim=0), dim=-1)
        for rows in torch.split(window_embeds, list(num_windows))
    ]
    return torch.stack(pooled)


@torch.no_grad()
def encode_audio_windows(
    model: torch.nn.Module,
    processor: ProcessorMixin,
    audios: Sequence[np.ndarray],
    long_audio: LongAudioPolicy | str = "windows",
    seed: int = 0,
    window_batch_size: int = DEFAULT_WINDOW_BATCH_SIZE,
    log_mel_on_device: bool = False,
) -> AudioEmbeddings:
    """Embed mono clips at the processor's rate (either model family) as the long-audio policy says.

    Every clip becomes one or more windows (``LongAudioPolicy.windows``); windows are forwarded
    ``window_batch_size`` at a time in a fixed shape (:func:`embed_window_inputs`), or one at a time where
    the extractor takes any length (its inputs are padded to the longest clip of a batch); a clip's
    embedding is the L2-normalised mean of its windows' L2-normalised embeddings (:func:`pool_windows`).
    ``random`` hands whole clips to the extractor, which crops long ones with the global numpy RNG, seeded
    here with ``seed`` (and restored). ``log_mel_on_device``: CLAP's log-mel computed on the model's device
    (``data.features.finish_on_device``).
    """
    policy = LongAudioPolicy(long_audio) if isinstance(long_audio, str) else long_audio
    if window_batch_size < 1:
        raise ValueError(f"window_batch_size must be >= 1, got {window_batch_size}")
    extractor = processor.feature_extractor
    windows, num_windows = [], []
    for audio in audios:
        pieces = policy.windows(np.asarray(audio), extractor)
        windows.extend(pieces)
        num_windows.append(len(pieces))
    rows = window_batch_size if audio_window_samples(extractor) is not None else 1
    chunks, was_training = [], model.training
    model.eval()  # dropout would make the same clip embed differently on every call
    state = np.random.get_state()
    np.random.seed(seed)  # ClapFeatureExtractor crops with the global numpy RNG
    try:
        for start in range(0, len(windows), rows):
            inputs = audio_model_inputs(processor, windows[start : start + rows], log_mel_on_device)
            chunks.append(embed_window_inputs(model, processor, inputs, rows))
    finally:
        np.random.set_state(state)
        model.train(was_training)
    if not chunks:
        return AudioEmbeddings(torch.zeros(0, model.config.projection_dim), [])
    return AudioEmbeddings(pool_windows(torch.cat(chunks), num_windows), num_windows)


def encode_audio(
    model: torch.nn.Module,
    processor: ProcessorMixin,
    audios: Sequence[np.ndarray],
    seed: int = 0,
    long_audio: LongAudioPolicy | str = "windows",
    window_batch_size: int = DEFAULT_WINDOW_BATCH_SIZE,
) -> torch.Tensor:
    """L2-normalised audio embeddings ``(len(audios), d)`` of mono clips at the processor's rate:
    :func:`encode_audio_windows` without the window counts."""
    return encode_audio_windows(model, processor, audios, long_audio, seed, window_batch_size).embeds


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
    long_audio: LongAudioPolicy | str = "windows",
    window_batch_size: int = DEFAULT_WINDOW_BATCH_SIZE,
) -> EncodedCorpus:
    """Encode every clip once and every caption of every clip (audio decoded in DataLoader workers).

    Clips longer than the model's window are embedded as ``long_audio`` says (:func:`encode_audio_windows`;
    ``random`` crops of batch ``i`` are seeded with ``seed + i``, as evaluation always did).
    """
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
        audio = [item["audio"] for item in good]
        audio_chunks.append(
            encode_audio(model, processor, audio, seed + batch_index, long_audio, window_batch_size)
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
