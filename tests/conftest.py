"""Session set-up (offline environment), the suite's time limits, and shared fixtures.

Helpers are in the ``helpers`` package; the time limits (a per-test limit, a watchdog behind it, and the
clean-up of the processes a test started) are the plugin ``helpers.time_limits``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers.cli import SMALL_CORPUS_CLIPS

pytest_plugins = ["helpers.time_limits"]

# Nothing in the tests may reach the Hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One intra-op thread per test process (the subprocesses get the same from helpers.cli.run_script): with
# `-n 2` on 2 cores, torch's default of one thread per core gives 4 OpenMP threads that spin waiting on
# each other; a Trainer test took 3.4x longer that way (68 s against 23 s on the loaded 2-core machine).
# Set before torch is imported, so torch reads it; a value given by the caller is kept.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def small_corpus_cache(tmp_path_factory) -> Path:
    """A ``--cache_dir`` holding an 80-clip demo corpus (64/8/8), built once per session."""
    from modeling_supclap.demo import build_demo_corpus

    cache = tmp_path_factory.mktemp("supclap_cache")
    build_demo_corpus(cache / f"demo_corpus_{SMALL_CORPUS_CLIPS}", num_clips=SMALL_CORPUS_CLIPS)
    return cache


@pytest.fixture(scope="session")
def tower_checkpoints(small_corpus_cache, tmp_path_factory) -> dict[str, Path]:
    """A tiny random checkpoint of every tower family (``helpers/towers.py``), built once per session: its
    folder by family name (audio: ast, whisper, wav2vec2, hubert, wavlm, clap; text: bert, roberta,
    xlm-roberta, modernbert, sonar, t5), tokenizers made from the small demo corpus's captions."""
    from helpers.towers import AUDIO, TEXT, audio_checkpoint, text_checkpoint

    from modeling_supclap.data import load_records

    root = tmp_path_factory.mktemp("towers")
    corpus = small_corpus_cache / f"demo_corpus_{SMALL_CORPUS_CLIPS}"
    captions = [c for record in load_records(str(corpus), split="train") for c in record.captions]
    folders = {family: audio_checkpoint(family, root / family) for family in AUDIO}
    folders.update({family: text_checkpoint(family, root / family, captions) for family in TEXT})
    return folders
