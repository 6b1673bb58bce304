"""The LAION side of the parity test: run by the LAION-CLAP environment's python, never by the project's.

    $SUPCLAP_LAION_PYTHON tests/convert/laion_reference.py --tokenizer TOK_DIR --inputs in.npz \\
        --checkpoint laion.pt --out laion.npz [--fusion] [--amodel HTSAT-tiny] [--tmodel roberta] [--seed 0]

Builds ``laion_clap.CLAP_Module(enable_fusion, amodel, tmodel)`` offline with random weights (moved
away from every default, so a tensor dropped by a converter cannot hide behind one), saves it as LAION's
``training/main.py`` saves checkpoints (DDP ``module.`` keys, the optimizer state with its numpy learning
rate, the position-id buffer of the released files), loads it back with LAION's own ``load_ckpt``, and embeds
the given clips (48 kHz float32) and captions with LAION's public API, one clip per call with
``np.random.seed(seed_base + i)`` first. ``CLAP_Module.tokenizer`` is RoBERTa's whatever ``tmodel`` is, and
a BERT tower needs the token types it does not give, so BERT captions go through
``get_text_embedding(tokenizer=...)`` with LAION's training tokenizer (``training.data.tokenizer``,
``tmodel="bert"``: bert-base-uncased, padded to 77). Writes the embeddings, the token ids, LAION's own model
inputs (the log-mel the unfused model computes inside its forward; the fused model's 4-channel mel and
``longer``) and the state dict's names and shapes to ``--out``.

Offline, as laion_clap 1.1.7 needs it (see docs/CONVERSION.md): ``roberta-base`` and ``bert-base-uncased``
are not downloaded (their configs are written out below and the tokenizer is a local folder);
``torchvision``, which laion_clap imports for image helpers it never uses on audio, is replaced by stand-in
modules registered in ``sys.modules`` after transformers is imported (a stand-in package on the path would
make transformers believe torchvision is installed); ``torchvision.transforms.Resize``, which the fused
features use, is implemented for tensors as torchvision < 0.17 did (bilinear, no antialiasing). Nothing of
laion_clap's code is copied here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import types

for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(variable, "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import transformers  # noqa: E402, F401  (before the torchvision stand-ins: see the docstring)

torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

# roberta-base's config.json (the architecture fields): LAION builds its text tower from it.
ROBERTA_BASE = {
    "vocab_size": 50265,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "max_position_embeddings": 514,
    "type_vocab_size": 1,
    "layer_norm_eps": 1e-5,
    "pad_token_id": 1,
    "bos_token_id": 0,
    "eos_token_id": 2,
}
# bert-base-uncased's config.json (the architecture fields): LAION's BERT text tower.
BERT_BASE_UNCASED = {
    "vocab_size": 30522,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
    "pad_token_id": 0,
}


def install_torchvision_stand_ins() -> None:
    """``torchvision``, ``.transforms``, ``.datasets``, ``.ops.misc`` as laion_clap imports them."""

    class ImageOnly:
        def __init__(self, *args, **kwargs):
            pass

        def __call__(self, *args, **kwargs):
            raise RuntimeError("a torchvision stand-in: image helpers are not used for audio")

    class Resize:  # torchvision.transforms.Resize on a tensor, as torchvision < 0.17 (no antialiasing)
        def __init__(self, size, interpolation=None, max_size=None, antialias=None):
            self.size = list(size)

        def __call__(self, image: torch.Tensor) -> torch.Tensor:
            batch = image[(None,) * (4 - image.dim())]
            resized = F.interpolate(
                batch, size=self.size, mode="bilinear", align_corners=False, antialias=False
            )
            return resized.reshape(*image.shape[:-2], *self.size)

    torchvision = types.ModuleType("torchvision")
    torchvision.__path__ = []
    transforms = types.ModuleType("torchvision.transforms")
    for name in ("Normalize", "Compose", "RandomResizedCrop", "ToTensor", "CenterCrop"):
        setattr(transforms, name, type(name, (ImageOnly,), {}))
    transforms.InterpolationMode = types.SimpleNamespace(
        NEAREST="nearest", BILINEAR="bilinear", BICUBIC="bicubic"
    )
    transforms.Resize = Resize
    ops = types.ModuleType("torchvision.ops")
    ops.__path__ = []
    misc = types.ModuleType("torchvision.ops.misc")
    misc.FrozenBatchNorm2d = type("FrozenBatchNorm2d", (torch.nn.Module,), {})
    ops.misc = misc
    datasets = types.ModuleType("torchvision.datasets")
    torchvision.transforms, torchvision.ops, torchvision.datasets = transforms, ops, datasets
    sys.modules.update(
        {
            "torchvision": torchvision,
            "torchvision.transforms": transforms,
            "torchvision.ops": ops,
            "torchvision.ops.misc": misc,
            "torchvision.datasets": datasets,
        }
    )


def offline_text_tower(tokenizer_dir: str, tmodel: str) -> None:
    """``*Tokenizer.from_pretrained(name)`` -> the local tokenizer (a RoBERTa BPE or a BERT WordPiece folder,
    as ``tmodel``); ``RobertaModel``/``BertModel.from_pretrained`` -> a random tower of roberta-base's or
    bert-base-uncased's shape."""
    from transformers import (
        BartTokenizer,
        BertConfig,
        BertModel,
        BertTokenizer,
        RobertaConfig,
        RobertaModel,
        RobertaTokenizer,
    )

    tokenizer_class = {"roberta": RobertaTokenizer, "bert": BertTokenizer}[tmodel]
    local = tokenizer_class.from_pretrained(tokenizer_dir)
    # laion_clap loads all three at import (training/data.py) and RoBERTa's in CLAP_Module: the one given
    # stands in for each (only the tower's own is used).
    for stubbed in (RobertaTokenizer, BertTokenizer, BartTokenizer):
        stubbed.from_pretrained = classmethod(lambda cls, *args, **kwargs: local)
    configs = {
        RobertaModel: RobertaConfig(**ROBERTA_BASE, attn_implementation="eager"),
        BertModel: BertConfig(**BERT_BASE_UNCASED, attn_implementation="eager"),
    }
    for model_class, config in configs.items():
        model_class.from_pretrained = classmethod(lambda cls, *args, _config=config, **kwargs: cls(_config))


@torch.no_grad()
def randomize(model: torch.nn.Module, seed: int) -> None:
    """Every learned tensor and normalisation statistic away from its default; the frozen front end, index
    tables and counters kept. bn0 gets statistics of dB-scale mels, as a trained model has."""
    generator = torch.Generator().manual_seed(seed)
    frozen = (
        "stft.conv_real.weight",
        "stft.conv_imag.weight",
        "melW",
        "relative_position_index",
        "attn_mask",
    )
    norms = {
        f"{name}.{parameter}"
        for name, module in model.named_modules()
        if isinstance(module, (torch.nn.LayerNorm, torch.nn.modules.batchnorm._BatchNorm))
        for parameter, _ in module.named_parameters(recurse=False)
    }
    for name, parameter in model.named_parameters():
        noise = torch.randn(parameter.shape, generator=generator)
        if name.endswith(frozen):
            continue
        if name in ("logit_scale_a", "logit_scale_t"):
            parameter.copy_(float(np.log(1 / 0.07)) + 0.5 * noise)
        elif name in norms:
            parameter.copy_(1 + 0.1 * noise if name.endswith("weight") else 0.1 * noise)
        else:
            parameter.add_(0.02 * noise)
    for name, buffer in model.named_buffers():
        if name.endswith("running_mean"):
            scale, offset = (5.0, -35.0) if name.endswith("bn0.running_mean") else (0.1, 0.0)
            buffer.copy_(offset + scale * torch.randn(buffer.shape, generator=generator))
        elif name.endswith("bn0.running_var"):
            buffer.copy_((15.0 + 3 * torch.randn(buffer.shape, generator=generator)) ** 2)
        elif name.endswith("running_var"):
            buffer.copy_(0.5 + torch.rand(buffer.shape, generator=generator))
        elif name.endswith("num_batches_tracked"):
            buffer.fill_(12345)


def save_like_laion(module, path: str) -> None:
    """``torch.save({"epoch", "name", "state_dict", "optimizer"})`` of a DDP-wrapped CLAP (as main.py)."""
    state = {f"module.{key}": value.clone() for key, value in module.model.state_dict().items()}
    # The released files were saved with transformers < 4.31, whose RoBERTa stored its position ids.
    positions = module.model.text_branch.config.max_position_embeddings
    state.setdefault(
        "module.text_branch.embeddings.position_ids", torch.arange(positions).expand(1, -1).clone()
    )
    learning_rate = 0.5 * (1 + np.cos(np.pi * 100 / 1000)) * 1e-4  # numpy.float64, as scheduler.cosine_lr
    optimizer = {"state": {}, "param_groups": [{"lr": learning_rate, "betas": (0.9, 0.999), "params": [0]}]}
    torch.save({"epoch": 45, "name": "random-laion-clap", "state_dict": state, "optimizer": optimizer}, path)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--tokenizer",
        required=True,
        help="folder with vocab.json and merges.txt (roberta) or vocab.txt (bert)",
    )
    parser.add_argument("--inputs", required=True, help=".npz: clip_<i> (48 kHz float32), captions (json)")
    parser.add_argument("--checkpoint", required=True, help="where to save the LAION .pt")
    parser.add_argument("--out", required=True)
    parser.add_argument("--fusion", action="store_true")
    parser.add_argument("--amodel", default="HTSAT-tiny")
    parser.add_argument("--tmodel", default="roberta", choices=["roberta", "bert"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seed_base", type=int, default=20240)
    args = parser.parse_args()

    install_torchvision_stand_ins()
    offline_text_tower(args.tokenizer, args.tmodel)
    import laion_clap
    from laion_clap.training.data import float32_to_int16, get_audio_features, int16_to_float32
    from laion_clap.training.data import tokenizer as training_tokenizer

    torch.manual_seed(args.seed)
    built = laion_clap.CLAP_Module(
        enable_fusion=args.fusion, amodel=args.amodel, tmodel=args.tmodel, device="cpu"
    )
    randomize(built.model, args.seed)
    save_like_laion(built, args.checkpoint)
    names_and_shapes = {key: list(value.shape) for key, value in built.model.state_dict().items()}
    del built
    module = laion_clap.CLAP_Module(
        enable_fusion=args.fusion, amodel=args.amodel, tmodel=args.tmodel, device="cpu"
    )
    module.load_ckpt(args.checkpoint, verbose=False)  # LAION's own loader reads what was saved
    module.eval()

    inputs = np.load(args.inputs)
    captions = json.loads(str(inputs["captions"]))
    clips = [inputs[f"clip_{i}"] for i in range(int(inputs["num_clips"]))]
    captured = {}
    hook = module.model.audio_branch.logmel_extractor.register_forward_hook(
        lambda _module, _inputs, output: captured.__setitem__("log_mel", output.detach().clone())
    )
    out = {"state_dict_shapes": np.array(json.dumps(names_and_shapes))}
    embeddings = []
    for i, clip in enumerate(clips):
        np.random.seed(args.seed_base + i)
        with torch.no_grad():
            embeddings.append(module.get_audio_embedding_from_data([clip])[0])
        # LAION's model inputs: replay get_audio_features with the same seed (same crops and chunks).
        np.random.seed(args.seed_base + i)
        quantized = torch.from_numpy(int16_to_float32(float32_to_int16(clip))).float()
        features = get_audio_features(
            {},
            quantized,
            480000,
            data_truncating="fusion" if args.fusion else "rand_trunc",
            data_filling="repeatpad",
            audio_cfg=module.model_cfg["audio_cfg"],
        )
        out[f"longer_{i}"] = features["longer"].numpy()
        if args.fusion:
            out[f"model_input_{i}"] = features["mel_fusion"].numpy()  # (4, 1001, 64)
        else:
            out[f"model_input_{i}"] = captured["log_mel"][0].numpy()  # (1, 1001, 64): before bn0
    hook.remove()
    if args.tmodel == "bert":

        def tokenize(texts):
            return training_tokenizer(texts, tmodel="bert")

    else:  # CLAP_Module's own: the path of LAION's README
        tokenize = module.tokenizer
    tokens = tokenize(captions)
    with torch.no_grad():
        out["text_embeddings"] = module.get_text_embedding(captions, tokenizer=tokenize)
    out.update(
        audio_embeddings=np.stack(embeddings),
        input_ids=tokens["input_ids"].numpy(),
        attention_mask=tokens["attention_mask"].numpy(),
        laion_clap_version=np.array(getattr(laion_clap, "__version__", "1.1.7")),
    )
    np.savez(args.out, **out)
    print(f"laion side: {len(clips)} clips, {len(captions)} captions -> {args.out}")


if __name__ == "__main__":
    main()
