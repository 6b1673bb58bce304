"""Models, processors and sound folders for the embedding and search tests: tiny, random, saved offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from helpers.toy import SAMPLING_RATE, TOY_LABELS, toy_clip, toy_processor
from modeling_supclap import SupClapConfig, SupClapModel

CAPTIONS = [f"a {label}" for label in TOY_LABELS] + [f"This is a sound of {label}." for label in TOY_LABELS]


def tiny_clap(seed: int = 0) -> tuple[SupClapModel, object]:
    """A random tiny ``SupClapModel`` (2 s windows at 16 kHz) in eval mode, and its processor."""
    config = SupClapConfig.tiny()
    torch.manual_seed(seed)
    return SupClapModel(config).eval(), toy_processor(config)


def tiny_dual_encoder(folder: Path, seed: int = 0) -> tuple[torch.nn.Module, object]:
    """A random ``SupClapDualEncoderModel`` (an AST tower of ~1 s windows and a RoBERTa tower) in eval
    mode, and its processor; the towers' checkpoints are written under ``folder``."""
    from transformers import AutoFeatureExtractor, AutoTokenizer

    from helpers.towers import audio_checkpoint, text_checkpoint
    from modeling_supclap import SupClapDualEncoderModel, SupClapDualEncoderProcessor

    audio = audio_checkpoint("ast", folder / "ast", seed)
    text = text_checkpoint("roberta", folder / "roberta", CAPTIONS * 5, seed)
    torch.manual_seed(seed)
    model = SupClapDualEncoderModel.from_audio_text_pretrained(str(audio), str(text), projection_dim=16)
    processor = SupClapDualEncoderProcessor(
        AutoFeatureExtractor.from_pretrained(audio), AutoTokenizer.from_pretrained(text)
    )
    return model.eval(), processor


def save_model(model: torch.nn.Module, processor, folder: Path) -> Path:
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def clips(seconds: list[float], seed: int = 0) -> list[np.ndarray]:
    """Toy sounds of these lengths at 16 kHz (classes cycling), float32 mono."""
    rng = np.random.default_rng(seed)
    out = []
    for index, length in enumerate(seconds):
        sound = np.concatenate([toy_clip(TOY_LABELS[index % 3], rng) for _ in range(int(length / 1.5) + 1)])
        out.append(sound[: max(1, int(length * SAMPLING_RATE))])
    return out


def sound_folder(folder: Path, count: int = 24, seed: int = 0, corrupt: bool = True) -> Path:
    """A plain folder of WAVs and FLACs (no metadata) of 0.7 to 7.4 s at 8, 16 and 22.05 kHz, one in a
    subfolder, plus (``corrupt``) a ``broken.wav`` that is not audio and a ``notes.txt``."""
    from scipy.signal import resample_poly

    rng = np.random.default_rng(seed)
    lengths = rng.uniform(0.7, 7.4, count).round(2).tolist()
    (folder / "more").mkdir(parents=True, exist_ok=True)
    for index, sound in enumerate(clips(lengths, seed)):
        rate = (16000, 8000, 22050)[index % 3]
        if rate != SAMPLING_RATE:
            sound = resample_poly(sound, rate, SAMPLING_RATE).astype(np.float32)
        name = f"{TOY_LABELS[index % 3].replace(' ', '_')}_{index:03d}.{'flac' if index % 4 == 0 else 'wav'}"
        sf.write(folder / ("more" if index == 5 else "") / name, sound, rate)
    if corrupt:
        (folder / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk that is not audio")
        (folder / "notes.txt").write_text("not audio, not listed")
    return folder
