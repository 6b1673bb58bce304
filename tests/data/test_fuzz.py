"""Property-based fuzzing (hypothesis) of everything the project parses: metadata cells and files,
caption lists, audio bytes, checkpoint folders. Over 10,000 cases in all; each must end in a result
or in one of the project's clear errors (naming the file, row or field), never deep inside a library.

Each fuzzer's case count is asserted after it (``_ran_every_case``), in the worker that ran it: a check
at the module's end saw only its own worker's fuzzers when ``-n`` split the module (a flaky failure).
"""

from __future__ import annotations

import io
import json
import shutil
import string

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modeling_supclap import SupClapConfig, SupClapModel
from modeling_supclap.data.audio import decode_audio
from modeling_supclap.data.readers import load_records
from modeling_supclap.data.records import BadSampleError, ColumnSpec
from modeling_supclap.data.rows import row_to_record
from modeling_supclap.training import checkpointing
from modeling_supclap.training.state import TrainState

CASES: dict[str, int] = {}  # cases run, by fuzzer (``_count``)
EXAMPLES: dict[str, int] = {}  # cases asked for, by fuzzer (``fuzz``)


def fuzz(name: str, examples: int) -> settings:
    """hypothesis settings for the fuzzer ``name``: ``examples`` cases, the same ones every run."""
    EXAMPLES[name] = examples
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        database=None,
    )


def _count(name: str) -> None:
    CASES[name] = CASES.get(name, 0) + 1


@pytest.fixture(autouse=True)
def _ran_every_case():
    """After each test: a fuzzer that ran ran every case asked of it (11,000 in all)."""
    before = dict(CASES)
    yield
    for name, count in CASES.items():
        if count != before.get(name, 0):
            assert count - before.get(name, 0) >= EXAMPLES[name], (name, count - before.get(name, 0))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)


# --- caption cells and rows ----------------------------------------------------------------------
@pytest.mark.slow
@fuzz("rows", 3500)
@given(
    captions=json_values,
    label=json_values,
    audio=st.one_of(st.none(), st.text(max_size=10), st.binary(max_size=8), json_values),
    from_text=st.booleans(),
)
def test_fuzz_rows(captions, label, audio, from_text):
    _count("rows")
    row = {"audio": audio, "captions": captions, "label": label}
    try:
        columns = ColumnSpec(audio_column="audio", caption_columns=("captions",), label_column="label")
        record = row_to_record(row, "metadata.jsonl line 7", columns, (), from_text)
    except ValueError as error:  # BadSampleError is a ValueError too
        assert "metadata.jsonl line 7" in str(error)
        return
    assert record.captions and all(isinstance(c, str) and c.strip() for c in record.captions)
    assert record.label is None or isinstance(record.label, str)


# --- metadata files ------------------------------------------------------------------------------
lines = st.lists(
    st.one_of(
        st.text(alphabet=string.printable, max_size=40),
        st.builds(
            json.dumps, st.dictionaries(st.sampled_from(["file_name", "captions", "label", "x"]), json_values)
        ),
    ),
    max_size=5,
)


@pytest.mark.slow
@fuzz("metadata files", 1500)
@given(content=lines, kind=st.sampled_from(["jsonl", "csv"]), raw=st.binary(max_size=20))
def test_fuzz_metadata_files(tmp_path_factory, content, kind, raw):
    _count("metadata files")
    folder = tmp_path_factory.mktemp("meta", numbered=True)
    path = folder / f"metadata.{kind}"
    data = "\n".join(content).encode("utf-8", "surrogatepass") if content else raw
    path.write_bytes(data)
    (folder / "a.wav").write_bytes(b"")
    try:
        records = load_records(str(path), caption_columns=("captions",))
    except (ValueError, FileNotFoundError) as error:
        assert str(path) in str(error), error
        return
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert records and all(r.captions for r in records)


# --- audio bytes ---------------------------------------------------------------------------------
def _encoded(kind: str, frames: int, channels: int, rate: int) -> bytes:
    buffer = io.BytesIO()
    data = np.random.default_rng(frames).standard_normal((frames, channels)).astype(np.float32) * 0.1
    sf.write(buffer, data, rate, format=kind)
    return buffer.getvalue()


VALID = [
    _encoded(kind, 800, ch, rate)
    for kind in ("WAV", "FLAC", "OGG")
    for ch in (1, 2)
    for rate in (8000, 22050)
]


@st.composite
def audio_bytes(draw):
    how = draw(st.sampled_from(["random", "truncated", "header", "flip", "valid", "empty"]))
    if how == "random":
        return draw(st.binary(max_size=200))
    base = draw(st.sampled_from(VALID))
    if how == "truncated":
        return base[: draw(st.integers(0, len(base)))]
    if how == "header":
        cut = draw(st.integers(0, 64))
        return draw(st.binary(min_size=cut, max_size=cut)) + base[cut:]
    if how == "flip":
        data = bytearray(base)
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data)
    return b"" if how == "empty" else base


@pytest.mark.slow
@fuzz("audio bytes", 4500)
@given(data=audio_bytes(), target=st.sampled_from([16000, 48000]))
def test_fuzz_audio_bytes(data, target):
    _count("audio bytes")
    try:
        audio = decode_audio(data, target, "shard-000001.tar:000000042")
    except BadSampleError as error:
        assert str(error).startswith("shard-000001.tar:000000042: ")
        return
    assert audio.ndim == 1 and audio.dtype == np.float32 and audio.size > 0
    assert np.isfinite(audio).all()


def test_a_header_claiming_an_absurd_sampling_rate_is_a_bad_sample_not_an_out_of_memory():
    """Found by the fuzzer above: a WAV header claiming 2**31 Hz made resampling allocate 320 GiB."""
    import struct

    data = bytearray(VALID[0])
    data[24:28] = struct.pack("<I", 2**31 - 1)  # the WAV fmt chunk's sample rate
    with pytest.raises(BadSampleError, match="implausible sampling rate 2147483647 Hz"):
        decode_audio(bytes(data), 16000, "clip.wav")


# --- checkpoint folders --------------------------------------------------------------------------
class _OneProcess:
    num_processes, process_index, is_main_process = 1, 0, True

    @staticmethod
    def unwrap_model(model):
        return model

    @staticmethod
    def wait_for_everyone():
        return None


@pytest.fixture(scope="module")
def checkpoint_template(tmp_path_factory):
    torch.manual_seed(0)
    model = SupClapModel(SupClapConfig.tiny())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    model(**_tiny_inputs(), return_loss=True).loss.backward()
    optimizer.step()
    root = tmp_path_factory.mktemp("ckpt")
    path = checkpointing.save_checkpoint(_OneProcess, model, optimizer, scheduler, TrainState(step=1), root)
    return path, model, optimizer, scheduler


def _tiny_inputs() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        "input_ids": torch.randint(3, 1000, (3, 6), generator=generator),
        "input_features": torch.randn(3, 1, 201, 16, generator=generator),
    }


@pytest.mark.slow
@fuzz("checkpoint folders", 1500)
@given(
    damage=st.lists(
        st.tuples(
            st.sampled_from(
                [*checkpointing.REQUIRED_FILES, "rng_state_0.pt", "data_state_0.pt", "model.safetensors"]
            ),
            st.sampled_from(["delete", "garbage", "truncate", "empty"]),
            st.binary(max_size=64),
        ),
        max_size=3,
    )
)
def test_fuzz_checkpoint_folders(checkpoint_template, tmp_path_factory, damage):
    _count("checkpoint folders")
    template, model, optimizer, scheduler = checkpoint_template
    folder = tmp_path_factory.mktemp("damaged", numbered=True) / "checkpoint-1"
    shutil.copytree(template, folder)
    try:
        for name, how, junk in damage:
            path = folder / name
            if not path.exists():
                continue
            if how == "delete":
                path.unlink()
            elif how == "garbage":
                path.write_bytes(junk)
            elif how == "truncate":
                path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
            else:
                path.write_bytes(b"")
        try:
            state, data_state = checkpointing.load_checkpoint(
                folder, _OneProcess, model, optimizer, scheduler
            )
        except checkpointing.CheckpointError as error:
            assert str(folder) in str(error)
            return
        assert state.step == 1 and isinstance(data_state, dict)
    finally:
        shutil.rmtree(folder.parent, ignore_errors=True)
