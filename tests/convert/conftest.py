"""Checkpoints shared by the conversion tests: LAION-CLAP's names and shapes (helpers.laion), random values"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.laion import CAPTIONS, SMALL_BERT_CLAP, SMALL_CLAP, laion_state_dict, save_laion_checkpoint


@pytest.fixture(scope="session")
def caption_tokenizer(tmp_path_factory) -> Path:
    """A byte-level BPE folder with RoBERTa's special ids (pad 1) and fewer tokens than SMALL's vocabulary."""
    from modeling_supclap.data.processor import train_caption_tokenizer

    folder = tmp_path_factory.mktemp("tokenizer")
    train_caption_tokenizer(CAPTIONS * 4, vocab_size=300, model_max_length=77).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def laion_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """``unfused`` and ``fused`` LAION-style ``.pt`` files of the SMALL_CLAP model (seeds 0 and 1)."""
    folder = tmp_path_factory.mktemp("laion_checkpoints")
    return {
        "unfused": save_laion_checkpoint(laion_state_dict(**SMALL_CLAP, seed=0), folder / "unfused.pt"),
        "fused": save_laion_checkpoint(
            laion_state_dict(**SMALL_CLAP, fused=True, seed=1), folder / "fused.pt"
        ),
    }


@pytest.fixture(scope="session")
def bert_vocab(tmp_path_factory) -> Path:
    """A lower-casing WordPiece vocabulary of CAPTIONS with bert-base-uncased's special ids ([PAD] 0), as a
    bare ``vocab.txt`` folder (bert-base-uncased's own file), fewer tokens than SMALL_BERT's vocabulary."""
    folder = tmp_path_factory.mktemp("bert_vocab")
    words = dict.fromkeys(word.strip(".,").lower() for caption in CAPTIONS for word in caption.split())
    characters = sorted(set("".join(words)))
    vocab = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *words,
        *characters,
        *(f"##{c}" for c in characters),
    ]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return folder


@pytest.fixture(scope="session")
def bert_checkpoint(tmp_path_factory) -> Path:
    """An unfused HTSAT-tiny + BERT (SMALL_BERT) LAION-style ``.pt`` (seed 2)."""
    folder = tmp_path_factory.mktemp("laion_bert_checkpoint")
    return save_laion_checkpoint(laion_state_dict(**SMALL_BERT_CLAP, seed=2), folder / "bert.pt")
