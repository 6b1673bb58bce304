"""Fixtures of the demo-app tests: a tiny model of the small demo corpus, and the clips people upload."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers.cli import SMALL_CORPUS_CLIPS

from modeling_supclap import SupClapConfig, SupClapModel
from modeling_supclap.demo import build_demo_processor


@pytest.fixture(scope="session")
def small_corpus(small_corpus_cache) -> Path:
    return small_corpus_cache / f"demo_corpus_{SMALL_CORPUS_CLIPS}"


@pytest.fixture(scope="session")
def app_model(small_corpus, tmp_path_factory) -> Path:
    """A tiny random SupClap model folder with the small demo corpus's processor (16 kHz, 2 s window)."""
    folder = tmp_path_factory.mktemp("app_model")
    config = SupClapConfig.tiny()
    torch.manual_seed(0)
    SupClapModel(config).save_pretrained(folder)
    build_demo_processor(
        small_corpus, config.audio_config, cache_dir=folder / "processor_cache"
    ).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def uploads(small_corpus, tmp_path_factory) -> dict[str, Path]:
    """What people upload: a test clip of the corpus, a ten-minute stereo recording at 8 kHz, a text file, a
    text file named ``.wav``, and an empty WAV."""
    folder = tmp_path_factory.mktemp("uploads")
    clip = sorted((small_corpus / "test").glob("*.wav"))[0]
    files = {"clip": folder / clip.name}
    files["clip"].write_bytes(clip.read_bytes())
    rng = np.random.default_rng(0)
    ten_minutes = 0.1 * rng.standard_normal((600 * 8000, 2)).astype(np.float32)
    files["ten_minutes"] = folder / "ten_minutes.wav"
    sf.write(files["ten_minutes"], ten_minutes, 8000, subtype="PCM_16")
    files["text"] = folder / "notes.txt"
    files["text"].write_text("not a sound\n")
    files["text_named_wav"] = folder / "notes.wav"
    files["text_named_wav"].write_text("not a sound either\n")
    files["empty"] = folder / "empty.wav"
    sf.write(files["empty"], np.zeros((0,), dtype=np.float32), 16000)
    return files
