"""Tests of the data layer (modeling_supclap.data): offline and fast."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from transformers import ClapAudioConfig, ClapConfig, ClapModel, ClapProcessor, ClapTextConfig

from modeling_supclap.data import (
    AudioTextDataset,
    AudioTextRecord,
    BadSampleError,
    SupClapCollator,
    build_processor,
    build_processor_for_audio_config,
    decode_audio,
    load_records,
    max_audio_frames,
    scan_records,
    train_caption_tokenizer,
)
from modeling_supclap.demo import build_demo_corpus, build_demo_processor, demo_class_labels

SR = 16000
N_CLIPS = 30


def tiny_audio_config() -> ClapAudioConfig:
    return ClapAudioConfig(
        spec_size=64,
        num_mel_bins=16,
        window_size=4,
        patch_size=4,
        patch_stride=(4, 4),
        patch_embeds_hidden_size=16,
        depths=[1, 1],
        num_attention_heads=[2, 2],
        hidden_size=32,
        enable_fusion=False,
    )


def tiny_text_config() -> ClapTextConfig:
    return ClapTextConfig(
        vocab_size=1000,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=66,
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return build_demo_corpus(tmp_path_factory.mktemp("corpus") / "demo", num_clips=N_CLIPS, seed=0)


@pytest.fixture(scope="module")
def processor(corpus, tmp_path_factory) -> ClapProcessor:
    return build_demo_processor(corpus, tiny_audio_config(), cache_dir=tmp_path_factory.mktemp("proc"))


def _read_metadata(root: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (root / split / "metadata.jsonl").read_text().splitlines()]


def _tone(seconds: float = 0.5, sr: int = SR, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Demo corpus
# --------------------------------------------------------------------------------------------------


def test_corpus_is_deterministic(corpus, tmp_path):
    again = build_demo_corpus(tmp_path / "again", num_clips=N_CLIPS, seed=0)
    for split in ("train", "validation", "test"):
        rows = _read_metadata(corpus, split)
        assert rows == _read_metadata(again, split)
        for row in rows:
            a = (corpus / split / row["file_name"]).read_bytes()
            assert a == (again / split / row["file_name"]).read_bytes()
    other = build_demo_corpus(tmp_path / "other", num_clips=N_CLIPS, seed=1)
    assert _read_metadata(other, "train") != _read_metadata(corpus, "train")


def test_corpus_layout_and_split_sizes(corpus):
    info = json.loads((corpus / "corpus_info.json").read_text())
    assert info["splits"] == {"train": 24, "validation": 3, "test": 3}
    names = []
    for split, n in info["splits"].items():
        rows = _read_metadata(corpus, split)
        assert len(rows) == n == len(list((corpus / split).glob("*.wav")))
        for row in rows:
            assert set(row) == {"file_name", "captions", "label"}
            assert 2 <= len(row["captions"]) <= 5
            assert row["label"] in demo_class_labels()
            data, sr = sf.read(corpus / split / row["file_name"], dtype="int16")
            assert sr == SR and data.shape == (2 * SR,)
            assert sf.info(str(corpus / split / row["file_name"])).subtype == "PCM_16"
            names.append(row["file_name"])
    assert len(set(names)) == N_CLIPS  # no clip in two splits


def test_corpus_labels_are_distinct_phrases():
    labels = demo_class_labels()
    assert 8 <= len(labels) <= 12 and len(set(labels)) == len(labels)
    assert all(label == label.strip().lower() and label for label in labels)


def test_captions_vary_and_paraphrase(corpus):
    rows = [r for s in ("train", "validation", "test") for r in _read_metadata(corpus, s)]
    captions = [c for r in rows for c in r["captions"]]
    assert len(set(captions)) == len(captions)  # no caption repeats anywhere
    for r in rows:  # paraphrases of one clip differ in wording, not just punctuation
        assert len({c.rstrip(".").lower() for c in r["captions"]}) == len(r["captions"])
    first_words = {c.split()[0].lower() for c in captions}
    assert len(first_words) >= 4  # different sentence frames / word orders
    text = " ".join(captions).lower()
    for word in ("then", "followed", "low", "high", "short", "long"):
        assert word in text
    assert any(w in text for w in ("two", "pair"))
    assert any(w in text for w in ("quiet", "soft", "faint"))


def test_corpus_cache_hit_and_partial_rebuild(tmp_path):
    root = tmp_path / "c"
    build_demo_corpus(root, num_clips=6, seed=3)
    info_file = root / "corpus_info.json"
    mtime = info_file.stat().st_mtime_ns
    start = time.perf_counter()
    assert build_demo_corpus(root, num_clips=6, seed=3) == root.absolute()
    assert time.perf_counter() - start < 0.5
    assert info_file.stat().st_mtime_ns == mtime  # nothing rewritten

    # A folder without corpus_info.json (interrupted build) is rebuilt.
    info_file.unlink()
    (root / "train" / "metadata.jsonl").write_text("garbage\n")
    build_demo_corpus(root, num_clips=6, seed=3)
    assert info_file.is_file()
    assert all("captions" in r for r in _read_metadata(root, "train"))
    # Other parameters: rebuilt too.
    build_demo_corpus(root, num_clips=8, seed=3)
    assert json.loads(info_file.read_text())["num_clips"] == 8
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # temp folders cleaned up


def test_corpus_refuses_foreign_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(ValueError, match="does not look like a demo corpus"):
        build_demo_corpus(tmp_path, num_clips=6)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


# --------------------------------------------------------------------------------------------------
# Tokenizer and processor
# --------------------------------------------------------------------------------------------------


def test_tokenizer_ids_and_specials(corpus):
    captions = [c for r in load_records(str(corpus)) for c in r.captions]
    tok = train_caption_tokenizer(captions, vocab_size=1000, model_max_length=64)
    assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert tok.convert_tokens_to_ids("<mask>") == 4
    assert len(tok) <= 1000 and tok.model_max_length == 64
    ids = tok("two short high beeps, then a low hum")["input_ids"]
    assert ids[0] == 0 and ids[-1] == 2 and all(i >= 5 for i in ids[1:-1])
    # Trained merges: frequent caption words are single tokens.
    assert len(tok.tokenize(" followed")) == 1
    # Byte-level: unseen characters still encode (no <unk>).
    assert 3 not in tok("ünïcödé 🎵")["input_ids"]
    small = train_caption_tokenizer(captions, vocab_size=300)
    assert len(small) <= 300
    with pytest.raises(ValueError, match="vocab_size"):
        train_caption_tokenizer(captions, vocab_size=100)


def test_processor_shapes_and_round_trip(processor, tmp_path):
    fe = processor.feature_extractor
    assert (fe.feature_size, fe.hop_length, fe.truncation, fe.padding) == (16, 160, "rand_trunc", "repeatpad")
    texts = ["two short high beeps, then a low hum", "a bell ring"]
    audio = [_tone(0.7), _tone(2.5)]
    out = processor(text=texts, audio=audio, sampling_rate=SR, return_tensors="pt", padding=True)
    assert out["input_features"].shape == (2, 1, 201, 16)
    assert 201 <= max_audio_frames(tiny_audio_config())
    assert out["input_ids"].shape[0] == 2 and out["is_longer"].tolist() == [[False], [True]]

    processor.save_pretrained(tmp_path)
    loaded = ClapProcessor.from_pretrained(tmp_path)
    assert loaded.tokenizer.get_vocab() == processor.tokenizer.get_vocab()
    assert loaded.tokenizer(texts)["input_ids"] == processor.tokenizer(texts)["input_ids"]
    for key in (
        "feature_size",
        "sampling_rate",
        "hop_length",
        "fft_window_size",
        "truncation",
        "max_length_s",
    ):
        assert getattr(loaded.feature_extractor, key) == getattr(fe, key)
    short = [_tone(0.7)]
    a = processor.feature_extractor(short, sampling_rate=SR, return_tensors="pt")["input_features"]
    b = loaded.feature_extractor(short, sampling_rate=SR, return_tensors="pt")["input_features"]
    assert torch.equal(a, b)


def test_processor_fits_audio_config():
    tok = train_caption_tokenizer(["a low hum", "two beeps"] * 5, vocab_size=300)
    tiny = tiny_audio_config()
    # 4 s at 10 ms hop would be 401 frames > 256: the hop grows until the frames fit.
    proc = build_processor_for_audio_config(tok, tiny, sampling_rate=SR, max_length_s=4)
    feats = proc.feature_extractor([_tone(4.0)], sampling_rate=SR, return_tensors="np")["input_features"]
    assert feats.shape[1] == 1 and feats.shape[3] == 16 and feats.shape[2] <= 256
    # transformers' default CLAP audio config reproduces the published CLAP setting (hop 480 @ 48 kHz).
    clap = build_processor_for_audio_config(tok, ClapAudioConfig(), sampling_rate=48000, max_length_s=10)
    assert (clap.feature_extractor.hop_length, clap.feature_extractor.fft_window_size) == (480, 1024)
    with pytest.raises(ValueError, match="whole number"):
        build_processor(tok, max_length_s=2.5)


def test_demo_processor_is_cached(corpus, tmp_path):
    start = time.perf_counter()
    first = build_demo_processor(corpus, tiny_audio_config(), cache_dir=tmp_path)
    saved = list(tmp_path.iterdir())
    assert len(saved) == 1 and (saved[0] / "tokenizer.json").is_file()
    mid = time.perf_counter()
    second = build_demo_processor(corpus, tiny_audio_config(), cache_dir=tmp_path)
    assert time.perf_counter() - mid < max(1.0, mid - start)
    assert second.tokenizer.get_vocab() == first.tokenizer.get_vocab()
    assert second.feature_extractor.hop_length == first.feature_extractor.hop_length
    # A different vocabulary size is another cache entry.
    build_demo_processor(corpus, tiny_audio_config(), cache_dir=tmp_path, vocab_size=400)
    assert len(list(tmp_path.iterdir())) == 2


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


def _write_small_corpus(folder: Path, n: int = 3) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        name = f"a{i}.wav"
        sf.write(folder / name, _tone(0.3, freq=300 + 100 * i), SR)
        names.append(name)
    return names


def test_load_audiofolder_splits(corpus):
    for split, n in (("train", 24), ("validation", 3), ("test", 3)):
        records = load_records(str(corpus), split=split)
        assert len(records) == n
        assert all(Path(r.audio).is_file() and r.captions and r.label for r in records)
        assert "metadata.jsonl" in records[0].source
    assert len(load_records(str(corpus), split="val")) == 3  # audiofolder split aliases
    with pytest.raises(ValueError, match="no split 'dev2'"):
        load_records(str(corpus), split="dev2")


def test_load_audiofolder_without_splits_csv(tmp_path):
    names = _write_small_corpus(tmp_path)
    with open(tmp_path / "metadata.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file_name", "captions", "label"])
        for i, n in enumerate(names):
            w.writerow([n, f"tone number {i}", "beep"])
    records = load_records(str(tmp_path))
    assert [r.captions for r in records] == [[f"tone number {i}"] for i in range(3)]
    assert records[0].audio == str(tmp_path / names[0])
    with pytest.raises(ValueError, match="only split='train'"):
        load_records(str(tmp_path), split="test")


def test_load_csv_with_several_caption_columns(tmp_path):
    names = _write_small_corpus(tmp_path / "wavs")
    path = tmp_path / "data.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["audio", "caption_a", "caption_b", "label"])
        w.writerow([f"wavs/{names[0]}", "a low hum", json.dumps(["x one", "x two"]), "hum"])
        w.writerow([f"wavs/{names[1]}", "a high beep", "y", ""])
    records = load_records(str(path), caption_columns=("caption_a", "caption_b"))
    assert records[0].captions == ["a low hum", "x one", "x two"]
    assert records[1].captions == ["a high beep", "y"]
    assert records[0].label == "hum" and records[1].label is None
    assert records[0].audio == str(tmp_path / "wavs" / names[0])
    assert records[1].source == f"{path} line 3"
    decode_audio(records[0].audio, SR, records[0].source)

    # No --caption_columns and no usual name: detection finds nothing, and the error says what it looked for.
    with pytest.raises(
        ValueError, match=r"data\.csv: no caption column found .*columns are \['audio', 'caption_a'"
    ):
        load_records(str(path))
    bad = tmp_path / "bad.csv"
    bad.write_text("sound,captions\nwavs/a0.wav,hello\n")
    with pytest.raises(ValueError, match=r"bad\.csv line 2: no audio column 'audio'"):
        load_records(str(bad))
    empty_cap = tmp_path / "empty_cap.csv"
    empty_cap.write_text("audio,captions\nwavs/a0.wav,hello\nwavs/a1.wav,  \n")
    with pytest.raises(ValueError, match=r"empty_cap\.csv line 3: empty caption"):
        load_records(str(empty_cap))
    header_only = tmp_path / "header_only.csv"
    header_only.write_text("audio,captions\n")
    with pytest.raises(ValueError, match="empty dataset"):
        load_records(str(header_only))


@pytest.mark.parametrize("column", ["filename", "fname", "path", "file_name"])
def test_load_finds_the_usual_audio_column_names(tmp_path, column):
    """ESC-50's filename, FSD50K's fname, a plain path: found without --audio_column."""
    path = tmp_path / "meta.csv"
    path.write_text(f"{column},caption,path_note\na.wav,hello,x\n")
    assert load_records(str(path))[0].audio == str(tmp_path / "a.wav")


def test_load_audio_column_fallback_error(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("wav,captions\na.wav,hello\n")
    with pytest.raises(
        ValueError, match=r"x\.csv line 2: no audio column 'audio'.*columns are \['wav', 'captions'\]"
    ):
        load_records(str(path))
    assert load_records(str(path), audio_column="wav")[0].audio == str(tmp_path / "a.wav")


def test_load_jsonl(tmp_path):
    names = _write_small_corpus(tmp_path / "clips")
    path = tmp_path / "data.jsonl"
    rows = [
        {"file_name": f"clips/{names[0]}", "captions": ["one", "two"], "label": "beep"},
        {"file_name": f"clips/{names[1]}", "captions": "three"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    records = load_records(str(path))
    assert [r.captions for r in records] == [["one", "two"], ["three"]]
    assert records[0].label == "beep" and records[1].label is None
    assert records[1].audio == str(tmp_path / "clips" / names[1])
    # data_dir overrides the base folder of relative paths
    assert load_records(str(path), data_dir="/elsewhere")[0].audio == f"/elsewhere/clips/{names[0]}"

    path.write_text(json.dumps({"file_name": "a.wav", "captions": []}) + "\n")
    with pytest.raises(
        ValueError, match=r"data\.jsonl line 1: caption column 'captions' holds an empty list"
    ):
        load_records(str(path))
    path.write_text('{"file_name": "a.wav", "captions": ["ok"]}\n{"file_name": "b.wav"\n')
    with pytest.raises(ValueError, match=r"data\.jsonl line 2: invalid JSON"):
        load_records(str(path))
    path.write_text("")
    with pytest.raises(ValueError, match="empty dataset"):
        load_records(str(path))
    with pytest.raises(FileNotFoundError):
        load_records(str(tmp_path / "missing.jsonl"))


def test_load_saved_datasets(tmp_path):
    from datasets import Audio, ClassLabel, Dataset, DatasetDict

    names = _write_small_corpus(tmp_path / "wavs")
    ds = Dataset.from_dict(
        {
            "audio": [str(tmp_path / "wavs" / n) for n in names],
            "captions": [["a", "b"], ["c"], ["d", "e", "f"]],
            "extra_caption": ["x", "y", "z"],
            "label": [0, 1, 0],
        }
    ).cast_column("audio", Audio(decode=False))
    ds = ds.cast_column("label", ClassLabel(names=["beep", "hum"]))
    ds.save_to_disk(str(tmp_path / "single"))
    DatasetDict({"train": ds, "test": ds.select([2])}).save_to_disk(str(tmp_path / "dict"))
    for name in names:  # save_to_disk embedded the bytes: the wav files are no longer needed
        (tmp_path / "wavs" / name).unlink()

    records = load_records(str(tmp_path / "single"), caption_columns=("captions", "extra_caption"))
    assert [r.captions for r in records] == [["a", "b", "x"], ["c", "y"], ["d", "e", "f", "z"]]
    assert [r.label for r in records] == ["beep", "hum", "beep"]
    assert isinstance(records[0].audio, dict) and records[0].audio["bytes"]
    assert decode_audio(records[0].audio, SR, records[0].source).shape == (int(0.3 * SR),)
    assert records[1].source.endswith("row 1")

    test_records = load_records(str(tmp_path / "dict"), split="test")
    assert len(test_records) == 1 and test_records[0].captions == ["d", "e", "f"]
    with pytest.raises(ValueError, match=r"no split 'validation'.*\['train', 'test'\]"):
        load_records(str(tmp_path / "dict"), split="validation")
    with pytest.raises(ValueError, match="missing caption column"):
        load_records(str(tmp_path / "single"), caption_columns=("text",))
    Dataset.from_dict({"audio": [], "captions": []}).save_to_disk(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="empty"):
        load_records(str(tmp_path / "empty"))


# --------------------------------------------------------------------------------------------------
# decode_audio
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "FLOAT"])
def test_decode_stereo_and_bit_depths(tmp_path, subtype):
    left = _tone(0.25)
    path = tmp_path / f"{subtype}.wav"
    sf.write(path, np.stack([left, 0.5 * left], axis=1), SR, subtype=subtype)
    out = decode_audio(str(path), SR, "test")
    assert out.dtype == np.float32 and out.shape == left.shape
    tol = {"PCM_U8": 2e-2, "PCM_16": 1e-4}.get(subtype, 1e-6)
    np.testing.assert_allclose(out, 0.75 * left, atol=tol)


def test_decode_resamples_and_accepts_bytes_and_dicts(tmp_path):
    tone = _tone(1.0, sr=44100, freq=1000.0)
    path = tmp_path / "cd.wav"
    sf.write(path, tone, 44100)
    out = decode_audio(path, SR, "cd")
    assert out.shape == (SR,)
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spectrum) * SR / len(out) - 1000.0) < 2.0  # the tone keeps its pitch
    np.testing.assert_allclose(decode_audio(path.read_bytes(), SR, "b"), out)
    np.testing.assert_allclose(decode_audio({"bytes": path.read_bytes(), "path": "x"}, SR, "d"), out)
    np.testing.assert_allclose(decode_audio({"bytes": None, "path": str(path)}, SR, "p"), out)
    arr = decode_audio({"array": tone, "sampling_rate": 44100}, SR, "a")
    np.testing.assert_allclose(arr, out, atol=1e-4)
    assert decode_audio({"array": np.zeros((2, 800)), "sampling_rate": SR}, SR, "a").shape == (800,)


def test_decode_errors_name_the_source(tmp_path):
    with pytest.raises(BadSampleError, match=r"row 7: audio file not found: .*nope\.wav"):
        decode_audio(str(tmp_path / "nope.wav"), SR, "row 7")
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(BadSampleError, match=r"src: audio file is empty \(0 bytes\)"):
        decode_audio(str(tmp_path / "empty.wav"), SR, "src")
    (tmp_path / "text.wav").write_text("this is not audio at all\n" * 20)
    with pytest.raises(BadSampleError, match="src: cannot decode file .*text.wav as audio"):
        decode_audio(str(tmp_path / "text.wav"), SR, "src")
    sf.write(tmp_path / "good.wav", _tone(0.2), SR)
    with pytest.raises(BadSampleError, match="cannot decode audio bytes"):
        decode_audio((tmp_path / "good.wav").read_bytes()[:30], SR, "src")  # truncated header
    with pytest.raises(BadSampleError, match="empty"):
        decode_audio(b"", SR, "src")
    nan = _tone(0.2)
    nan[10] = np.nan
    nan[11] = np.inf
    sf.write(tmp_path / "nan.wav", nan, SR, subtype="FLOAT")
    with pytest.raises(BadSampleError, match=r"nan\.wav: audio has 2 NaN/inf sample\(s\)"):
        decode_audio(str(tmp_path / "nan.wav"), SR, "nan.wav")
    sf.write(tmp_path / "zero.wav", np.zeros(0, np.float32), SR)
    with pytest.raises(BadSampleError, match="no samples"):
        decode_audio(str(tmp_path / "zero.wav"), SR, "zero")
    with pytest.raises(BadSampleError, match="no 'array', 'bytes' or 'path'"):
        decode_audio({"path": None, "bytes": None}, SR, "dict")
    assert issubclass(BadSampleError, ValueError)


# --------------------------------------------------------------------------------------------------
# Dataset and collator
# --------------------------------------------------------------------------------------------------

BATCH_KEYS = {"input_ids", "attention_mask", "input_features", "is_longer", "return_loss"}


def test_collator_batch_feeds_clap_model(corpus, processor):
    dataset = AudioTextDataset(load_records(str(corpus)), target_sr=SR)
    item = dataset[0]
    assert set(item) >= {"audio", "captions", "label", "index"}
    assert item["audio"].dtype == np.float32 and item["audio"].shape == (2 * SR,)
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, collate_fn=SupClapCollator(processor))
    batch = next(iter(loader))
    assert set(batch) == BATCH_KEYS and "labels" not in batch
    assert batch["input_features"].shape == (4, 1, 201, 16) and batch["input_features"].dtype == torch.float32
    assert (
        batch["input_ids"].dtype == torch.long and batch["input_ids"].shape == batch["attention_mask"].shape
    )
    assert batch["input_ids"].shape[0] == 4 and batch["input_ids"].shape[1] <= 64
    assert batch["is_longer"].shape == (4, 1) and batch["is_longer"].dtype == torch.bool
    assert batch["return_loss"] is True
    torch.manual_seed(0)
    model = ClapModel(
        ClapConfig(text_config=tiny_text_config(), audio_config=tiny_audio_config(), projection_dim=16)
    )
    out = model(**batch)
    assert out.loss is not None and torch.isfinite(out.loss)


def test_collator_is_deterministic(corpus, processor):
    dataset = AudioTextDataset(load_records(str(corpus)), target_sr=SR)
    items = [dataset[i] for i in range(8)]
    a = SupClapCollator(processor, seed=0)(items)
    b = SupClapCollator(processor, seed=0)(items)
    assert all(torch.equal(a[k], b[k]) for k in BATCH_KEYS - {"return_loss"})
    # Different epochs / seeds draw other captions (8 clips with 2-5 captions each).
    draws = set()
    for epoch in range(6):
        dataset.set_epoch(epoch)
        draws.add(
            tuple(
                map(tuple, SupClapCollator(processor)([dataset[i] for i in range(8)])["input_ids"].tolist())
            )
        )
    assert len(draws) > 1
    first = SupClapCollator(processor, caption_choice="first", max_text_length=8)(items)
    expected = processor.tokenizer(
        [it["captions"][0] for it in items], padding=True, truncation=True, max_length=8
    )
    assert first["input_ids"].tolist() == expected["input_ids"]

    # Random crops of long audio are seeded too, and the global numpy state is left alone.
    long_items = [{"audio": _tone(3.0, freq=200 + 50 * i) * np.linspace(0, 1, 3 * SR, dtype=np.float32),
                   "captions": ["x"], "index": i} for i in range(3)]  # fmt: skip
    np.random.seed(123)
    expected_next = np.random.rand()
    np.random.seed(123)
    c1 = SupClapCollator(processor, seed=5)(long_items)
    assert np.random.rand() == expected_next
    c2 = SupClapCollator(processor, seed=5)(long_items)
    assert c1["is_longer"].all() and torch.equal(c1["input_features"], c2["input_features"])


def test_collator_same_batches_with_workers(corpus, processor):
    dataset = AudioTextDataset(load_records(str(corpus)), target_sr=SR)

    def batches(num_workers: int) -> list[dict]:
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=8, num_workers=num_workers, collate_fn=SupClapCollator(processor, seed=7)
        )
        return list(loader)

    for a, b in zip(batches(0), batches(2)):
        assert torch.equal(a["input_ids"], b["input_ids"])
        assert torch.equal(a["input_features"], b["input_features"])


def test_collator_raw_rows_and_bad_samples(corpus, processor, tmp_path):
    rows = _read_metadata(corpus, "validation")
    raw = [
        {"audio": {"bytes": (corpus / "validation" / r["file_name"]).read_bytes(), "path": None},
         "captions": r["captions"], "label": r["label"]}
        for r in rows
    ]  # fmt: skip
    raw[1]["captions"] = "a single string caption"
    collator = SupClapCollator(processor)
    batch = collator([*raw, None])
    assert set(batch) == BATCH_KEYS and batch["input_features"].shape == (3, 1, 201, 16)
    with pytest.raises(ValueError, match="every sample of this batch was bad"):
        collator([None, None])

    (tmp_path / "broken.wav").write_text("not audio")
    records = load_records(str(corpus), split="test")
    records.append(AudioTextRecord(audio=str(tmp_path / "broken.wav"), captions=["x"], source="broken row"))
    records.append(AudioTextRecord(audio=str(tmp_path / "gone.wav"), captions=["x"], source="gone row"))
    strict = AudioTextDataset(records, SR)
    with pytest.raises(BadSampleError, match="broken row"):
        strict[3]
    lenient = AudioTextDataset(records, SR, on_bad_sample="skip")
    items = [lenient[i] for i in range(len(lenient))]
    assert items[3] is None and items[4] is None
    assert lenient.num_bad == 2 and lenient.bad_sources == ["broken row", "gone row"]
    assert collator(items)["input_ids"].shape[0] == 3

    good, bad = scan_records(records, SR)
    assert len(good) == 3 and [r.source for r, _ in bad] == ["broken row", "gone row"]
    assert "cannot decode" in bad[0][1] and "not found" in bad[1][1]
    with pytest.raises(ValueError, match="on_bad_sample"):
        AudioTextDataset(records, SR, on_bad_sample="ignore")
