"""Pretrained towers: a RoBERTa-family text encoder and a CLAP audio tower, tiny checkpoints the test
saves, through the real command line and, for XLM-R, against a direct forward of the tower."""

from __future__ import annotations

import pytest
import torch
from helpers.cli import SMALL_CORPUS_CLIPS, run_in_process, tiny_train_args
from safetensors.torch import load_file
from transformers import ClapConfig, ClapModel, RobertaConfig, RobertaModel, XLMRobertaConfig, XLMRobertaModel

from modeling_supclap.cli.train import main as train_main
from modeling_supclap.data import load_records, train_caption_tokenizer
from modeling_supclap.demo import build_demo_processor
from modeling_supclap.model.configuration_supclap import PRESETS
from modeling_supclap.towers import model_with_pretrained_towers

TEXT = dict(
    vocab_size=1000, hidden_size=48, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
    max_position_embeddings=66, pad_token_id=1, bos_token_id=0, eos_token_id=2,
)  # fmt: skip


@pytest.fixture(scope="module")
def checkpoints(small_corpus_cache, tmp_path_factory):
    root = tmp_path_factory.mktemp("towers")
    corpus = small_corpus_cache / f"demo_corpus_{SMALL_CORPUS_CLIPS}"
    captions = [c for r in load_records(str(corpus), split="train") for c in r.captions]
    tokenizer = train_caption_tokenizer(captions, vocab_size=1000)
    folders = {}
    for name, config_class, model_class in (
        ("roberta", RobertaConfig, RobertaModel),
        ("xlmr", XLMRobertaConfig, XLMRobertaModel),
    ):
        torch.manual_seed(1)
        model_class(config_class(**TEXT)).save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
        folders[name] = root / name
    torch.manual_seed(2)
    clap = ClapModel(ClapConfig(**{**PRESETS["tiny"](), "projection_dim": 24}))
    clap.save_pretrained(root / "clap")
    build_demo_processor(corpus, clap.config.audio_config, cache_dir=root / "proc").save_pretrained(
        root / "clap"
    )
    folders["clap"] = root / "clap"
    return folders


@pytest.mark.slow
def test_training_starts_from_a_roberta_text_tower_and_a_clap_audio_tower(
    checkpoints, small_corpus_cache, tmp_path
):
    out = tmp_path / "run"
    args = tiny_train_args(small_corpus_cache, out, "--max_steps", "1", "--learning_rate", "0")
    args += ["--text_model_name_or_path", str(checkpoints["roberta"])]
    args += ["--audio_model_name_or_path", str(checkpoints["clap"])]
    result = run_in_process(train_main, args)  # the saved weights and our log lines are what is checked
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"text tower from {checkpoints['roberta']}: " in result.stderr
    assert f"audio tower from {checkpoints['clap']}: " in result.stderr
    assert (
        "unused" not in result.stderr and "not in the checkpoint" not in result.stderr
    )  # all mapped, none dropped
    saved = load_file(out / "model.safetensors")
    roberta = load_file(checkpoints["roberta"] / "model.safetensors")
    clap = load_file(checkpoints["clap"] / "model.safetensors")
    for name, tensor in roberta.items():  # lr 0: the weights are the checkpoints', unchanged
        if "position_ids" not in name:
            assert torch.equal(saved[f"text_model.{name}"], tensor), name
    for name, tensor in clap.items():
        if name.startswith(("audio_model.", "audio_projection.")) and not name.endswith(
            "num_batches_tracked"
        ):
            assert torch.equal(saved[name], tensor) or "batch_norm.running" in name, name
    config = (out / "config.json").read_text()
    assert '"hidden_size": 48' in config and '"projection_dim": 24' in config


def test_xlmr_weights_load_into_the_text_tower_and_embed_like_xlmr(checkpoints):
    towers = model_with_pretrained_towers("tiny", text_model=str(checkpoints["xlmr"]))
    report = towers.reports["text"]
    xlmr = XLMRobertaModel.from_pretrained(checkpoints["xlmr"]).eval()
    weights = {k for k in xlmr.state_dict() if "position_ids" not in k}
    assert {name.removeprefix("text_model.") for name in report.mapped} >= weights
    assert report.unused == [] and report.not_filled == []
    model = towers.model.eval()
    ids = torch.randint(3, 1000, (3, 11), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        ours = model.text_model(input_ids=ids, attention_mask=mask).last_hidden_state
        theirs = xlmr(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_text_pooling_follows_the_text_tower(checkpoints):
    """A text tower from scratch pools as its preset does (small: mean); a pretrained one keeps its pooler."""
    new_text = model_with_pretrained_towers("small", audio_model=str(checkpoints["clap"]))
    assert new_text.model.config.text_pooling == "mean"
    pretrained_text = model_with_pretrained_towers("small", text_model=str(checkpoints["roberta"]))
    assert pretrained_text.model.config.text_pooling == "pooler"
    assert pretrained_text.reports["text"].unused == []  # its pooler's weights are used
    roberta = str(checkpoints["roberta"])
    chosen = model_with_pretrained_towers("small", text_model=roberta, text_pooling="mean")
    assert chosen.model.config.text_pooling == "mean"


def test_a_checkpoint_that_is_not_a_text_encoder_is_a_clear_error(checkpoints):
    with pytest.raises(ValueError, match="is not a RoBERTa-family encoder"):
        model_with_pretrained_towers("tiny", text_model=str(checkpoints["clap"]))
    with pytest.raises(ValueError, match="is not a CLAP checkpoint"):
        model_with_pretrained_towers("tiny", audio_model=str(checkpoints["roberta"]))
