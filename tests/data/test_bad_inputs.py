"""Catalogue of bad inputs: every case is a test with one clear outcome.

Outcomes: VALID (decoded, batched and trained on), BAD SAMPLE (``BadSampleError`` naming the metadata
file + row and the audio file; ``--on_bad_sample error`` stops before training, ``skip`` drops it,
counts it and reports it at the end), LOAD ERROR (``ValueError`` from ``load_records`` naming the
file, row and field: no flag skips those, the metadata itself is wrong), WARNING (the run goes on;
counted in ``metrics.json`` and printed at the end).

=====================================  ===========  =================================================
input                                  outcome      handled in
=====================================  ===========  =================================================
missing audio file                     BAD SAMPLE   loading.decode_audio ("audio file not found")
zero-byte file                         BAD SAMPLE   loading.decode_audio ("empty (0 bytes)")
WAV with a header and 0 frames         BAD SAMPLE   loading.decode_audio ("no samples")
truncated header / FLAC, corrupt FLAC  BAD SAMPLE   loading._read_soundfile ("cannot decode")
WAV truncated inside its data          VALID        libsndfile reads the frames present (streamed WAVs
                                                    carry the same header mismatch and are valid)
text / PNG file named .wav, a folder   BAD SAMPLE   loading.decode_audio ("cannot decode", "not a file")
NaN / inf samples                      BAD SAMPLE   loading.decode_audio ("NaN/inf sample(s)")
silence, clipping float (>1.0)         VALID        (log-mel floor 1e-10: finite features)
8/11.025/22.05/44.1/48/96 kHz          VALID        loading.decode_audio (resample_poly)
stereo, 6 channels                     VALID        loading.decode_audio (channel mean)
U8/S8/16/24/32-bit PCM, float, double  VALID        loading.decode_audio (soundfile -> float32)
FLAC, OGG/Vorbis, MP3                  VALID        loading.decode_audio (libsndfile)
clip < 10 ms (80 samples, 1 sample)    VALID        features (repeat-padded to the window)
10-minute clip                         VALID        decoded once (~2x its float32 size), randomly
                                                    cropped by the collator (seeded)
empty / whitespace caption, [] , null  LOAD ERROR   loading.parse_caption_cell (file line, column)
caption that is not a string           LOAD ERROR   loading.parse_caption_cell
caption far beyond the token limit     VALID        collator: tokenizer truncation at max_text_length
non-UTF-8 metadata                     LOAD ERROR   loading._check_utf8 (file, line, byte)
UTF-8 metadata with a BOM (Excel)      VALID        loading._iter_csv/_iter_jsonl (utf-8-sig)
invalid JSON line, extra CSV cells     LOAD ERROR   loading._iter_jsonl / _iter_csv
missing caption / audio column         LOAD ERROR   loading.detect_caption_columns / _check_columns /
                                                    _pick_audio_column
empty audio cell                       LOAD ERROR   loading._resolve_audio
empty dataset (0-byte, header only)    LOAD ERROR   loading._rows_to_records / _iter_csv
all samples bad, < 2 usable clips      RUN ERROR    data.sources.build_training_data (after the scan)
a bad row in the validation/test split LOAD ERROR   data.sources.load_splits (no longer taken for a
                                                    missing split: MissingSplitError only)
single .csv/.jsonl as --train_data     no val/test  data.sources.load_splits (was: the training
                                                    rows again, i.e. evaluation on training data)
same clip twice in one split           WARNING      data.checks (each copy is a negative of the other)
same file *name* in train/ and test/   VALID        paths resolve per split folder; content differs
same clip in train and test            WARNING      data.checks.check_splits ("leakage")
=====================================  ===========  =================================================
"""

from __future__ import annotations

import json
import shutil
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers.cli import SMALL_CORPUS_CLIPS, run_in_process

from modeling_supclap import SupClapConfig, SupClapModel
from modeling_supclap.cli.train import main as train_main
from modeling_supclap.data import (
    AudioTextDataset,
    BadSampleError,
    SupClapCollator,
    decode_audio,
    load_records,
    scan_records,
)
from modeling_supclap.data.checks import BadSamplesError, check_splits, format_data_report
from modeling_supclap.data.sources import TrainingDataSpec, load_splits
from modeling_supclap.demo import build_demo_processor

SR = 16000


def _tone(seconds: float = 0.5, sr: int = SR, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    mono = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return mono if channels == 1 else np.stack([mono * (1 - 0.1 * c) for c in range(channels)], axis=1)


def _write_metadata(folder: Path, rows: list[dict], fmt: str = "jsonl") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"metadata.{fmt}"
    with open(path, "w", encoding="utf-8", newline="") as f:
        if fmt == "jsonl":
            f.writelines(json.dumps(row) + "\n" for row in rows)
        else:
            import csv

            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def demo_corpus(small_corpus_cache) -> Path:
    return small_corpus_cache / f"demo_corpus_{SMALL_CORPUS_CLIPS}"


@pytest.fixture(scope="module")
def model_dir(demo_corpus, tmp_path_factory) -> Path:
    """A saved tiny SupClap model + demo processor: what --model_name_or_path needs for custom data."""
    folder = tmp_path_factory.mktemp("tiny_supclap")
    config = SupClapConfig.tiny()
    torch.manual_seed(0)
    SupClapModel(config).save_pretrained(folder)
    processor = build_demo_processor(demo_corpus, config.audio_config, cache_dir=folder.parent / "processors")
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def processor(model_dir):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(model_dir)


# --------------------------------------------------------------------------------------------------
# Audio cases: one file each, written next to a good clip
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AudioCase:
    id: str
    write: Callable[[Path], str]  # writes the case's file into a folder, returns its file_name
    error: str | None = None  # None: valid; else a regex of the BadSampleError message
    seconds: float | None = None  # expected duration of a valid clip after decoding
    check: Callable[[np.ndarray], None] | None = None


def _wav(name: str, data: np.ndarray, sr: int = SR, **kwargs) -> Callable[[Path], str]:
    def write(folder: Path) -> str:
        sf.write(folder / name, data, sr, **kwargs)
        return name

    return write


def _raw(name: str, make: Callable[[Path], bytes | None]) -> Callable[[Path], str]:
    def write(folder: Path) -> str:
        content = make(folder)
        if content is not None:
            (folder / name).write_bytes(content)
        return name

    return write


def _encoded(fmt: str, subtype: str, seconds: float = 0.5) -> bytes:
    import io

    buffer = io.BytesIO()
    sf.write(buffer, _tone(seconds), SR, format=fmt, subtype=subtype)
    return buffer.getvalue()


def _corrupt_flac(_: Path) -> bytes:
    data = bytearray(_encoded("FLAC", "PCM_16", 1.0))
    data[200:400] = np.random.default_rng(0).integers(0, 256, 200, dtype=np.uint8).tobytes()
    return bytes(data)


def _with_nonfinite(value: float) -> np.ndarray:
    data = _tone(0.25)
    data[100] = value
    return data


def _mkdir(folder: Path) -> None:
    (folder / "folder.wav").mkdir()


def _allclose_to(expected: np.ndarray, atol: float) -> Callable[[np.ndarray], None]:
    return lambda out: np.testing.assert_allclose(out, expected, atol=atol)


_STEREO = _tone(0.5, channels=2)
_SIX = _tone(0.5, channels=6)

AUDIO_CASES = [
    # --- bad samples -------------------------------------------------------------------------------
    AudioCase("missing-file", _raw("missing.wav", lambda f: None), r"audio file not found: .*missing\.wav"),
    AudioCase(
        "zero-byte-file", _raw("empty.wav", lambda f: b""), r"audio file is empty \(0 bytes\): .*empty\.wav"
    ),
    AudioCase("header-only-wav", _wav("noframes.wav", np.zeros(0, np.float32)), r"audio has no samples"),
    AudioCase(
        "truncated-header",
        _raw("cut.wav", lambda f: _encoded("WAV", "PCM_16")[:30]),
        r"cannot decode file .*cut\.wav as audio",
    ),
    AudioCase(
        "truncated-flac",
        _raw("cut.flac", lambda f: _encoded("FLAC", "PCM_16", 1.0)[:1500]),
        r"cannot decode file .*cut\.flac as audio",
    ),
    AudioCase("corrupt-flac", _raw("corrupt.flac", _corrupt_flac), r"cannot decode file .*corrupt\.flac"),
    AudioCase(
        "text-file-named-wav",
        _raw("notes.wav", lambda f: b"this is not audio\n" * 20),
        r"cannot decode file .*notes\.wav as audio.*Supported are",
    ),
    AudioCase(
        "png-named-wav",
        _raw("image.wav", lambda f: b"\x89PNG\r\n\x1a\n" + bytes(200)),
        r"cannot decode file .*image\.wav",
    ),
    AudioCase(
        "directory", lambda f: (_mkdir(f), "folder.wav")[1], r"audio path is not a file: .*folder\.wav"
    ),
    AudioCase("nan-sample", _wav("nan.wav", _with_nonfinite(np.nan), subtype="FLOAT"), r"1 NaN/inf sample"),
    AudioCase("inf-sample", _wav("inf.wav", _with_nonfinite(np.inf), subtype="FLOAT"), r"1 NaN/inf sample"),
    AudioCase(
        "neg-inf-double",
        _wav("ninf.wav", _with_nonfinite(-np.inf), subtype="DOUBLE"),
        r"1 NaN/inf sample",
    ),
    # --- valid ---------------------------------------------------------------------------------------
    AudioCase(
        "silence",
        _wav("silence.wav", np.zeros(SR, np.float32)),
        seconds=1.0,
        check=lambda out: np.testing.assert_array_equal(out, 0.0),
    ),
    AudioCase("clipping-float", _wav("loud.wav", 3.0 * _tone(0.5), subtype="FLOAT"), seconds=0.5),
    AudioCase(
        "truncated-inside-data",
        _raw("half.wav", lambda f: (lambda b: b[: 44 + (len(b) - 44) // 2])(_encoded("WAV", "PCM_16", 1.0))),
        seconds=0.5,
    ),
    *[
        AudioCase(f"rate-{sr}", _wav(f"sr{sr}.wav", _tone(0.5, sr=sr), sr=sr), seconds=0.5)
        for sr in (8000, 11025, 22050, 44100, 48000, 96000)
    ],
    AudioCase("stereo", _wav("stereo.wav", _STEREO), seconds=0.5, check=_allclose_to(_STEREO.mean(1), 1e-4)),
    AudioCase(
        "six-channels",
        _wav("six.wav", _SIX, subtype="PCM_24"),
        seconds=0.5,
        check=_allclose_to(_SIX.mean(1), 1e-5),
    ),
    *[
        AudioCase(
            f"wav-{subtype.lower()}",
            _wav(f"{subtype}.wav", _tone(0.5), subtype=subtype),
            seconds=0.5,
            check=_allclose_to(_tone(0.5), {"PCM_U8": 2e-2, "PCM_16": 1e-4}.get(subtype, 1e-6)),
        )
        for subtype in ("PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE")
    ],
    AudioCase("aiff-pcm-s8", _raw("s8.aiff", lambda f: _encoded("AIFF", "PCM_S8")), seconds=0.5),
    AudioCase("flac", _raw("clip.flac", lambda f: _encoded("FLAC", "PCM_24")), seconds=0.5),
    AudioCase("ogg-vorbis", _raw("clip.ogg", lambda f: _encoded("OGG", "VORBIS")), seconds=0.5),
    AudioCase("mp3", _raw("clip.mp3", lambda f: _encoded("MP3", "MPEG_LAYER_III")), seconds=None),
    AudioCase("5-ms-clip", _wav("short.wav", _tone(0.005)), seconds=0.005),
    AudioCase("one-sample", _wav("one.wav", _tone(0.5)[:1] + 0.25), seconds=1 / SR),
    AudioCase("one-sample-at-96k", _wav("one96.wav", np.full(1, 0.25, np.float32), sr=96000)),
]
BAD_AUDIO = [c for c in AUDIO_CASES if c.error]
VALID_AUDIO = [c for c in AUDIO_CASES if not c.error]


def _case_folder(case: AudioCase, root: Path) -> Path:
    """An audiofolder: a good clip (row 1) and the case's file (row 2)."""
    folder = root / case.id
    folder.mkdir()
    sf.write(folder / "good.wav", _tone(0.5, freq=330.0), SR)
    name = case.write(folder)
    _write_metadata(
        folder,
        [
            {"file_name": "good.wav", "captions": ["a clean tone"], "label": "tone"},
            {"file_name": name, "captions": [f"the {case.id} case"], "label": "odd"},
        ],
    )
    return folder


@pytest.mark.parametrize("case", VALID_AUDIO, ids=lambda c: c.id)
def test_valid_audio_is_decoded_and_batched(case, tmp_path, processor):
    records = load_records(_case_folder(case, tmp_path))
    audio = decode_audio(records[1].audio, SR, records[1].source)
    assert audio.dtype == np.float32 and audio.ndim == 1 and audio.size > 0
    assert np.all(np.isfinite(audio))
    if case.seconds is not None:
        assert audio.shape[0] == pytest.approx(case.seconds * SR, abs=2)
    if case.check is not None:
        case.check(audio)
    good, bad = scan_records(records, SR)
    assert len(good) == 2 and not bad
    dataset = AudioTextDataset(records, SR)  # on_bad_sample="error": nothing raises
    batch = SupClapCollator(processor, seed=0)([dataset[0], dataset[1]])
    assert batch["input_features"].shape[0] == 2 and batch["input_ids"].shape[0] == 2
    assert torch.isfinite(batch["input_features"]).all()


@pytest.mark.parametrize("case", BAD_AUDIO, ids=lambda c: c.id)
def test_bad_audio_names_file_and_row_or_is_skipped_and_counted(case, tmp_path, processor):
    folder = _case_folder(case, tmp_path)
    records = load_records(folder)  # loading never opens audio: the metadata is fine
    good_record, bad_record = records
    row = f"{folder / 'metadata.jsonl'} line 2"
    assert bad_record.source == row

    with pytest.raises(BadSampleError, match=case.error) as info:
        decode_audio(bad_record.audio, SR, bad_record.source)
    assert str(info.value).startswith(row + ": ") and info.value.source == row

    # on_bad_sample="error": the dataset raises the same error (in a DataLoader worker, too).
    strict = AudioTextDataset(records, SR)
    assert strict[0] is not None
    with pytest.raises(BadSampleError, match=case.error):
        strict[1]
    # on_bad_sample="skip": None, counted, dropped by the collator.
    lenient = AudioTextDataset(records, SR, on_bad_sample="skip")
    items = [lenient[0], lenient[1]]
    assert items[1] is None and lenient.num_bad == 1 and lenient.bad_sources == [row]
    assert SupClapCollator(processor)(items)["input_ids"].shape[0] == 1

    # The up-front scan of train(): error names row and audio file; skip drops, counts and lists it.
    audio_name = Path(bad_record.audio).name
    with pytest.raises(BadSamplesError, match=r"1 bad sample\(s\) in the train split") as info:
        check_splits({"train": records, "test": None}, SR, "error")
    assert row in str(info.value) and audio_name in str(info.value)
    clean, report = check_splits({"train": records, "test": None}, SR, "skip")
    assert clean == {"train": [good_record], "test": None}
    skipped = report["skipped_samples"]
    assert skipped["total"] == 1 and skipped["by_split"] == {"train": 1}
    assert skipped["samples"][0]["source"] == row and audio_name in skipped["samples"][0]["error"]
    assert report["num_records"]["train"] == {"loaded": 2, "used": 1}
    summary = format_data_report(report)
    assert "Skipped 1 bad sample(s)" in summary and audio_name in summary
    json.dumps(report)  # goes into metrics.json as is


def test_bad_audio_in_bytes_and_array_records(processor):
    """Hub/saved datasets hold bytes or arrays instead of paths: same outcomes."""
    assert decode_audio({"array": np.zeros((2, 80)), "sampling_rate": 8000}, SR, "r").shape == (160,)
    with pytest.raises(BadSampleError, match=r"row 3: audio has 1 NaN/inf"):
        decode_audio({"array": _with_nonfinite(np.nan), "sampling_rate": SR}, SR, "row 3")
    with pytest.raises(BadSampleError, match=r"row 4: audio bytes are empty"):
        decode_audio({"bytes": b"", "path": "x.wav"}, SR, "row 4")
    with pytest.raises(BadSampleError, match=r"row 5: cannot decode audio bytes"):
        decode_audio(b"RIFF1234WAVEjunk", SR, "row 5")
    with pytest.raises(BadSampleError, match=r"row 6: audio dict has an 'array' but no 'sampling_rate'"):
        decode_audio({"array": np.zeros(10)}, SR, "row 6")
    with pytest.raises(BadSampleError, match=r"row 7: audio array must be 1-D or 2-D"):
        decode_audio({"array": np.zeros((2, 2, 2)), "sampling_rate": SR}, SR, "row 7")


def test_ten_minute_clip_is_decoded_and_randomly_cropped_in_bounded_time_and_memory(tmp_path, processor):
    seconds = 600
    rng = np.random.default_rng(0)
    path = tmp_path / "ten_minutes.wav"
    sf.write(path, (0.1 * rng.standard_normal(seconds * SR)).astype(np.float32), SR, subtype="PCM_16")
    raw_float32_mb = seconds * SR * 4 / 1e6  # 38 MB

    tracemalloc.start()
    started = time.perf_counter()
    audio = decode_audio(str(path), SR, "long")
    items = [{"audio": audio, "captions": ["noise"], "index": 0}]
    a = SupClapCollator(processor, seed=0)(items)
    b = SupClapCollator(processor, seed=1)(items)
    elapsed = time.perf_counter() - started
    peak_mb = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()

    assert audio.shape == (seconds * SR,)
    assert a["is_longer"].all() and a["input_features"].shape == b["input_features"].shape
    window = processor.feature_extractor.nb_max_samples
    assert a["input_features"].shape[2] == window // processor.feature_extractor.hop_length + 1
    assert not torch.equal(a["input_features"], b["input_features"])  # a random crop, seeded
    torch.testing.assert_close(
        SupClapCollator(processor, seed=0)(items)["input_features"], a["input_features"]
    )
    # Measured ~0.15 s and ~3x the clip's float32 size (soundfile buffer, mono copy, float64 crop copy).
    assert elapsed < 20, f"decode + 3 crops of a 10-minute clip took {elapsed:.1f} s"
    assert peak_mb < 6 * raw_float32_mb, f"peak {peak_mb:.0f} MB for a {raw_float32_mb:.0f} MB clip"


# --------------------------------------------------------------------------------------------------
# Metadata cases: load_records fails naming the file, row and field
# --------------------------------------------------------------------------------------------------


def _jsonl(*rows) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()


_GOOD_ROW = {"file_name": "good.wav", "captions": ["a tone"]}

METADATA_ERRORS = [
    ("empty-caption", "jsonl", _jsonl(_GOOD_ROW, {"file_name": "good.wav", "captions": ""}),
     r"metadata\.jsonl line 2: empty caption in column 'captions'"),
    ("whitespace-caption", "jsonl", _jsonl(_GOOD_ROW, {"file_name": "good.wav", "captions": " \t\n "}),
     r"line 2: empty caption in column 'captions'"),
    ("whitespace-in-list", "jsonl", _jsonl({"file_name": "good.wav", "captions": ["fine", "  "]}),
     r"line 1: empty caption \(item 1\) in column 'captions'"),
    ("empty-caption-list", "jsonl", _jsonl({"file_name": "good.wav", "captions": []}),
     r"line 1: caption column 'captions' holds an empty list"),
    ("null-caption", "jsonl", _jsonl({"file_name": "good.wav", "captions": None}),
     r"line 1: caption column 'captions' is empty \(null\)"),
    ("number-caption", "jsonl", _jsonl({"file_name": "good.wav", "captions": 5}),
     r"line 1: caption column 'captions' holds int"),
    ("empty-csv-caption", "csv", b"file_name,captions\ngood.wav,a tone\ngood.wav,\n",
     r"metadata\.csv line 3: empty caption in column 'captions'"),
    ("empty-csv-json-list", "csv", b'file_name,captions\ngood.wav,"[]"\n', r"line 2: .*holds an empty list"),
    ("missing-caption-column", "jsonl", _jsonl({"file_name": "good.wav", "description": "a tone"}),
     r"no caption column found \(looked for .*\); columns are \['file_name', 'description'\]"),
    ("missing-audio-column", "csv", b"sound,captions\ngood.wav,a tone\n",
     r"metadata\.csv line 2: no audio column 'audio' \(nor audio, file_name, filename, .*\); columns are "
     r"\['sound', 'captions'\]. Name it with --audio_column"),
    ("empty-audio-cell", "csv", b"file_name,captions\n,a tone\n",
     r"line 2: audio column 'file_name' is empty"),
    ("non-utf8-csv", "csv", "file_name,captions\ngood.wav,a tone\ngood.wav,caf\u00e9\n".encode("latin-1"),
     r"metadata\.csv line 3: not UTF-8 text \(byte 0xe9"),
    ("non-utf8-jsonl", "jsonl", b'{"file_name": "good.wav", "captions": "caf\xe9"}\n',
     r"metadata\.jsonl line 1: not UTF-8 text \(byte 0xe9"),
    ("invalid-json", "jsonl", _jsonl(_GOOD_ROW, '{"file_name": "good.wav", "captions": '),
     r"line 2: invalid JSON"),
    ("extra-csv-cells", "csv", b"file_name,captions\ngood.wav,a tone,extra\n",
     r"line 2: more cells than header"),
    ("zero-byte-csv", "csv", b"", r"metadata\.csv: no header row \(empty CSV\)"),
    ("header-only-csv", "csv", b"file_name,captions\n", r"metadata\.csv: no rows \(empty dataset\)"),
    ("zero-byte-jsonl", "jsonl", b"", r"metadata\.jsonl: no rows \(empty dataset\)"),
    ("blank-lines-jsonl", "jsonl", b"\n\n  \n", r"no rows \(empty dataset\)"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("fmt", "content", "error"), [c[1:] for c in METADATA_ERRORS], ids=[c[0] for c in METADATA_ERRORS]
)
def test_bad_metadata_is_a_load_error_naming_file_row_and_field(tmp_path, fmt, content, error):
    sf.write(tmp_path / "good.wav", _tone(0.2), SR)
    (tmp_path / f"metadata.{fmt}").write_bytes(content)
    with pytest.raises(ValueError, match=error) as info:
        load_records(str(tmp_path))
    assert str(tmp_path / f"metadata.{fmt}") in str(info.value)
    assert not isinstance(info.value, UnicodeDecodeError)


def test_empty_saved_dataset_and_missing_path(tmp_path):
    from datasets import Dataset

    Dataset.from_dict({"audio": [], "captions": []}).save_to_disk(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="empty"):
        load_records(str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match=r"nowhere\.csv: no such file"):
        load_records(str(tmp_path / "nowhere.csv"))


def test_utf8_bom_and_non_ascii_metadata_are_valid(tmp_path, processor):
    sf.write(tmp_path / "good.wav", _tone(0.2), SR)
    sf.write(tmp_path / "caf\u00e9 \u97f3.wav", _tone(0.2, freq=880), SR)
    text = (
        "file_name,captions,label\n"
        "good.wav,un caf\u00e9 bruyant \U0001f3b5,tone\n"
        "caf\u00e9 \u97f3.wav,\u72ac\u304c\u5420\u3048\u308b,dog\n"
    )
    (tmp_path / "metadata.csv").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))  # Excel's "CSV UTF-8"
    records = load_records(str(tmp_path))
    assert [r.captions for r in records] == [
        ["un caf\u00e9 bruyant \U0001f3b5"],
        ["\u72ac\u304c\u5420\u3048\u308b"],
    ]
    assert Path(records[1].audio).exists()
    batch = SupClapCollator(processor)([{"audio": _tone(0.2), "captions": r.captions} for r in records])
    assert (batch["input_ids"] != processor.tokenizer.unk_token_id).all()  # byte-level BPE: no <unk>


def test_caption_far_beyond_the_token_limit_is_truncated(processor):
    long_caption = " ".join(["a very long and detailed caption about beeps and hums"] * 400)  # ~4000 words
    items = [{"audio": _tone(0.3), "captions": [long_caption]}, {"audio": _tone(0.3), "captions": ["short"]}]
    batch = SupClapCollator(processor, max_text_length=64)(items)
    assert batch["input_ids"].shape == (2, 64)
    assert batch["input_ids"][0, -1] == processor.tokenizer.eos_token_id  # cut, then closed
    assert batch["attention_mask"][0].all() and not batch["attention_mask"][1].all()
    torch.manual_seed(0)
    model = SupClapModel(SupClapConfig.tiny()).train()
    assert torch.isfinite(model(**batch).loss)


# --------------------------------------------------------------------------------------------------
# Duplicates, leakage, splits
# --------------------------------------------------------------------------------------------------


def _clip(folder: Path, name: str, freq: float) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    sf.write(folder / name, _tone(0.3, freq=freq), SR)
    return name


def test_same_clip_twice_in_a_split_is_allowed_but_counted(tmp_path):
    _clip(tmp_path, "a.wav", 300)
    _clip(tmp_path, "b.wav", 500)
    shutil.copy(tmp_path / "a.wav", tmp_path / "a_copy.wav")  # byte-identical under another name
    meta = _write_metadata(tmp_path, [
        {"file_name": "a.wav", "captions": ["first caption of a"]},
        {"file_name": "b.wav", "captions": ["b"]},
        {"file_name": "a.wav", "captions": ["second caption of a, in its own row"]},
        {"file_name": "a_copy.wav", "captions": ["a again"]},
    ])  # fmt: skip
    records = load_records(str(tmp_path))
    assert len(records) == 4  # a layout with one row per caption is legitimate: nothing is dropped
    clean, report = check_splits({"train": records}, SR, "error")  # a warning, never an error
    assert clean["train"] == records
    assert report["duplicates"] == {"train": [[f"{meta} line 1", f"{meta} line 3", f"{meta} line 4"]]}
    summary = format_data_report(report)
    assert "WARNING: 2 record(s) of the train split repeat an earlier clip" in summary
    assert f"{meta} line 1 = {meta} line 3 = {meta} line 4" in summary


def test_same_file_name_in_different_splits_is_not_a_duplicate(tmp_path):
    for split, freq in (("train", 300), ("test", 700)):
        _clip(tmp_path / split, "clip.wav", freq)
        _clip(tmp_path / split, "other.wav", freq + 50)
        _write_metadata(tmp_path / split, [{"file_name": "clip.wav", "captions": [split]},
                                           {"file_name": "other.wav", "captions": ["o"]}])  # fmt: skip
    train, test = load_records(str(tmp_path)), load_records(str(tmp_path), split="test")
    assert train[0].audio == str(tmp_path / "train" / "clip.wav")
    assert test[0].audio == str(tmp_path / "test" / "clip.wav")
    _, report = check_splits({"train": train, "test": test}, SR)
    assert report["duplicates"] == {} and report["train_overlap"] == {}
    assert format_data_report(report) == ""


def test_identical_clip_in_train_and_test_is_reported_as_leakage(tmp_path):
    for split in ("train", "validation", "test"):
        _clip(tmp_path / split, f"{split}_only.wav", {"train": 200, "validation": 400, "test": 600}[split])
        _clip(tmp_path / split, f"{split}_2.wav", {"train": 250, "validation": 450, "test": 650}[split])
    shutil.copy(tmp_path / "train" / "train_only.wav", tmp_path / "test" / "leaked.wav")
    for split in ("train", "validation", "test"):
        names = sorted(p.name for p in (tmp_path / split).glob("*.wav"))
        _write_metadata(tmp_path / split, [{"file_name": n, "captions": [n]} for n in names])
    splits = load_splits(TrainingDataSpec(str(tmp_path)))
    clean, report = check_splits(splits, SR, "error")
    assert all(len(clean[s]) == len(splits[s]) for s in splits)  # nothing dropped, nothing raised
    assert list(report["train_overlap"]) == ["test"]
    [group] = report["train_overlap"]["test"]
    assert group[0].startswith(str(tmp_path / "train" / "metadata.jsonl"))
    assert group[1].startswith(str(tmp_path / "test" / "metadata.jsonl"))
    assert "train/test leakage" in format_data_report(report)


def test_single_table_has_no_validation_or_test_split(tmp_path):
    """A lone CSV used to give its training rows back as 'validation' and 'test' (evaluating on train)."""
    _clip(tmp_path, "a.wav", 300)
    _clip(tmp_path, "b.wav", 400)
    table = tmp_path / "pairs.csv"
    table.write_text("audio,captions\na.wav,one\nb.wav,two\n")
    splits = load_splits(TrainingDataSpec(str(table)))
    assert len(splits["train"]) == 2 and splits["validation"] is None and splits["test"] is None
    # An explicit --test_data pointing at the same table is honoured, and reported as leakage.
    splits = load_splits(TrainingDataSpec(str(table), test_data=str(table)))
    _, report = check_splits(splits, SR)
    assert len(report["train_overlap"]["test"]) == 2


def test_bad_row_in_an_evaluation_split_is_an_error_not_a_missing_split(tmp_path):
    for split in ("train", "test"):
        _clip(tmp_path / split, "a.wav", 300)
        _clip(tmp_path / split, "b.wav", 400)
    _write_metadata(tmp_path / "train", [{"file_name": "a.wav", "captions": ["a"]},
                                         {"file_name": "b.wav", "captions": ["b"]}])  # fmt: skip
    meta = _write_metadata(tmp_path / "test", [{"file_name": "a.wav", "captions": ["a"]},
                                               {"file_name": "b.wav", "captions": ["  "]}])  # fmt: skip
    with pytest.raises(ValueError, match=rf"{meta} line 2: empty caption"):
        load_splits(TrainingDataSpec(str(tmp_path)))
    meta.write_text(json.dumps({"file_name": "a.wav", "captions": ["a"]}) + "\n")
    splits = load_splits(TrainingDataSpec(str(tmp_path)))
    assert splits["validation"] is None and len(splits["test"]) == 1  # absent split: None, as before


def test_hub_dataset_without_a_split_is_a_missing_split(monkeypatch):
    import datasets

    from modeling_supclap.data.records import MissingSplitError

    def fake_load_dataset(name, split, data_dir=None):
        raise ValueError(f"Unknown split \"{split}\". Should be one of ['train'].")

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    with pytest.raises(MissingSplitError, match=r"someone/sounds: no split 'test'"):
        load_records("someone/sounds", split="test")


def test_all_bad_or_evaluation_split_emptied_by_skipping(tmp_path):
    good = _clip(tmp_path, "good.wav", 300)
    (tmp_path / "bad.wav").write_text("nope")
    records = [
        *load_records(str(_write_metadata(tmp_path, [{"file_name": good, "captions": ["g"]}]))),
    ]
    bad_records = load_records(
        str(_write_metadata(tmp_path / "b", [{"file_name": "../bad.wav", "captions": ["b"]}]))
    )
    clean, report = check_splits({"train": records, "test": bad_records}, SR, "skip")
    assert clean["test"] is None and report["skipped_samples"]["by_split"] == {"train": 0, "test": 1}
    clean, _ = check_splits({"train": bad_records}, SR, "skip")
    assert clean["train"] is None  # train() stops: "every sample of the training set ... is bad"
    with pytest.raises(ValueError, match="on_bad_sample"):
        check_splits({"train": records}, SR, "ignore")


# --------------------------------------------------------------------------------------------------
# The real CLI on a corpus mixing valid oddities and bad files
# --------------------------------------------------------------------------------------------------

BAD_FILES = ("missing.wav", "empty.wav", "nan.wav", "notes.wav")


@pytest.fixture(scope="module")
def messy_corpus(demo_corpus, tmp_path_factory) -> Path:
    """train/: 12 demo clips + valid oddities + 4 bad files; test/: 4 demo clips + 1 leaked train clip."""
    root = tmp_path_factory.mktemp("messy_corpus")
    (root / "test").mkdir()
    for split, count in (("train", 12), ("test", 4)):
        lines = (demo_corpus / split / "metadata.jsonl").read_text().splitlines()
        rows = [json.loads(line) for line in lines[:count]]
        (root / split).mkdir(exist_ok=True)
        for row in rows:
            shutil.copy(demo_corpus / split / row["file_name"], root / split / row["file_name"])
        if split == "train":
            first = rows[0]
            train = root / "train"
            sf.write(train / "silence.wav", np.zeros(2 * SR, np.float32), SR)
            sf.write(train / "stereo44k.wav", _tone(2.0, sr=44100, channels=2), 44100, subtype="PCM_24")
            sf.write(train / "six_ch_u8.wav", _tone(1.0, channels=6), SR, subtype="PCM_U8")
            sf.write(train / "five_ms.wav", _tone(0.005), SR, subtype="FLOAT")
            rng = np.random.default_rng(0)
            sf.write(train / "ten_min.wav", (0.05 * rng.standard_normal(600 * SR)).astype(np.float32), SR)
            (train / "empty.wav").write_bytes(b"")
            sf.write(train / "nan.wav", _with_nonfinite(np.nan), SR, subtype="FLOAT")
            (train / "notes.wav").write_text("not audio\n")
            long_caption = " ".join(["a long caption about a loud hum"] * 300)
            rows += [
                {"file_name": "silence.wav", "captions": ["silence"], "label": "silence"},
                {"file_name": "stereo44k.wav", "captions": ["a stereo tone"], "label": "tone"},
                {"file_name": "six_ch_u8.wav", "captions": ["six channels"], "label": "tone"},
                {"file_name": "five_ms.wav", "captions": ["a click"], "label": "click"},
                {"file_name": "ten_min.wav", "captions": [long_caption], "label": "hum"},
                {**first, "captions": ["the first clip, listed twice"]},
                *({"file_name": name, "captions": [name], "label": "bad"} for name in BAD_FILES),
            ]
            shutil.copy(train / first["file_name"], root / "test" / "leaked.wav")
        else:
            rows.append({"file_name": "leaked.wav", "captions": ["a leaked clip"], "label": "leak"})
        _write_metadata(root / split, rows)
    return root


def _cli_args(model_dir: Path, corpus: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--model_name_or_path", str(model_dir),
        "--train_data", str(corpus),
        "--output_dir", str(out),
        "--per_device_train_batch_size", "4",
        "--per_device_eval_batch_size", "8",
        "--max_steps", "4",
        "--warmup_steps", "1",
        "--eval_steps", "0",
        "--save_steps", "0",
        "--logging_steps", "1",
        "--dataloader_num_workers", "0",
        "--report_to", "none",
        "--use_cpu",
        *extra,
    ]  # fmt: skip


@pytest.mark.slow
def test_cli_on_bad_sample_error_stops_before_training_naming_bad_files(model_dir, messy_corpus, tmp_path):
    out = tmp_path / "run"
    # --on_bad_sample error is the default
    result = run_in_process(train_main, _cli_args(model_dir, messy_corpus, out))
    assert result.returncode != 0
    assert "BadSamplesError: 4 bad sample(s) in the train split" in result.stderr
    meta = messy_corpus / "train" / "metadata.jsonl"
    for name in BAD_FILES:
        assert str(messy_corpus / "train" / name) in result.stderr, name
    assert f"{meta} line 19: audio file not found" in result.stderr
    assert "NaN/inf" in result.stderr and "--on_bad_sample skip" in result.stderr
    assert "training:" not in result.stderr  # failed fast: not one step was taken
    assert not (out / "model.safetensors").exists()


@pytest.mark.slow
def test_cli_on_bad_sample_skip_trains_and_reports_what_was_skipped(model_dir, messy_corpus, tmp_path):
    out = tmp_path / "run"
    result = run_in_process(train_main, _cli_args(model_dir, messy_corpus, out, "--on_bad_sample", "skip"))
    assert result.returncode == 0, result.stderr[-4000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_state"]["step"] == 4
    assert all(np.isfinite(row["loss"]) for row in metrics["history"])

    skipped = metrics["skipped_samples"]
    assert skipped["total"] == 4 and skipped["by_split"] == {"train": 4, "test": 0}
    for name in BAD_FILES:
        assert sum(str(messy_corpus / "train" / name) in s["error"] for s in skipped["samples"]) == 1, name
    assert metrics["data_checks"]["num_records"]["train"] == {"loaded": 22, "used": 18}
    # The end-of-run report, after the test results.
    report = result.stdout[result.stdout.index("Data checks:") :]
    assert "Skipped 4 bad sample(s) (--on_bad_sample skip): train 4" in report
    for name in BAD_FILES:
        assert name in report, name
    assert "WARNING: 1 record(s) of the train split repeat an earlier clip" in report
    assert "WARNING: 1 clip(s) of the test split are also in the train split" in report
    assert [len(g) for g in metrics["data_checks"]["train_overlap"]["test"]] == [3]  # 2 train rows + 1 test
    assert metrics["test"]["num_clips"] == 5 and metrics["test"]["num_skipped"] == 0
