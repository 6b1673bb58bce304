"""Session set-up (offline environment) and shared fixtures; helpers are in the ``helpers`` package."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers.cli import SMALL_CORPUS_CLIPS

# Nothing in the tests may reach the Hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def small_corpus_cache(tmp_path_factory) -> Path:
    """A ``--cache_dir`` holding an 80-clip demo corpus (64/8/8), built once per session."""
    from modeling_supclap.data import build_demo_corpus

    cache = tmp_path_factory.mktemp("supclap_cache")
    build_demo_corpus(cache / f"demo_corpus_{SMALL_CORPUS_CLIPS}", num_clips=SMALL_CORPUS_CLIPS)
    return cache
