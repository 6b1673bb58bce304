"""Fixtures of the demo-app tests: a tiny model of the small demo corpus, its index of the test split (made by
``supclap-embed``'s ``main`` in this process: the index is what the tests use), the app serving both (one
server for the session), and the clips people upload."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers.app_server import AppServer
from helpers.cli import SMALL_CORPUS_CLIPS, run_in_process

from modeling_supclap import SupClapConfig, SupClapModel
from modeling_supclap.cli.embed import main as embed_main
from modeling_supclap.demo import build_demo_processor


@pytest.fixture(scope="session")
def small_corpus(small_corpus_cache) -> Path:
    return small_corpus_cache / f"demo_corpus_{SMALL_CORPUS_CLIPS}"


def _tiny_model(small_corpus: Path, folder: Path, seed: int) -> Path:
    """A tiny random SupClap model folder with the small demo corpus's processor (16 kHz, 2 s window)."""
    config = SupClapConfig.tiny()
    torch.manual_seed(seed)
    SupClapModel(config).save_pretrained(folder)
    processor = build_demo_processor(
        small_corpus, config.audio_config, cache_dir=folder.parent / "processors"
    )
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def app_model(small_corpus, tmp_path_factory) -> Path:
    return _tiny_model(small_corpus, tmp_path_factory.mktemp("app_model") / "model", seed=0)


@pytest.fixture(scope="session")
def other_model(small_corpus, tmp_path_factory) -> Path:
    """Another model (other weights) with the same processor: the app's index is not its."""
    return _tiny_model(small_corpus, tmp_path_factory.mktemp("other_model") / "model", seed=1)


@pytest.fixture(scope="session")
def app_index(app_model, small_corpus, tmp_path_factory) -> Path:
    """The index of the small corpus's test split (8 clips) that supclap-embed makes with ``app_model``."""
    folder = tmp_path_factory.mktemp("app_index") / "index"
    args = [
        "--model_name_or_path",
        app_model,
        "--data",
        small_corpus,
        "--split",
        "test",
        "--output_dir",
        folder,
    ]
    embed = run_in_process(embed_main, [*map(str, args), "--dataloader_num_workers", "0"])
    assert embed.returncode == 0, embed.stdout[-2000:] + embed.stderr[-3000:]
    return folder


@pytest.fixture(scope="session")
def served(app_model, app_index, tmp_path_factory):
    """``supclap-app`` serving ``app_model`` and ``app_index`` on a free port, for the whole session."""
    args = [
        "--model_name_or_path",
        app_model,
        "--index",
        app_index,
        "--device",
        "cpu",
        "--max_audio_seconds",
        "5",
    ]
    with AppServer(list(map(str, args)), tmp_path_factory.mktemp("app_logs") / "app.log") as server:
        yield server


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
