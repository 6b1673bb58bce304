"""LAION-CLAP checkpoints without the ``laion_clap`` package: the names and shapes of its state dicts.

:func:`laion_state_dict` writes out, module by module, what ``laion_clap`` 1.1.7's ``CLAP`` holds
(``clap_module/model.py``, ``htsat.py``, ``feature_fusion.py``; the text tower a transformers
``RobertaModel``/``BertModel``), so the converter's mapping can be tested where that package is absent. The
slow parity test (tests/convert/test_laion_parity.py) checks these names and shapes against the real package.
Values are random and moved away from every default (a dropped or swapped tensor cannot hide behind a
LayerNorm's ones or a BatchNorm's zero mean); the front end (STFT kernels, mel bank) is LAION's, computed
independently of the code under test (numpy FFT basis, transformers' Slaney filter bank).

:func:`save_laion_checkpoint` saves it the way LAION's ``training/main.py`` does.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

HTSAT = {  # laion_clap's htsat.py: (patch embedding width, depths, heads)
    "HTSAT-tiny": (96, (2, 2, 6, 2), (4, 8, 16, 32)),
    "HTSAT-base": (128, (2, 2, 12, 2), (4, 8, 16, 32)),
}
ROBERTA_BASE = {
    "vocab": 50265,
    "hidden": 768,
    "layers": 12,
    "intermediate": 3072,
    "positions": 514,
    "types": 1,
}
BERT_BASE = {"vocab": 30522, "hidden": 768, "layers": 12, "intermediate": 3072, "positions": 512, "types": 2}
# A RoBERTa-shaped tower small enough for quick tests (heads = hidden // 64 = 1).
SMALL_ROBERTA = {"vocab": 400, "hidden": 64, "layers": 2, "intermediate": 128, "positions": 82, "types": 1}
# A BERT-shaped one (two token types; positions from 0, so no padding offset).
SMALL_BERT = {**SMALL_ROBERTA, "positions": 80, "types": 2}
# HTS-AT tiny as released, with those small text towers and a small projection (a few seconds to convert).
SMALL_CLAP = {"amodel": "HTSAT-tiny", "text": SMALL_ROBERTA, "projection_dim": 32}
SMALL_BERT_CLAP = {"amodel": "HTSAT-tiny", "text": SMALL_BERT, "projection_dim": 32}
CAPTIONS = [
    "a dog barks twice",
    "rain falls on a tin roof",
    "a car horn",
    "two short high beeps",
    "a low hum",
]
WINDOW, SPEC_SIZE, PATCH, CLASSES = 8, 256, 4, 527


def relative_position_index(window: int) -> torch.Tensor:
    """The Swin index table (``(w^2, w^2)`` indices into the ``(2w - 1)^2`` bias table)."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return relative[:, :, 0] * (2 * window - 1) + relative[:, :, 1]


def laion_front_end(n_fft: int = 1024, n_mels: int = 64) -> dict[str, torch.Tensor]:
    """torchlibrosa's STFT kernels and LAION's mel bank (48 kHz, 50-14000 Hz), computed independently."""
    from transformers.audio_utils import mel_filter_bank

    n = np.arange(n_fft)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)
    basis = np.exp(-2j * np.pi * np.outer(np.arange(n_fft // 2 + 1), n) / n_fft) * hann
    bank = mel_filter_bank(
        num_frequency_bins=n_fft // 2 + 1,
        num_mel_filters=n_mels,
        min_frequency=50,
        max_frequency=14000,
        sampling_rate=48000,
        norm="slaney",
        mel_scale="slaney",
    )
    return {
        "audio_branch.spectrogram_extractor.stft.conv_real.weight": torch.tensor(
            basis.real, dtype=torch.float32
        )[:, None],
        "audio_branch.spectrogram_extractor.stft.conv_imag.weight": torch.tensor(
            basis.imag, dtype=torch.float32
        )[:, None],
        "audio_branch.logmel_extractor.melW": torch.tensor(bank, dtype=torch.float32),
    }


class _Random:
    def __init__(self, seed: int):
        self.generator = torch.Generator().manual_seed(seed)

    def weight(self, *shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator) * 0.05

    def norm(self, prefix: str, width: int) -> dict[str, torch.Tensor]:
        """LayerNorm affine parameters, away from (1, 0)."""
        return {
            f"{prefix}.weight": 1 + torch.randn(width, generator=self.generator) * 0.1,
            f"{prefix}.bias": torch.randn(width, generator=self.generator) * 0.1,
        }

    def batch_norm(
        self, prefix: str, width: int, mean: float = 0.0, std: float = 1.0
    ) -> dict[str, torch.Tensor]:
        return {
            **self.norm(prefix, width),
            f"{prefix}.running_mean": mean + torch.randn(width, generator=self.generator) * std,
            f"{prefix}.running_var": (std * (0.5 + torch.rand(width, generator=self.generator))) ** 2,
            f"{prefix}.num_batches_tracked": torch.tensor(12345),
        }

    def linear(self, prefix: str, out_features: int, in_features: int, bias: bool = True) -> dict:
        tensors = {f"{prefix}.weight": self.weight(out_features, in_features)}
        if bias:
            tensors[f"{prefix}.bias"] = self.weight(out_features)
        return tensors

    def conv(self, prefix: str, out_channels: int, in_channels: int, *kernel: int) -> dict:
        return {
            f"{prefix}.weight": self.weight(out_channels, in_channels, *kernel),
            f"{prefix}.bias": self.weight(out_channels),
        }


def _htsat(random: _Random, amodel: str, fused: bool, n_mels: int) -> dict[str, torch.Tensor]:
    embed, depths, heads = HTSAT[amodel]
    tensors: dict[str, torch.Tensor] = {**laion_front_end(n_mels=n_mels)}
    tensors.update(random.batch_norm("audio_branch.bn0", n_mels, mean=-35.0, std=15.0))  # dB-scale statistics
    tensors.update(random.conv("audio_branch.patch_embed.proj", embed, 1, PATCH, PATCH))
    tensors.update(random.norm("audio_branch.patch_embed.norm", embed))
    if fused:  # aff_2d (feature_fusion.AFF with r = 4) and the local mel convolution
        tensors.update(random.conv("audio_branch.patch_embed.mel_conv2d", embed, 1, PATCH, 3 * PATCH))
        inner, fusion = embed // 4, "audio_branch.patch_embed.fusion_model"
        for branch, (conv1, bn1, conv2, bn2) in {
            "local_att": (0, 1, 3, 4),
            "global_att": (1, 2, 4, 5),
        }.items():
            tensors.update(random.conv(f"{fusion}.{branch}.{conv1}", inner, embed, 1, 1))
            tensors.update(random.batch_norm(f"{fusion}.{branch}.{bn1}", inner))
            tensors.update(random.conv(f"{fusion}.{branch}.{conv2}", embed, inner, 1, 1))
            tensors.update(random.batch_norm(f"{fusion}.{branch}.{bn2}", embed))
    resolution, width = SPEC_SIZE // PATCH, embed
    for stage, (depth, head_count) in enumerate(zip(depths, heads)):
        for block in range(depth):
            prefix = f"audio_branch.layers.{stage}.blocks.{block}"
            tensors.update(random.norm(f"{prefix}.norm1", width))
            tensors[f"{prefix}.attn.relative_position_bias_table"] = random.weight(
                (2 * WINDOW - 1) ** 2, head_count
            )
            tensors[f"{prefix}.attn.relative_position_index"] = relative_position_index(WINDOW)
            tensors.update(random.linear(f"{prefix}.attn.qkv", 3 * width, width))
            tensors.update(random.linear(f"{prefix}.attn.proj", width, width))
            tensors.update(random.norm(f"{prefix}.norm2", width))
            tensors.update(random.linear(f"{prefix}.mlp.fc1", 4 * width, width))
            tensors.update(random.linear(f"{prefix}.mlp.fc2", width, 4 * width))
            if block % 2 and resolution > WINDOW:  # shifted windows: a mask buffer per shifted block
                windows = (resolution // WINDOW) ** 2
                tensors[f"{prefix}.attn_mask"] = torch.zeros(windows, WINDOW**2, WINDOW**2)
        if stage < len(depths) - 1:  # patch merging
            tensors.update(
                random.linear(
                    f"audio_branch.layers.{stage}.downsample.reduction", 2 * width, 4 * width, bias=False
                )
            )
            tensors.update(random.norm(f"audio_branch.layers.{stage}.downsample.norm", 4 * width))
            resolution, width = resolution // 2, width * 2
    tensors.update(random.norm("audio_branch.norm", width))
    frequency_bins = SPEC_SIZE // 2 ** (len(depths) - 1) // PATCH // 4  # htsat.py: SF
    tensors.update(random.conv("audio_branch.tscam_conv", CLASSES, width, frequency_bins, 3))
    tensors.update(random.linear("audio_branch.head", CLASSES, CLASSES))
    return tensors


def _text(random: _Random, shape: dict[str, int]) -> dict[str, torch.Tensor]:
    hidden, tensors = shape["hidden"], {}
    tensors["text_branch.embeddings.word_embeddings.weight"] = random.weight(shape["vocab"], hidden)
    tensors["text_branch.embeddings.position_embeddings.weight"] = random.weight(shape["positions"], hidden)
    tensors["text_branch.embeddings.token_type_embeddings.weight"] = random.weight(shape["types"], hidden)
    tensors.update(random.norm("text_branch.embeddings.LayerNorm", hidden))
    for layer in range(shape["layers"]):
        prefix = f"text_branch.encoder.layer.{layer}"
        for name in ("query", "key", "value"):
            tensors.update(random.linear(f"{prefix}.attention.self.{name}", hidden, hidden))
        tensors.update(random.linear(f"{prefix}.attention.output.dense", hidden, hidden))
        tensors.update(random.norm(f"{prefix}.attention.output.LayerNorm", hidden))
        tensors.update(random.linear(f"{prefix}.intermediate.dense", shape["intermediate"], hidden))
        tensors.update(random.linear(f"{prefix}.output.dense", hidden, shape["intermediate"]))
        tensors.update(random.norm(f"{prefix}.output.LayerNorm", hidden))
    tensors.update(random.linear("text_branch.pooler.dense", hidden, hidden))
    return tensors


def laion_state_dict(
    amodel: str = "HTSAT-tiny",
    text: dict[str, int] | None = None,
    fused: bool = False,
    projection_dim: int = 512,
    n_mels: int = 64,
    seed: int = 0,
    position_ids: bool = True,
) -> OrderedDict[str, torch.Tensor]:
    """A ``CLAP(amodel, tmodel)`` state dict as laion_clap 1.1.7 builds it (no ``module.`` prefix).

    ``text``: the RoBERTa/BERT shape (``ROBERTA_BASE``, ``BERT_BASE``, ``SMALL_ROBERTA``...; its ``types`` 1
    makes it RoBERTa, 2 BERT). ``position_ids``: include the text tower's position-id buffer, as the released
    checkpoints do (saved with transformers < 4.31).
    """
    random, text = _Random(seed), text or ROBERTA_BASE
    embed, depths, _ = HTSAT[amodel]
    audio_width = embed * 2 ** (len(depths) - 1)
    tensors = {
        "logit_scale_a": torch.tensor(np.log(1 / 0.07) + 0.3, dtype=torch.float32),
        "logit_scale_t": torch.tensor(np.log(1 / 0.07) - 0.4, dtype=torch.float32),
    }
    tensors.update(_htsat(random, amodel, fused, n_mels))
    tensors.update(_text(random, text))
    if position_ids:
        tensors["text_branch.embeddings.position_ids"] = torch.arange(text["positions"]).expand(1, -1).clone()
    for side, width in (("text", text["hidden"]), ("audio", audio_width)):
        tensors.update(random.linear(f"{side}_transform.sequential.0", projection_dim, projection_dim))
        tensors.update(random.linear(f"{side}_transform.sequential.3", projection_dim, projection_dim))
        tensors.update(random.linear(f"{side}_projection.0", projection_dim, width))
        tensors.update(random.linear(f"{side}_projection.2", projection_dim, projection_dim))
    return OrderedDict(tensors)


def pann_state_dict(seed: int = 0) -> OrderedDict[str, torch.Tensor]:
    """The first tensors of a PANN-14 + RoBERTa CLAP (``audio_branch.conv_block1...``): enough to tell it."""
    random = _Random(seed)
    tensors = {"logit_scale_a": torch.tensor(2.6), "logit_scale_t": torch.tensor(2.6), **laion_front_end()}
    tensors.update(random.batch_norm("audio_branch.bn0", 64))
    tensors["audio_branch.conv_block1.conv1.weight"] = random.weight(64, 1, 3, 3)
    tensors["audio_branch.conv_block1.conv2.weight"] = random.weight(64, 64, 3, 3)
    tensors.update(random.batch_norm("audio_branch.conv_block1.bn1", 64))
    tensors.update(_text(random, SMALL_ROBERTA))
    return OrderedDict(tensors)


def save_laion_checkpoint(state_dict: dict[str, torch.Tensor], path: str | Path, epoch: int = 45) -> Path:
    """``torch.save`` as LAION's ``training/main.py`` does: the DDP state dict (``module.`` keys) with the
    optimizer state, whose learning rate is a ``numpy.float64`` (``scheduler.cosine_lr`` uses ``np.cos``)."""
    learning_rate = 0.5 * (1 + np.cos(np.pi * 100 / 1000)) * 1e-4
    group = {"lr": learning_rate, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "params": [0]}
    checkpoint = {
        "epoch": epoch,
        "name": "synthetic-laion-clap",
        "state_dict": OrderedDict(("module." + key, value) for key, value in state_dict.items()),
        "optimizer": {"state": {}, "param_groups": [group]},
    }
    torch.save(checkpoint, path)
    return Path(path)
