"""A separable toy audio-caption set (three sound classes) and its processor, for fast tests."""

from __future__ import annotations

import numpy as np
from transformers import ClapProcessor

from modeling_supclap import SupClapConfig
from modeling_supclap.data import build_processor_for_audio_config, train_caption_tokenizer

SAMPLING_RATE = 16000
TOY_LABELS = ("high beep", "low hum", "white noise")


def toy_clip(label: str, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(1.5 * SAMPLING_RATE)) / SAMPLING_RATE
    if label == "high beep":
        audio = np.sin(2 * np.pi * rng.uniform(2500, 3500) * t)
    elif label == "low hum":
        audio = np.sin(2 * np.pi * rng.uniform(80, 140) * t) + 0.5 * np.sin(
            2 * np.pi * rng.uniform(200, 260) * t
        )
    else:
        audio = rng.standard_normal(t.shape)
    audio = audio * rng.uniform(0.2, 0.6) + 0.01 * rng.standard_normal(t.shape)
    return audio.astype(np.float32)


def toy_rows(num_clips: int, seed: int = 0) -> list[dict]:
    """Rows ``{"audio": {"array", "sampling_rate"}, "captions": [...], "label": ...}`` cycling the classes."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(num_clips):
        label = TOY_LABELS[i % len(TOY_LABELS)]
        rows.append(
            {
                "audio": {"array": toy_clip(label, rng), "sampling_rate": SAMPLING_RATE},
                "captions": [f"This is a sound of {label}.", f"a {label}"],
                "label": label,
            }
        )
    return rows


def toy_processor(config: SupClapConfig) -> ClapProcessor:
    captions = [f"This is a sound of {label}." for label in TOY_LABELS] + [
        f"a {label}" for label in TOY_LABELS
    ]
    tokenizer = train_caption_tokenizer(captions * 20, vocab_size=300)
    return build_processor_for_audio_config(tokenizer, config.audio_config, sampling_rate=SAMPLING_RATE)
