"""Parity from the waveform, LAION-CLAP against its conversions, and where the Hub's conversion path differs.

The LAION side (``laion_reference.py``) runs in the LAION-CLAP environment (``SUPCLAP_LAION_PYTHON``:
numpy < 2, laion_clap 1.1.7; built by ``.ci/laion_env.sh``); everything else runs here. Material: clips of
the offline demo corpus (16 kHz, resampled to 48 kHz with ``decode_audio``): four 2 s clips (LAION repeats
them to 10 s),
one of 10 s + 100 samples (the fused corner case: one chunk), two joined to 12 s and 26 s (random crops,
fused: three random chunks); the first caption of each.

Measured (:func:`measure`):

* ``exact``: ``supclap-convert`` (``--processor laion``) and the project's own encoding path
  (``evaluation.encode``) against LAION's ``get_audio_embedding_from_data`` / ``get_text_embedding``:
  max abs difference of the L2-normalised embeddings, zero-shot rankings (both directions) identical.
* ``log_mel``: LAION's model inputs against ``LaionClapFeatureExtractor``'s and ``ClapFeatureExtractor``'s
  (transformers' defaults, and LAION's 50 Hz bank floor as the Hub's fused config has it), same clips and
  seeds: max and mean |dB|; and the embedding difference each causes through the exactly converted weights.
* ``hub``: transformers' conversion script's mapping and configuration (``convert_clap_original_pytorch_
  to_hf.py``, laion_clap version), fed LAION's own model inputs (the weights alone), then end to end with
  ``ClapFeatureExtractor``.

With ``tmodel="bert"`` (a BERT text tower: converted to the dual-encoder family) only ``exact`` is measured:
the preprocessing is the audio tower's, measured with RoBERTa, and transformers' ``ClapModel`` has no BERT.

Run it for the docs (prints the tables; ``--json`` for all numbers)::

    SUPCLAP_LAION_PYTHON=.venv-laion/bin/python python tests/convert/laion_parity.py --workdir /tmp/parity
        [--kinds unfused fused unfused-bert]
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parents[1])]  # tests/ (helpers) and the repository

from helpers.laion import BERT_BASE, ROBERTA_BASE, laion_state_dict  # noqa: E402
from helpers.processes import run_bounded  # noqa: E402

RATE, SEED_BASE, CLIP_SECONDS = 48000, 20240, 2.0
LAION_PYTHON_VARIABLE = "SUPCLAP_LAION_PYTHON"
BUILD_HINT = (
    "build it with `bash .ci/laion_env.sh .venv-laion` and set SUPCLAP_LAION_PYTHON=.venv-laion/bin/python"
)


def laion_python() -> str | None:
    """The LAION environment's python, or None when ``SUPCLAP_LAION_PYTHON`` is unset or names no file."""
    path = os.environ.get(LAION_PYTHON_VARIABLE)
    return path if path and Path(path).is_file() else None


# -- material ---------------------------------------------------------------------------------------------
def demo_material(workdir: Path) -> tuple[list[np.ndarray], list[str], list[str]]:
    """(48 kHz clips, captions, names) from the demo corpus."""
    from modeling_supclap.data.audio import decode_audio
    from modeling_supclap.demo import build_demo_corpus

    root = build_demo_corpus(workdir / "demo_corpus", num_clips=30, seed=0)
    rows = [json.loads(line) for line in (root / "train" / "metadata.jsonl").read_text().splitlines()]
    audio = [decode_audio(root / "train" / row["file_name"], RATE, row["file_name"]) for row in rows]
    captions = [row["captions"][0] for row in rows]
    clips, names, chosen = [], [], []
    for i in range(4):
        clips.append(audio[i])
        names.append(f"{CLIP_SECONDS:.0f} s {rows[i]['label']}")
        chosen.append(captions[i])
    clips.append(np.concatenate(audio[4:9] + [audio[9][:100]]))  # 480100 samples: fused into one chunk
    names.append("10 s + 100 samples")
    chosen.append(captions[4])
    for start, count in ((10, 6), (16, 13)):
        clips.append(np.concatenate(audio[start : start + count]))
        names.append(f"{count * CLIP_SECONDS:.0f} s (joined clips)")
        chosen.append(captions[start])
    return [clip.astype(np.float32) for clip in clips], chosen, names


def write_tokenizer(folder: Path, captions: list[str], tmodel: str = "roberta") -> Path:
    """A byte-level BPE with roberta-base's special ids (vocab.json, merges.txt), or for ``tmodel="bert"`` a
    lower-casing WordPiece with bert-base-uncased's ([PAD] 0, vocab.txt): both sides load it."""
    from tokenizers import BertWordPieceTokenizer, ByteLevelBPETokenizer

    folder.mkdir(parents=True, exist_ok=True)
    if tmodel == "bert":
        wordpiece = BertWordPieceTokenizer(lowercase=True)
        wordpiece.train_from_iterator(
            captions * 4,
            vocab_size=600,
            min_frequency=1,
            special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
            show_progress=False,
        )
        wordpiece.save_model(str(folder))  # vocab.txt alone, as bert-base-uncased's own files start
        return folder
    bpe = ByteLevelBPETokenizer()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    bpe.train_from_iterator(
        captions * 4, vocab_size=600, min_frequency=1, special_tokens=specials, show_progress=False
    )
    bpe.save_model(str(folder))
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "RobertaTokenizer", "model_max_length": 77})
    )
    return folder


# -- transformers' conversion script, restated (its mapping and configuration, for measuring) -------------
# convert_clap_original_pytorch_to_hf.py: substring replacements in this order, then the nn.Sequential
# indices, then the qkv split; ClapConfig with only the patch width, depths and hidden sizes from the model
# (everything else ClapConfig's defaults), load_state_dict(strict=False).
_HUB_REPLACEMENTS = [
    ("text_branch", "text_model"),
    ("audio_branch", "audio_model.audio_encoder"),
    ("attn", "attention.self"),
    ("self.proj", "output.dense"),
    ("attention.self_mask", "attn_mask"),
    ("mlp.fc1", "intermediate.dense"),
    ("mlp.fc2", "output.dense"),
    ("norm1", "layernorm_before"),
    ("norm2", "layernorm_after"),
    ("bn0", "batch_norm"),
]


def hub_state_dict(laion_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    converted = {}
    for key, value in laion_state.items():
        for old, new in _HUB_REPLACEMENTS:
            key = key.replace(old, new) if old in key else key
        if match := re.match(r".*sequential.(\d+).*", key):
            key = key.replace(f"sequential.{match.group(1)}.", f"layers.{int(match.group(1)) // 3}.linear.")
        elif match := re.match(r".*_projection.(\d+).*", key):
            index = int(match.group(1))
            key = key.replace(f"_projection.{index}.", f"_projection.linear{1 if index == 0 else 2}.")
        if "qkv" in key:
            for part, chunk in zip(("query", "key", "value"), value.chunk(3, dim=0)):
                converted[key.replace("qkv", part)] = chunk
        else:
            converted[key] = value
    return converted


def hub_model(laion_state: dict[str, torch.Tensor]) -> torch.nn.Module:
    from transformers import ClapConfig, ClapModel

    from modeling_supclap.convert.laion_clap import detect_architecture

    architecture = detect_architecture(laion_state)
    config = ClapConfig(
        audio_config={
            "patch_embeds_hidden_size": architecture.patch_embeds_hidden_size,
            "depths": list(architecture.depths),
            "hidden_size": architecture.audio_hidden_size,
        },
        text_config={"hidden_size": architecture.text_hidden_size},
    )
    config.audio_config.enable_fusion = architecture.fusion is not None
    model = ClapModel(config)
    model.load_state_dict(hub_state_dict(laion_state), strict=False)
    return model.eval()


# -- measuring ----------------------------------------------------------------------------------------------
def _normalised(output: Any) -> torch.Tensor:
    embeddings = output if isinstance(output, torch.Tensor) else output.pooler_output
    return F.normalize(embeddings.float(), dim=-1)


@torch.no_grad()
def _audio(model: torch.nn.Module, features: list[dict[str, torch.Tensor]]) -> torch.Tensor:
    """All clips in one forward (their inputs have one shape: the extractor's window, fused or not)."""
    batch = {key: torch.cat([f[key] for f in features]) for key in ("input_features", "is_longer")}
    return _normalised(model.get_audio_features(**batch))


def _rankings(audio: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    similarity = audio @ text.T
    return similarity.argsort(dim=1, descending=True), similarity.argsort(dim=0, descending=True)


def _compare(audio: torch.Tensor, text: torch.Tensor, laion: dict[str, torch.Tensor]) -> dict[str, Any]:
    ours, theirs = _rankings(audio, text), _rankings(laion["audio"], laion["text"])
    return {
        "audio_max_abs": float((audio - laion["audio"]).abs().max()),
        "text_max_abs": float((text - laion["text"]).abs().max()),
        "ranking_identical": all(torch.equal(a, b) for a, b in zip(ours, theirs)),
    }


def _features(extractor: Any, clips: list[np.ndarray], transform=None) -> list[dict[str, torch.Tensor]]:
    """One call per clip (as LAION embeds), the global numpy RNG seeded as on the LAION side."""
    out = []
    for i, clip in enumerate(clips):
        np.random.seed(SEED_BASE + i)
        features = extractor(
            [clip if transform is None else transform(clip)], sampling_rate=RATE, return_tensors="pt"
        )
        out.append({"input_features": features["input_features"].float(), "is_longer": features["is_longer"]})
    return out


def _log_mel_difference(
    features: list[dict[str, torch.Tensor]], laion_inputs: list[torch.Tensor]
) -> dict[str, float]:
    differences = [(f["input_features"][0] - reference).abs() for f, reference in zip(features, laion_inputs)]
    return {
        "max_dB": float(max(d.max() for d in differences)),
        "mean_dB": float(np.mean([float(d.mean()) for d in differences])),
        "per_clip_max_dB": [round(float(d.max()), 6) for d in differences],
    }


@torch.no_grad()
def measure(
    python: str, workdir: str | os.PathLike, fused: bool, seed: int = 0, tmodel: str = "roberta"
) -> dict[str, Any]:
    """All the numbers of the module docstring for one checkpoint: HTSAT-tiny + ``tmodel``, random weights."""
    from transformers import AutoModel, AutoProcessor, ClapFeatureExtractor

    from modeling_supclap.cli.convert import main as convert
    from modeling_supclap.convert.laion_clap import read_laion_state_dict
    from modeling_supclap.evaluation.encode import encode_audio, encode_texts
    from modeling_supclap.model.feature_extraction_laion_clap import quantize_int16

    workdir = Path(workdir)
    kind = ("fused" if fused else "unfused") + ("" if tmodel == "roberta" else f" {tmodel}")
    stem = kind.replace(" ", "_")
    clips, captions, names = demo_material(workdir)
    tokenizer = write_tokenizer(workdir / f"tokenizer_{tmodel}", captions, tmodel)
    inputs = {f"clip_{i}": clip for i, clip in enumerate(clips)}
    np.savez(workdir / "inputs.npz", num_clips=len(clips), captions=json.dumps(captions), **inputs)
    checkpoint, laion_out = workdir / f"laion_{stem}.pt", workdir / f"laion_{stem}.npz"
    started = time.perf_counter()
    command = [python, str(HERE / "laion_reference.py"), "--tokenizer", str(tokenizer), "--inputs"]
    command += [str(workdir / "inputs.npz"), "--checkpoint", str(checkpoint), "--out", str(laion_out)]
    command += ["--seed", str(seed), "--seed_base", str(SEED_BASE), "--tmodel", tmodel]
    command += ["--fusion"] if fused else []
    result = run_bounded(command, timeout=1200, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if result.returncode != 0:
        raise RuntimeError(f"the LAION side failed:\n{result.stderr[-4000:]}")
    laion_seconds = time.perf_counter() - started
    reference = np.load(laion_out)
    laion = {
        "audio": torch.tensor(reference["audio_embeddings"]),
        "text": torch.tensor(reference["text_embeddings"]),
    }
    laion_inputs = [torch.tensor(reference[f"model_input_{i}"]).float() for i in range(len(clips))]
    laion_longer = [torch.tensor(reference[f"longer_{i}"]).reshape(1, 1).bool() for i in range(len(clips))]

    # What supclap-convert writes, used the way the project uses models.
    folder = workdir / f"converted_{stem}"
    started = time.perf_counter()
    convert(
        ["--checkpoint", str(checkpoint), "--amodel", "HTSAT-tiny", "--tmodel", tmodel]
        + ["--tokenizer", str(tokenizer), "--output_dir", str(folder), "--overwrite_output_dir"]
    )
    convert_seconds = time.perf_counter() - started
    model = AutoModel.from_pretrained(folder).eval()  # SupClapModel, or SupClapDualEncoderModel for BERT
    processor = AutoProcessor.from_pretrained(folder)
    # long_audio="random": the whole clip to the extractor, which crops or fuses it as LAION's code does,
    # from the same seed (evaluation's default, "windows", embeds a long clip as the mean of its windows).
    # One clip per call for its own seed, so window_batch_size=1: the default (32) pads each call to 32 rows.
    audio = torch.cat(
        [
            encode_audio(model, processor, [clip], SEED_BASE + i, "random", window_batch_size=1)
            for i, clip in enumerate(clips)
        ]
    )
    text = F.normalize(encode_texts(model, processor, captions, max_text_length=77), dim=-1)
    ids = processor.tokenizer(
        captions, padding="max_length", truncation=True, max_length=77, return_tensors="pt"
    )
    report: dict[str, Any] = {
        "kind": kind,
        "model_class": type(model).__name__,
        "clips": names,
        "captions": captions,
        "laion_clap_version": str(reference["laion_clap_version"]),
        "seconds": {"laion_side": round(laion_seconds, 1), "convert": round(convert_seconds, 1)},
        "token_ids_identical": bool(torch.equal(ids["input_ids"], torch.tensor(reference["input_ids"]))),
        "exact": _compare(audio, text, laion),
    }
    shapes = json.loads(str(reference["state_dict_shapes"]))
    text_shape = BERT_BASE if tmodel == "bert" else ROBERTA_BASE
    synthetic = laion_state_dict(text=text_shape, fused=fused, position_ids=False)
    report["synthetic_names_and_shapes_match_laion_clap"] = {
        k: list(v.shape) for k, v in synthetic.items()
    } == shapes
    if tmodel != "roberta":  # the preprocessing and the Hub's path are measured with RoBERTa (docstring)
        return report

    # The preprocessing alone: each extractor's output against LAION's model inputs, and what it does to the
    # embeddings through the exactly converted weights.
    truncation = "fusion" if fused else "rand_trunc"
    extractors = {
        "LaionClapFeatureExtractor": (processor.feature_extractor, None),
        "ClapFeatureExtractor, transformers' defaults (fmin 0)": (
            ClapFeatureExtractor(truncation=truncation),
            None,
        ),
        "ClapFeatureExtractor, fmin 50 (LAION's bank)": (
            ClapFeatureExtractor(frequency_min=50, truncation=truncation),
            None,
        ),
        "ClapFeatureExtractor, fmin 50, after LAION's int16 round trip": (
            ClapFeatureExtractor(frequency_min=50, truncation=truncation),
            quantize_int16,
        ),
    }
    report["log_mel"] = {}
    for label, (extractor, transform) in extractors.items():
        features = _features(extractor, clips, transform)
        entry = _log_mel_difference(features, laion_inputs)
        entry["is_longer"] = [bool(f["is_longer"]) for f in features]
        entry["embeddings"] = _compare(_audio(model, features), text, laion)
        if fused and label != "LaionClapFeatureExtractor":  # the same features with LAION's is_longer
            relabelled = [{**f, "is_longer": longer} for f, longer in zip(features, laion_longer)]
            entry["embeddings_with_laions_is_longer"] = _compare(_audio(model, relabelled), text, laion)
        report["log_mel"][label] = entry
    report["laion_is_longer"] = [bool(x) for x in laion_longer]

    # transformers' conversion: the weights alone (LAION's inputs), then with ClapFeatureExtractor.
    state, _ = read_laion_state_dict(checkpoint)
    hub = hub_model(state)
    laion_features = [
        {"input_features": x[None], "is_longer": longer} for x, longer in zip(laion_inputs, laion_longer)
    ]
    hub_text = _normalised(
        hub.get_text_features(**{k: v for k, v in ids.items() if k in ("input_ids", "attention_mask")})
    )
    report["hub"] = {
        "text_layer_norm_eps": hub.config.text_config.layer_norm_eps,
        "weights_alone (LAION's inputs)": _compare(_audio(hub, laion_features), hub_text, laion),
    }
    for label in (
        "ClapFeatureExtractor, transformers' defaults (fmin 0)",
        "ClapFeatureExtractor, fmin 50 (LAION's bank)",
    ):
        extractor = extractors[label][0]
        report["hub"][f"end to end, {label}"] = _compare(
            _audio(hub, _features(extractor, clips)), hub_text, laion
        )
    # The exact mapping with the script's text LayerNorm epsilon: is that the whole text difference?
    for module in model.text_model.modules():
        if isinstance(module, torch.nn.LayerNorm):
            module.eps = hub.config.text_config.layer_norm_eps
    text_with_hub_eps = F.normalize(encode_texts(model, processor, captions, max_text_length=77), dim=-1)
    report["hub"]["exact mapping, text layer_norm_eps 1e-12"] = float(
        (text_with_hub_eps - laion["text"]).abs().max()
    )
    return report


def markdown(reports: list[dict[str, Any]]) -> str:
    """The docs' table, one column per checkpoint kind ("—": measured with RoBERTa only, see the module)."""

    def ranking(entry: dict[str, Any]) -> str:
        return "ranking identical" if entry["ranking_identical"] else "**ranking changed**"

    def both(entry: dict[str, Any]) -> str:
        return f"{entry['audio_max_abs']:.2e} / {entry['text_max_abs']:.2e}, {ranking(entry)}"

    def audio(entry: dict[str, Any]) -> str:
        return f"{entry['audio_max_abs']:.2e}, {ranking(entry)}"

    def decibels(entry: dict[str, Any]) -> str:
        return f"{entry['max_dB']:.3g} / {entry['mean_dB']:.3g}"

    def relabelled(entry: dict[str, Any]) -> str:
        return audio(entry.get("embeddings_with_laions_is_longer", entry["embeddings"]))

    def cells(keys: tuple[str, ...], cell) -> list[str]:
        """``cell`` of each report's entry at ``keys``, or "—" where the report has none."""
        row = []
        for report in reports:
            entry = report
            for key in keys:
                entry = entry.get(key) if isinstance(entry, dict) else None
            row.append("—" if entry is None else cell(entry))
        return row

    rows = [
        ("supclap-convert + LaionClapFeatureExtractor: audio / text max abs diff", cells(("exact",), both))
    ]
    measured = next((r for r in reports if "log_mel" in r), {"log_mel": {}, "hub": {}})
    for label in measured["log_mel"]:
        rows.append((f"log-mel, {label}: max / mean dB", cells(("log_mel", label), decibels)))
        rows.append(("→ audio embeddings, exact weights", cells(("log_mel", label, "embeddings"), audio)))
        if any("embeddings_with_laions_is_longer" in r.get("log_mel", {}).get(label, {}) for r in reports):
            rows.append(("→ the same with LAION's is_longer", cells(("log_mel", label), relabelled)))
    for label, entry in measured["hub"].items():
        if isinstance(entry, dict):
            rows.append((f"transformers' conversion, {label}: audio / text", cells(("hub", label), both)))
    if measured["hub"]:
        eps = cells(("hub", "exact mapping, text layer_norm_eps 1e-12"), lambda value: f"{value:.2e}")
        rows.append(("exact mapping with the script's text layer_norm_eps (1e-12): text max abs diff", eps))
    header = ["| measurement | " + " | ".join(f"HTSAT-tiny {r['kind']}" for r in reports) + " |"]
    header.append("|---" * (len(reports) + 1) + "|")
    return "\n".join(header + [f"| {label} | " + " | ".join(row) + " |" for label, row in rows])


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", required=True)
    parser.add_argument(
        "--kinds",
        nargs="+",
        default=["unfused", "fused", "unfused-bert"],
        choices=["unfused", "fused", "unfused-bert", "fused-bert"],
        help="HTSAT-tiny unfused or fused, with RoBERTa or (-bert) BERT",
    )
    parser.add_argument("--json", help="write every number here")
    args = parser.parse_args()
    python = laion_python()
    if python is None:
        sys.exit(f"SUPCLAP_LAION_PYTHON is unset or names no file: {BUILD_HINT}")
    torch.set_num_threads(1)
    reports = []
    for kind in args.kinds:
        workdir = Path(args.workdir) / kind
        workdir.mkdir(parents=True, exist_ok=True)
        fusion, _, tmodel = kind.partition("-")
        reports.append(measure(python, workdir, fused=fusion == "fused", tmodel=tmodel or "roberta"))
    if args.json:
        Path(args.json).write_text(json.dumps(reports, indent=1))
    print(markdown(reports))


if __name__ == "__main__":
    main()
