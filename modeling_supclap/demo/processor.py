"""The demo corpus's processor: a tokenizer trained on its training captions, a feature extractor for the
model's audio tower at the corpus's rate and clip length; built once per corpus and settings, cached."""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

from transformers import ClapAudioConfig, ClapProcessor

from ..data.processor import (
    PROCESSOR_CACHE_VERSION,
    build_processor_for_audio_config,
    is_saved_processor,
    save_processor_atomically,
    train_caption_tokenizer,
)
from ..data.readers import load_records
from .corpus import read_corpus_info

__all__ = ["build_demo_processor", "demo_audio_settings"]


def _corpus_info(corpus_dir: Path) -> dict:
    info = read_corpus_info(corpus_dir)
    if info is None:
        raise ValueError(f"{corpus_dir} is not a complete demo corpus (no readable corpus_info.json)")
    return info


def build_demo_processor(
    corpus_dir: str | os.PathLike,
    audio_config: ClapAudioConfig,
    cache_dir: str | os.PathLike | None = None,
    vocab_size: int = 1000,
    model_max_length: int = 64,
    max_length_s: float | None = None,
) -> ClapProcessor:
    """Processor for the demo corpus (see ``corpus.build_demo_corpus``), cached on disk.

    The tokenizer is trained on the captions of the corpus' train split (validation/test captions are
    not looked at), the feature extractor fits ``audio_config``; sampling rate and (by default) maximum
    length come from the corpus' ``corpus_info.json``. The processor is saved with ``save_pretrained``
    under ``cache_dir`` (default ``corpus_dir/processors``) in a subfolder keyed by everything it depends
    on, and later calls load it with ``ClapProcessor.from_pretrained``.
    """
    corpus_dir = Path(corpus_dir)
    info = _corpus_info(corpus_dir)
    sampling_rate = int(info["sampling_rate"])
    if max_length_s is None:
        max_length_s = max(1, math.ceil(float(info["clip_seconds"])))
    key_data = {
        "cache_version": PROCESSOR_CACHE_VERSION,
        "corpus": {k: info.get(k) for k in ("version", "num_clips", "seed", "sampling_rate", "clip_seconds")},
        "spec_size": audio_config.spec_size,
        "num_mel_bins": audio_config.num_mel_bins,
        "enable_fusion": bool(getattr(audio_config, "enable_fusion", False)),
        "vocab_size": vocab_size,
        "model_max_length": model_max_length,
        "max_length_s": max_length_s,
    }
    if info.get("languages"):  # a multilingual corpus (an English one's key predates languages)
        key_data["corpus"]["languages"] = info["languages"]
    key = hashlib.sha256(json.dumps(key_data, sort_keys=True).encode()).hexdigest()[:16]
    target = Path(cache_dir if cache_dir is not None else corpus_dir / "processors") / f"processor-{key}"
    if is_saved_processor(target):
        return ClapProcessor.from_pretrained(target)

    records = load_records(str(corpus_dir), split="train")
    tokenizer = train_caption_tokenizer(
        (c for r in records for c in r.captions), vocab_size=vocab_size, model_max_length=model_max_length
    )
    processor = build_processor_for_audio_config(
        tokenizer, audio_config, sampling_rate=sampling_rate, max_length_s=max_length_s
    )
    save_processor_atomically(processor, target)
    return processor


def demo_audio_settings(corpus_dir: str | os.PathLike) -> tuple[int, int]:
    """(sampling rate, clip length in whole seconds, rounded up) of the demo corpus in ``corpus_dir``."""
    info = _corpus_info(Path(corpus_dir))
    return int(info["sampling_rate"]), max(1, math.ceil(float(info["clip_seconds"])))
