"""Embeddings of audio and text from a model and its processor, for people: any audio in, one row per clip.

:func:`embed_audio` takes file paths, file bytes or arrays at any sampling rate (decoded with soundfile and
resampled to the processor's rate, as training and evaluation do) and embeds clips longer than the model's
window as the long-audio policy says (default ``windows``: the whole clip, deterministically). It is the
same code that ``supclap-eval`` and ``supclap-embed`` run, so an embedding computed here equals the row of
that clip in an index (with the index's ``window_batch_size``)::

    import modeling_supclap
    from transformers import AutoModel, AutoProcessor
    from modeling_supclap.inference import embed_audio, embed_text

    model, processor = AutoModel.from_pretrained(path), AutoProcessor.from_pretrained(path)
    audio = embed_audio(model, processor, ["dog.wav", "rain.flac"])  # (2, d), L2-normalised
    text = embed_text(model, processor, ["a dog barks"])
    print(text @ audio.T)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..data.audio import decode_audio
from ..data.long_audio import LongAudioPolicy
from ..evaluation.encode import DEFAULT_WINDOW_BATCH_SIZE, encode_audio_windows, encode_texts

__all__ = ["AudioInput", "embed_audio", "embed_text"]

# One clip: a path, the bytes of an audio file, or a waveform (1-D mono or 2-D with channels).
AudioInput = str | os.PathLike | bytes | np.ndarray


def _is_one_clip(audio: Any) -> bool:
    if isinstance(audio, np.ndarray):
        return audio.ndim == 1 or (audio.ndim == 2 and min(audio.shape) <= 8)
    return isinstance(audio, (str, os.PathLike, bytes, bytearray))


def _decoded(audio: AudioInput, sampling_rate: int | None, target_rate: int, where: str) -> np.ndarray:
    if isinstance(audio, np.ndarray):
        if sampling_rate is None:
            raise ValueError(
                f"{where}: a waveform needs its sampling_rate (embed_audio(..., sampling_rate=...))"
            )
        return decode_audio({"array": audio, "sampling_rate": sampling_rate}, target_rate, where)
    return decode_audio(audio, target_rate, where)


def embed_audio(
    model: torch.nn.Module,
    processor: Any,
    audio: AudioInput | Sequence[AudioInput],
    sampling_rate: int | None = None,
    long_audio: LongAudioPolicy | str = "windows",
    window_hop_seconds: float | None = None,
    window_batch_size: int = DEFAULT_WINDOW_BATCH_SIZE,
    seed: int = 0,
) -> torch.Tensor:
    """L2-normalised embeddings ``(num_clips, d)`` (float32, on the CPU) of one clip or a list of clips.

    ``audio``: a path, file bytes or a waveform, or a list of them; waveforms need ``sampling_rate`` (files
    carry theirs) and are resampled to the processor's. ``long_audio``: ``windows`` (default; every
    ``window_hop_seconds``, default one window), ``first`` or ``random`` (seeded with ``seed``); see
    ``modeling_supclap/data/long_audio.py``. A missing, corrupt or non-audio input raises
    ``BadSampleError`` (a ``ValueError``) naming it.
    """
    clips = [audio] if _is_one_clip(audio) else list(audio)
    if not clips:
        raise ValueError("embed_audio got no audio")
    policy = (
        long_audio
        if isinstance(long_audio, LongAudioPolicy)
        else LongAudioPolicy(long_audio, window_hop_seconds)
    )
    rate = int(processor.feature_extractor.sampling_rate)
    waveforms = [
        _decoded(
            clip, sampling_rate, rate, str(clip) if isinstance(clip, (str, os.PathLike)) else f"audio {index}"
        )
        for index, clip in enumerate(clips)
    ]
    return encode_audio_windows(model, processor, waveforms, policy, seed, window_batch_size).embeds


def embed_text(
    model: torch.nn.Module, processor: Any, text: str | Sequence[str], max_text_length: int = 64
) -> torch.Tensor:
    """L2-normalised embeddings ``(num_texts, d)`` (float32, on the CPU) of one text or a list of texts."""
    texts = [text] if isinstance(text, str) else list(text)
    if not texts or any(not isinstance(t, str) or not t.strip() for t in texts):
        raise ValueError(f"embed_text needs non-empty strings, got {text!r}")
    was_training = model.training
    model.eval()
    try:
        embeds = encode_texts(model, processor, texts, max_text_length=max_text_length)
    finally:
        model.train(was_training)
    return torch.nn.functional.normalize(embeds, dim=-1)
