"""Converting LAION-CLAP checkpoints without the laion_clap package: reading, mapping, config, refusals.

The checkpoints have LAION's tensor names and shapes (helpers.laion, checked against the real package by the
slow parity test) and random values, saved as LAION saves them (``module.`` keys, a numpy learning rate in
the optimizer state). What the converted model computes against LAION's own code is the parity test's job.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
import torch
from helpers.laion import (
    CAPTIONS,
    SMALL_BERT_CLAP,
    SMALL_ROBERTA,
    laion_state_dict,
    pann_state_dict,
    save_laion_checkpoint,
)
from helpers.laion import SMALL_CLAP as SMALL

from modeling_supclap.convert import ConversionError, convert_laion_clap
from modeling_supclap.convert.checkpoint_file import load_torch_checkpoint
from modeling_supclap.convert.laion_clap import (
    bert_config,
    detect_architecture,
    laion_towers,
    read_laion_state_dict,
)


@pytest.mark.parametrize("kind", ["unfused", "fused"])
def test_every_tensor_is_mapped_or_reported_and_lands_unchanged(kind, laion_checkpoints, caption_tokenizer):
    state = laion_state_dict(**SMALL, fused=kind == "fused", seed=int(kind == "fused"))
    conversion = convert_laion_clap(
        laion_checkpoints[kind], amodel="HTSAT-tiny", tmodel="roberta", tokenizer=str(caption_tokenizer)
    )
    report, target = conversion.report, conversion.model.state_dict()

    # Each source tensor is mapped or unused (with a reason), exactly once.
    sources = [source for source, _ in report.mapped] + [source for source, _ in report.unused]
    assert sorted(sources) == sorted(state)
    assert all(reason for _, reason in report.unused)
    # A mapped tensor arrives unchanged; a fused qkv as query, key, value in that order (rows of LAION's qkv).
    for source, targets in report.mapped:
        arrived = torch.cat([target[name] for name in targets]) if len(targets) > 1 else target[targets[0]]
        assert arrived.dtype == state[source].dtype and torch.equal(arrived, state[source]), source
        if source.endswith("attn.qkv.weight"):
            assert [name.rsplit(".", 2)[-2] for name in targets] == ["query", "key", "value"]
    # Each model tensor is mapped or left initialised, and only new loss parameters and a zeros buffer are.
    mapped = {name for _, targets in report.mapped for name in targets}
    left = {name for name, _ in report.left_initialised}
    assert mapped | left == set(target) and not mapped & left
    assert left - {"text_model.embeddings.token_type_ids"} and all(
        name.startswith("loss_fn.") for name in left - {"text_model.embeddings.token_type_ids"}
    )
    unused_families = {re.sub(r"\.\d+\.", ".N.", source).split(".N.")[0] for source, _ in report.unused}
    assert unused_families == {
        "audio_branch.spectrogram_extractor.stft.conv_real.weight",
        "audio_branch.spectrogram_extractor.stft.conv_imag.weight",
        "audio_branch.logmel_extractor.melW",
        "audio_branch.layers",  # the shifted-window masks
        "audio_branch.tscam_conv.weight",
        "audio_branch.tscam_conv.bias",
        "audio_branch.head.weight",
        "audio_branch.head.bias",
        "audio_transform.sequential",
        "text_transform.sequential",
    }

    config = conversion.model.config
    assert config.audio_config.depths == [2, 2, 6, 2] and config.audio_config.num_attention_heads == [
        4,
        8,
        16,
        32,
    ]
    assert config.audio_config.patch_embeds_hidden_size == 96 and config.audio_config.hidden_size == 768
    assert config.audio_config.enable_fusion == (kind == "fused") and config.projection_dim == 32
    assert config.text_config.layer_norm_eps == 1e-5  # roberta-base's, not ClapTextConfig's 1e-12
    assert (
        config.text_config.vocab_size == SMALL_ROBERTA["vocab"] and config.text_config.num_hidden_layers == 2
    )
    assert report.source["file"] == f"{kind}.pt" and len(report.source["sha256"]) == 64
    assert report.source["epoch"] == 45
    summary = report.summary()
    assert "unused: 20 source tensors" in summary and "left initialised" in summary

    processor = conversion.processor
    assert type(processor.feature_extractor).__name__ == "LaionClapFeatureExtractor"
    assert processor.feature_extractor.truncation == ("fusion" if kind == "fused" else "rand_trunc")
    assert processor.feature_extractor.frequency_min == 50 and processor.tokenizer.model_max_length == 77


def test_the_converted_model_runs_and_is_deterministic(laion_checkpoints, caption_tokenizer):
    """Two clips (one shorter, one longer than the 10 s window) and two captions through the model."""
    import numpy as np

    conversion = convert_laion_clap(
        laion_checkpoints["fused"], tmodel="roberta", tokenizer=str(caption_tokenizer), processor="laion"
    )
    clips = [
        0.1 * np.random.default_rng(i).standard_normal(n).astype(np.float32)
        for i, n in enumerate((96000, 600000))
    ]
    np.random.seed(0)
    inputs = conversion.processor(
        audio=clips, text=CAPTIONS[:2], sampling_rate=48000, return_tensors="pt", padding=True
    )
    assert inputs["is_longer"].tolist() == [[False], [True]] and inputs["input_features"].shape == (
        2,
        4,
        1001,
        64,
    )
    with torch.no_grad():
        first = conversion.model(**inputs, return_loss=True)
        second = conversion.model(**inputs, return_loss=True)
    assert torch.isfinite(first.loss) and torch.equal(first.audio_embeds, second.audio_embeds)


@pytest.fixture(scope="module")
def bert_conversion(bert_checkpoint, bert_vocab):
    return convert_laion_clap(bert_checkpoint, amodel="HTSAT-tiny", tmodel="bert", tokenizer=str(bert_vocab))


def test_a_bert_tower_maps_one_to_one_onto_transformers_bert_model(bert_conversion):
    """laion_towers gives the BERT tower under BertModel's names and the audio tower under ClapAudioModel's,
    from one call: each loads strictly into its module."""
    import copy

    from transformers import BertModel

    state = laion_state_dict(**SMALL_BERT_CLAP, seed=2)
    architecture = detect_architecture(state)
    assert architecture.tmodel == "bert" and architecture.text_type_vocab_size == 2
    towers = laion_towers(state, architecture)
    bert = BertModel(bert_config(architecture))
    missing, unexpected = bert.load_state_dict(towers.text, strict=True)
    assert not missing and not unexpected
    assert bert.config.layer_norm_eps == 1e-12 and bert.config.pad_token_id == 0
    assert torch.equal(
        bert.embeddings.token_type_embeddings.weight,
        state["text_branch.embeddings.token_type_embeddings.weight"],
    )
    audio = copy.deepcopy(bert_conversion.model.audio_model)  # a ClapAudioModel (building one is slow)
    missing, unexpected = audio.load_state_dict(towers.audio, strict=True)
    assert not missing and not unexpected
    assert set(towers.projections) == {
        f"{side}_projection.linear{i}.{p}"
        for side in ("audio", "text")
        for i in (1, 2)
        for p in ("weight", "bias")
    }
    assert set(towers.text_buffers) == {"embeddings.position_ids"}


def test_a_bert_checkpoint_converts_to_the_dual_encoder_with_every_tensor_accounted_for(bert_conversion):
    """HTSAT + BERT -> SupClapDualEncoderModel (ClapAudioModel + BertModel) with LAION's heads: every source
    tensor mapped unchanged or unused with a reason (BERT's position ids: checked against the buffer BertModel
    builds and does not save), every model tensor mapped or a new loss parameter."""
    from transformers import BertModel, ClapAudioModel

    from modeling_supclap import SupClapDualEncoderModel, SupClapDualEncoderProcessor

    state, conversion = laion_state_dict(**SMALL_BERT_CLAP, seed=2), bert_conversion
    model, report, target = conversion.model, conversion.report, conversion.model.state_dict()
    assert type(model) is SupClapDualEncoderModel
    assert type(model.audio_model) is ClapAudioModel and type(model.text_model) is BertModel

    sources = [source for source, _ in report.mapped] + [source for source, _ in report.unused]
    assert sorted(sources) == sorted(state)
    for source, targets in report.mapped:
        arrived = torch.cat([target[name] for name in targets]) if len(targets) > 1 else target[targets[0]]
        assert arrived.dtype == state[source].dtype and torch.equal(arrived, state[source]), source
    mapped = {name for _, targets in report.mapped for name in targets}
    left = {name for name, _ in report.left_initialised}
    assert mapped | left == set(target) and not mapped & left
    assert left and all(name.startswith("loss_fn.") for name in left)
    assert {
        f"{side}_projection.linear{i}.{p}"
        for side in ("audio", "text")
        for i in (1, 2)
        for p in ("weight", "bias")
    } <= mapped
    assert "text_model.pooler.dense.weight" in mapped  # LAION's encode_text takes BERT's pooler_output
    reasons = dict(report.unused)
    assert "verified equal to the one BertModel builds" in reasons["text_branch.embeddings.position_ids"]
    assert ("text_branch.embeddings.position_ids", "text_model.embeddings.position_ids") in report.verified

    config = model.config
    assert (config.projection_type, config.projection_hidden_act) == ("mlp", "relu")
    assert (config.audio_pooling, config.text_pooling) == ("pooler", "pooler") and config.projection_dim == 32
    assert config.text_config.layer_norm_eps == 1e-12 and config.text_config.pad_token_id == 0
    assert config.text_config.type_vocab_size == 2 and config.audio_config.enable_fusion is False
    assert (
        report.config["model_class"] == "SupClapDualEncoderModel"
        and report.config["projection_type"] == "mlp"
    )
    assert "HTSAT-tiny + bert, unfused -> SupClapDualEncoderModel" in report.summary()

    processor = conversion.processor
    assert type(processor) is SupClapDualEncoderProcessor
    assert type(processor.feature_extractor).__name__ == "LaionClapFeatureExtractor"
    assert (
        type(processor.tokenizer).__name__ == "BertTokenizer" and processor.tokenizer.model_max_length == 77
    )
    assert processor.tokenizer("A Car horn")["input_ids"] == processor.tokenizer("a car horn")["input_ids"]


def _laion_head(state: dict, side: str) -> torch.nn.Sequential:
    """LAION-CLAP's projection as its model.py builds it (Linear, ReLU, Linear), from the raw tensors."""
    joint_width, tower_width = state[f"{side}_projection.0.weight"].shape
    head = torch.nn.Sequential(
        torch.nn.Linear(tower_width, joint_width), torch.nn.ReLU(), torch.nn.Linear(joint_width, joint_width)
    )
    head.load_state_dict(
        {
            k.removeprefix(f"{side}_projection."): v
            for k, v in state.items()
            if k.startswith(f"{side}_projection.")
        }
    )
    return head


@pytest.mark.slow
def test_the_bert_dual_encoder_embeds_as_laions_encode_text_and_encode_audio(bert_conversion):
    """The heads, against LAION's code written out (clap_module/model.py): text, a BertModel holding the
    text_branch tensors under their own names, its pooler_output, Linear-ReLU-Linear, L2 norm; audio, the
    HTS-AT embedding (pooler_output) through the same head. The processor's BERT tokens (dynamic padding)
    give what LAION's 77-token padding gives."""
    import numpy as np
    from transformers import BertModel

    from modeling_supclap.convert.laion_clap import bert_config

    state = laion_state_dict(**SMALL_BERT_CLAP, seed=2)
    model, processor = bert_conversion.model, bert_conversion.processor
    bert = BertModel(bert_config(detect_architecture(state)), add_pooling_layer=True).eval()
    bert.load_state_dict(
        {
            k.removeprefix("text_branch."): v
            for k, v in state.items()
            if k.startswith("text_branch.") and not k.endswith("position_ids")
        },
        strict=True,
    )
    laion_tokens = processor.tokenizer(
        CAPTIONS, padding="max_length", truncation=True, max_length=77, return_tensors="pt"
    )
    clips = [0.1 * np.random.default_rng(0).standard_normal(48000).astype(np.float32)]  # one 10 s window
    inputs = processor(text=CAPTIONS, audio=clips, sampling_rate=48000)
    with torch.no_grad():
        laion_text = torch.nn.functional.normalize(
            _laion_head(state, "text")(bert(**laion_tokens).pooler_output), dim=-1
        )
        text = model.get_text_features(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            token_type_ids=inputs["token_type_ids"],
        ).pooler_output
        hts_at = model.audio_model(input_features=inputs["input_features"], is_longer=inputs["is_longer"])
        laion_audio = torch.nn.functional.normalize(_laion_head(state, "audio")(hts_at.pooler_output), dim=-1)
        audio = model.get_audio_features(
            input_features=inputs["input_features"], is_longer=inputs["is_longer"]
        ).pooler_output
    assert inputs["input_ids"].shape[1] < 77  # the processor pads to the longest caption, LAION to 77
    torch.testing.assert_close(text, laion_text, atol=1e-6, rtol=0)
    torch.testing.assert_close(audio, laion_audio, atol=1e-6, rtol=0)
    assert torch.equal(model.logit_scale_a.detach(), state["logit_scale_a"])


def test_what_the_tensors_say():
    tiny = detect_architecture(laion_state_dict(**SMALL))
    assert (tiny.amodel, tiny.tmodel, tiny.fusion, tiny.window_size, tiny.patch_size) == (
        "HTSAT-tiny",
        "roberta",
        None,
        8,
        4,
    )
    assert tiny.text_num_attention_heads == 1 and tiny.text_max_positions == SMALL_ROBERTA["positions"]
    fused = detect_architecture(laion_state_dict(**SMALL, fused=True))
    assert fused.fusion == "aff_2d" and fused.aff_block_r == 4
    base = detect_architecture(laion_state_dict(amodel="HTSAT-base", text=SMALL_ROBERTA))
    assert base.amodel == "HTSAT-base" and base.audio_hidden_size == 1024
    assert detect_architecture(pann_state_dict()).audio_family == "PANN"


def _save(tmp_path: Path, name: str, state: dict, **kwargs) -> Path:
    return save_laion_checkpoint(state, tmp_path / name, **kwargs)


def _bart(state: dict) -> dict:
    kept = {k: v for k, v in state.items() if not k.startswith("text_branch.")}
    return {
        **kept,
        "text_branch.shared.weight": torch.zeros(400, 64),
        "text_branch.encoder.embed_tokens.weight": torch.zeros(400, 64),
    }


def _iaff(state: dict) -> dict:
    return {**state, "audio_branch.patch_embed.fusion_model.local_att2.0.weight": torch.zeros(24, 96, 1, 1)}


def _other_front_end(state: dict) -> dict:
    from helpers.laion import laion_front_end

    bank = laion_front_end()["audio_branch.logmel_extractor.melW"]
    return {**state, "audio_branch.logmel_extractor.melW": bank.roll(1, dims=1)}


@pytest.mark.parametrize(
    "make, kwargs, message",
    [
        (
            lambda s: pann_state_dict(),
            {},
            r"audio tower is a PANN \(CNN14/10/6\): transformers' ClapAudioModel is HTS-AT only",
        ),
        (_bart, {}, r"text tower is BART"),
        (_iaff, {}, r"fusion type iaff_2d: transformers' ClapModel implements aff_2d only"),
        (
            lambda s: s,
            {"amodel": "HTSAT-base"},
            r"--amodel HTSAT-base does not match the tensors: they are HTSAT-tiny "
            r"\(patch embedding width 96, depths \[2, 2, 6, 2\]\)",
        ),
        (
            lambda s: s,
            {"tmodel": "bert"},
            r"--tmodel bert does not match the tensors: the text tower is roberta",
        ),
        (
            lambda s: s,
            {"fusion": "fused"},
            r"--fusion fused does not match the tensors: the checkpoint has no fusion layers",
        ),
        (
            lambda s: {**s, "audio_branch.extra.weight": torch.zeros(2)},
            {},
            r"1 tensors that no laion_clap 1.1 CLAP model has",
        ),
        (_other_front_end, {}, r"audio front end is not laion_clap's"),
        (
            lambda s: {**s, "text_branch.embeddings.position_ids": torch.zeros(1, 82, dtype=torch.long)},
            {},
            r"is not 0, 1, 2",
        ),
    ],
    ids=[
        "pann",
        "bart",
        "iaff_2d",
        "amodel",
        "tmodel",
        "fusion",
        "unknown_tensor",
        "front_end",
        "position_ids",
    ],
)
def test_a_checkpoint_that_cannot_be_converted_exactly_is_refused_with_the_reason(
    tmp_path, caption_tokenizer, make, kwargs, message
):
    path = _save(tmp_path, "ckpt.pt", make(laion_state_dict(**SMALL)))
    with pytest.raises(ConversionError, match=message):
        convert_laion_clap(path, tokenizer=str(caption_tokenizer), **kwargs)


def test_the_tokenizer_must_fit_the_text_tower(tmp_path, laion_checkpoints):
    from modeling_supclap.data.processor import train_caption_tokenizer

    big = tmp_path / "big"
    train_caption_tokenizer(
        [f"caption number {i} of many words {i * 7}" for i in range(300)], vocab_size=600
    ).save_pretrained(big)
    with pytest.raises(ConversionError, match=r"has \d+ tokens, more than the text tower's 400 embeddings"):
        convert_laion_clap(laion_checkpoints["unfused"], tokenizer=str(big))
    with pytest.raises(
        ConversionError,
        match=r"could not load the tokenizer .*pass --tokenizer with a local copy of roberta-base",
    ):
        convert_laion_clap(laion_checkpoints["unfused"], tokenizer=str(tmp_path / "nowhere"))


def test_a_bare_vocab_and_merges_folder_is_a_roberta_tokenizer(tmp_path, laion_checkpoints):
    """roberta-base's own files are vocab.json and merges.txt: a folder of just those loads; one without
    tokenizer files is named as such."""
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    bpe.train_from_iterator(CAPTIONS * 4, vocab_size=300, special_tokens=specials, show_progress=False)
    (tmp_path / "bare").mkdir()
    bpe.save_model(str(tmp_path / "bare"))
    conversion = convert_laion_clap(laion_checkpoints["unfused"], tokenizer=str(tmp_path / "bare"))
    assert conversion.processor.tokenizer("a car horn")["input_ids"][0] == 0  # <s>
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConversionError, match="holds no tokenizer files"):
        convert_laion_clap(laion_checkpoints["unfused"], tokenizer=str(tmp_path / "empty"))


def test_a_bert_tower_needs_a_bert_tokenizer(tmp_path, bert_checkpoint, caption_tokenizer):
    """bert-base-uncased's tokenizer pads with 0: a RoBERTa one is refused; the messages name BERT's files."""
    with pytest.raises(
        ConversionError, match=r"pads with id 1, bert-base-uncased with 0: it is not the tower's"
    ):
        convert_laion_clap(bert_checkpoint, tmodel="bert", tokenizer=str(caption_tokenizer))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConversionError, match=r"holds no tokenizer files \(tokenizer.json, or vocab.txt\)"):
        convert_laion_clap(bert_checkpoint, tokenizer=str(tmp_path / "empty"))
    with pytest.raises(ConversionError, match=r"pass --tokenizer with a local copy of bert-base-uncased's"):
        convert_laion_clap(bert_checkpoint, tokenizer=str(tmp_path / "nowhere"))


def test_a_safetensors_header_is_recognised_before_the_pickle_opcode(tmp_path):
    """A header length whose low byte is 0x80 starts like a pickle: the header says safetensors first."""
    import struct

    from modeling_supclap.convert.checkpoint_file import file_kind

    header = b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'.ljust(0x180)
    (tmp_path / "model.pt").write_bytes(struct.pack("<Q", len(header)) + header + bytes(4))
    assert file_kind(tmp_path / "model.pt") == "safetensors"
    with pytest.raises(ConversionError, match="is a safetensors file"):
        read_laion_state_dict(tmp_path / "model.pt")


def test_files_that_are_not_laion_checkpoints_get_one_message_each(tmp_path, laion_checkpoints):
    from safetensors.torch import save_file

    state = laion_state_dict(**SMALL)
    save_file(
        {"text_model.embeddings.word_embeddings.weight": torch.zeros(4, 4)}, tmp_path / "model.safetensors"
    )
    data = laion_checkpoints["unfused"].read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 3])
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "text.pt").write_text("not a checkpoint\n")
    torch.save(
        {"state_dict": {"w": torch.zeros(1)}, "args": argparse.Namespace(lr=1e-4)}, tmp_path / "namespace.pt"
    )
    torch.save(
        {"text_model.embeddings.word_embeddings.weight": torch.zeros(4, 4), "logit_scale_a": torch.zeros(())},
        tmp_path / "clap.pt",
    )
    torch.save({"weight": torch.zeros(3)}, tmp_path / "tensors.pt")
    mixed = {("module." + k if i % 2 else k): v for i, (k, v) in enumerate(list(state.items())[:4])}
    torch.save({"state_dict": mixed}, tmp_path / "mixed.pt")
    torch.save({"epoch": 1, "optimizer": {}}, tmp_path / "no_state_dict.pt")
    expected = {
        "model.safetensors": r"is a safetensors file, not a LAION-CLAP \.pt checkpoint: .*as --model_name",
        "truncated.pt": r"is truncated or corrupt .*download it again",
        "empty.pt": r"is empty \(0 bytes\)",
        "text.pt": r"is not a torch checkpoint",
        "namespace.pt": r"holds a Python object other than tensors and numbers \(argparse.Namespace\)",
        "clap.pt": r"holds a transformers ClapModel/SupClapModel state dict, not a LAION-CLAP one",
        "tensors.pt": r"is not a LAION-CLAP checkpoint: it has no audio_branch",
        "mixed.pt": r"mixes 'module.'-prefixed and plain keys",
        "no_state_dict.pt": r"holds no model state dict \(top level: \['epoch', 'optimizer'\]\)",
    }
    for name, message in expected.items():
        with pytest.raises(ConversionError, match=message):
            read_laion_state_dict(tmp_path / name)
    with pytest.raises(FileNotFoundError, match="no such checkpoint file"):
        read_laion_state_dict(tmp_path / "missing.pt")


def test_a_laion_training_checkpoint_loads_without_running_code(laion_checkpoints):
    """weights_only=True refuses LAION's files as they are (the numpy learning rate); the reader allows
    exactly that scalar, and still refuses any other global."""
    with pytest.raises(Exception, match="numpy"):
        torch.load(laion_checkpoints["unfused"], weights_only=True)
    loaded = load_torch_checkpoint(laion_checkpoints["unfused"])
    assert loaded["epoch"] == 45 and isinstance(loaded["optimizer"]["param_groups"][0]["lr"], float)


def test_a_plain_state_dict_without_position_ids_converts(tmp_path, caption_tokenizer):
    """A non-DDP run saved with transformers >= 4.31: no ``module.`` prefix, no position-id buffer (LAION's
    own loader raises KeyError on such a file)."""
    state = laion_state_dict(**SMALL, position_ids=False)
    torch.save({"epoch": 3, "state_dict": state}, tmp_path / "plain.pt")
    conversion = convert_laion_clap(tmp_path / "plain.pt", tokenizer=str(caption_tokenizer))
    assert "text_model.embeddings.position_ids" in {name for name, _ in conversion.report.left_initialised}
