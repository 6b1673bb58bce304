"""Streaming from tar shards: each sample once per epoch across processes and workers, exact resume,
bad members and broken shards, and two processes training from shards through the real CLI."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from helpers.cli import (
    REPO,
    SMALL_CORPUS_CLIPS,
    accelerate_launch_two_cpu,
    run_file_in_process,
    run_in_process,
)
from helpers.processes import start
from safetensors.torch import load_file
from torchdata.stateful_dataloader import StatefulDataLoader

from modeling_supclap import SupClapConfig, SupClapModel
from modeling_supclap.cli.train import main as train_main
from modeling_supclap.data import load_records
from modeling_supclap.data.records import BadSampleError
from modeling_supclap.data.sources.shards import read_manifest, write_shards
from modeling_supclap.data.sources.streaming import ShardedAudioStream, open_stream
from modeling_supclap.demo import build_demo_processor
from modeling_supclap.training import checkpointing

SHARD_SIZE = 10  # 64 training clips -> 7 shards (6 x 10 + 4): they divide evenly over neither 2 nor 4 streams


@pytest.fixture(scope="module")
def corpus(small_corpus_cache) -> Path:
    return small_corpus_cache / f"demo_corpus_{SMALL_CORPUS_CLIPS}"


@pytest.fixture(scope="module")
def shards(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shards") / "train"
    write_shards(load_records(str(corpus), split="train"), out, shard_size=SHARD_SIZE)
    return out


@pytest.fixture(scope="module")
def model_dir(corpus, tmp_path_factory) -> Path:
    """A tiny SupClap folder with the demo processor (training from shards starts from a checkpoint)."""
    folder = tmp_path_factory.mktemp("tiny_model")
    config = SupClapConfig.tiny()
    torch.manual_seed(0)
    SupClapModel(config).save_pretrained(folder)
    build_demo_processor(corpus, config.audio_config, cache_dir=folder.parent / "processors").save_pretrained(
        folder
    )
    return folder


def _names(items: list[dict]) -> list[str]:
    return [item["source"] for item in items if "audio" in item]


def _stream(shards: Path, rank: int = 0, world_size: int = 1, **kwargs) -> ShardedAudioStream:
    dataset = ShardedAudioStream(open_stream(str(shards)), 16000, seed=3, shuffle_buffer_size=6, **kwargs)
    dataset.set_process(rank, world_size)
    return dataset


def _epoch(dataset: ShardedAudioStream, epoch: int, workers: int = 2) -> list[str]:
    dataset.set_epoch(epoch)
    loader = StatefulDataLoader(dataset, batch_size=4, num_workers=workers, collate_fn=_names)
    return [name for batch in loader for name in batch]


def test_shard_writer_manifest(shards, corpus):
    manifest = read_manifest(shards)
    assert manifest["num_samples"] == 64 and manifest["num_shards"] == 7
    assert [s["num_samples"] for s in manifest["shards"]] == [10] * 6 + [4]
    assert all(len(s["sha256"]) == 64 and s["bytes"] > 0 for s in manifest["shards"])
    with tarfile.open(shards / "shard-000000.tar") as tar:
        names = tar.getnames()
        meta = json.load(tar.extractfile(names[1]))
        audio = tar.extractfile(names[0]).read()
    assert names[:2] == ["000000000.wav", "000000000.json"]
    first = load_records(str(corpus), split="train")[0]
    assert audio == Path(first.audio).read_bytes()  # the original file's bytes
    assert meta["captions"] == first.captions and meta["label"] == first.label


def test_shards_are_found_by_folder_pattern_range_and_url(shards):
    from modeling_supclap.data.sources.shards import expand_braces, find_shards

    files = [str(shards / f"shard-{i:06d}.tar") for i in range(7)]
    assert find_shards(str(shards)) == files
    assert find_shards(str(shards / "shard-*.tar")) == files
    assert find_shards(str(shards / "shard-{000000..000006}.tar")) == files
    assert expand_braces("s3://b/s-{8..10}.tar") == ["s3://b/s-8.tar", "s3://b/s-9.tar", "s3://b/s-10.tar"]
    with pytest.raises(FileNotFoundError, match="1 shard\\(s\\) not found"):
        find_shards(str(shards / "shard-{000000..000007}.tar"))


def test_two_processes_by_two_workers_see_each_sample_once_per_epoch(shards):
    keys = {f"{shards}/shard-{i:06d}.tar" for i in range(7)}
    per_epoch = []
    for epoch in (0, 1):
        seen = [_epoch(_stream(shards, rank, 2), epoch) for rank in (0, 1)]
        assert all(seen), "every process reads something"
        counts = Counter(name for rank_names in seen for name in rank_names)
        assert len(counts) == 64 and set(counts.values()) == {1}, "each sample exactly once, none lost"
        assert {name.rsplit(":", 1)[0] for name in counts} == keys
        per_epoch.append(seen)
    assert per_epoch[0] != per_epoch[1]  # a new order every epoch


def test_resuming_mid_epoch_continues_exactly_where_it_stopped(shards):
    """With a shuffle buffer: datasets' own state_dict would lose its contents; the replay does not."""
    uninterrupted = _epoch(_stream(shards), 0)
    dataset = _stream(shards)
    dataset.set_epoch(0)
    loader = StatefulDataLoader(dataset, batch_size=4, num_workers=2, collate_fn=_names)
    before = []
    for index, batch in enumerate(loader):
        before += batch
        if index == 4:
            state = loader.state_dict()
            break
    fresh = _stream(shards)
    fresh.set_epoch(0)
    resumed = StatefulDataLoader(fresh, batch_size=4, num_workers=2, collate_fn=_names)
    resumed.load_state_dict(state)
    after = [name for batch in resumed for name in batch]
    assert before + after == uninterrupted


def _rewrite_member(shard: Path, member: str, payload: bytes | None, out: Path) -> None:
    """Copy ``shard`` to ``out`` with ``member`` replaced (or, with ``payload=None``, the copy truncated)."""
    if payload is None:
        data = shard.read_bytes()
        out.write_bytes(data[: len(data) // 2])
        return
    with tarfile.open(shard) as source, tarfile.open(out, "w", format=tarfile.USTAR_FORMAT) as target:
        for info in source.getmembers():
            data = payload if info.name == member else source.extractfile(info).read()
            info.size = len(data)
            target.addfile(info, io.BytesIO(data))


@pytest.fixture
def damaged_shards(shards, tmp_path) -> Path:
    folder = tmp_path / "damaged"
    shutil.copytree(shards, folder)
    (folder / "manifest.json").unlink()  # the manifest's checksums no longer hold
    _rewrite_member(
        shards / "shard-000001.tar", "000000012.wav", b"RIFF not really", folder / "shard-000001.tar"
    )
    return folder


def test_a_corrupt_member_is_a_counted_skip_naming_shard_and_key(damaged_shards):
    dataset = _stream(damaged_shards)
    dataset.set_epoch(0)
    items = list(dataset)
    bad = [entry for item in items for entry in item.get("_bad", [])]
    assert len(_names(items)) == 63
    assert len(bad) == 1 and bad[0]["source"] == f"{damaged_shards}/shard-000001.tar:000000012"
    assert "cannot decode" in bad[0]["error"]


def test_a_truncated_shard_is_an_error_naming_it_or_a_counted_skip(damaged_shards, shards):
    _rewrite_member(shards / "shard-000003.tar", "", None, damaged_shards / "shard-000003.tar")
    dataset = _stream(damaged_shards)
    dataset.set_epoch(0)
    with pytest.raises(BadSampleError, match=r"shard .*shard-000003\.tar breaks off after \d+ sample\(s\)"):
        list(dataset)
    dataset = _stream(damaged_shards, on_bad_sample="skip")
    dataset.set_epoch(0)
    items = list(dataset)
    bad = [entry["source"] for item in items for entry in item.get("_bad", [])]
    assert f"{damaged_shards}/shard-000003.tar:<rest of shard>" in bad
    assert 53 <= len(_names(items)) < 63  # the corrupt member, and the rest of the broken shard


def test_fewer_shards_than_processes_is_a_clear_error(shards):
    dataset = ShardedAudioStream(open_stream(str(shards / "shard-000000.tar")), 16000)
    with pytest.raises(ValueError, match="has 1 shard\\(s\\) for 2 processes"):
        dataset.set_process(0, 2)


# --- through the real entry point ----------------------------------------------------------------
DRIVER = textwrap.dedent(
    """
    import json, os, sys
    from modeling_supclap.cli.train import main
    from modeling_supclap.training import TrainStep

    LOG = os.environ["SAMPLE_LOG"]


    class LoggingStep(TrainStep):
        # Records, per optimizer step, the samples of its batches (the source's sample_log).
        @classmethod
        def from_run(cls, run):
            step = super().from_run(run)
            step.source, step.rank = run.data.train, run.accelerator.process_index
            step.source.sample_log = []
            return step

        def __call__(self, micro_batches, position):
            result = super().__call__(micro_batches, position)
            entries = self.source.sample_log[-len(micro_batches):]
            with open(f"{LOG}.{self.rank}", "a") as log:
                log.write(json.dumps({"step": position.step, "batches": entries}) + "\\n")
            return result


    main(sys.argv[1:], step_class=LoggingStep)
    """
)


def _stream_args(model_dir: Path, shards: Path, corpus: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--model_name_or_path", str(model_dir),
        "--streaming",
        "--train_data", str(shards),
        "--validation_data", str(corpus),
        "--output_dir", str(out),
        "--per_device_train_batch_size", "8",
        "--per_device_eval_batch_size", "16",
        "--max_steps", "12",
        "--warmup_steps", "2",
        "--learning_rate", "3e-3",
        "--eval_steps", "0",
        "--save_steps", "1",
        "--save_total_limit", "20",
        "--logging_steps", "1",
        "--dataloader_num_workers", "2",
        "--shuffle_buffer_size", "6",
        "--report_to", "none",
        "--use_cpu",
        *extra,
    ]  # fmt: skip


def _log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.slow
def test_kill_minus_9_mid_epoch_then_resume_is_one_epoch_and_the_same_weights(
    model_dir, shards, corpus, tmp_path
):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    reference = tmp_path / "uninterrupted"
    result = run_file_in_process(
        driver, _stream_args(model_dir, shards, corpus, reference), SAMPLE_LOG=str(tmp_path / "reference.log")
    )
    assert result.returncode == 0, result.stderr[-4000:]
    steps_per_epoch = {row["step"] for row in _log(tmp_path / "reference.log.0") if row["batches"][0][0] == 0}
    assert 4 < max(steps_per_epoch) < 12, "the run spans more than one epoch"

    out = tmp_path / "interrupted"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SAMPLE_LOG": str(tmp_path / "interrupted.log")}
    process = start(
        [sys.executable, str(driver), *_stream_args(model_dir, shards, corpus, out)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while (checkpointing.latest_checkpoint(out) is None) or checkpointing.checkpoint_step(
        checkpointing.latest_checkpoint(out)
    ) < 3:
        assert process.poll() is None and time.monotonic() < deadline, "ended before it could be killed"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = checkpointing.checkpoint_step(checkpointing.latest_checkpoint(out))
    assert killed_at < max(steps_per_epoch), "killed mid-epoch"
    first = [row for row in _log(tmp_path / "interrupted.log.0") if row["step"] <= killed_at]

    result = run_file_in_process(
        driver,
        _stream_args(model_dir, shards, corpus, out, "--resume_from_checkpoint", "latest"),
        SAMPLE_LOG=str(tmp_path / "resumed.log"),
    )
    assert result.returncode == 0, result.stderr[-4000:]
    second = _log(tmp_path / "resumed.log.0")
    assert second[0]["step"] == killed_at + 1
    # Before and after together: the uninterrupted run's samples, step for step.
    assert first + second == _log(tmp_path / "reference.log.0")
    epoch0 = [
        name for row in first + second for epoch, names in row["batches"] if epoch == 0 for name in names
    ]
    assert len(epoch0) == len(set(epoch0)) == 64
    final, expected = load_file(out / "model.safetensors"), load_file(reference / "model.safetensors")
    for name in expected:
        torch.testing.assert_close(final[name], expected[name], atol=1e-6, rtol=0, msg=name)


@pytest.mark.slow
def test_a_broken_shard_in_a_training_run_names_it_or_is_counted(
    model_dir, shards, corpus, damaged_shards, tmp_path
):
    _rewrite_member(shards / "shard-000003.tar", "", None, damaged_shards / "shard-000003.tar")
    args = _stream_args(model_dir, damaged_shards, corpus, tmp_path / "stop", "--save_steps", "0")
    result = run_in_process(train_main, args)
    assert result.returncode != 0 and "shard-000003.tar breaks off after" in result.stderr
    out = tmp_path / "skip"
    args = _stream_args(
        model_dir, damaged_shards, corpus, out, "--save_steps", "0", "--on_bad_sample", "skip"
    )
    result = run_in_process(train_main, args)
    assert result.returncode == 0, result.stderr[-4000:]
    skipped = json.loads((out / "metrics.json").read_text())["skipped_samples"]
    sources = {entry["source"] for entry in skipped["samples"]}
    assert f"{damaged_shards}/shard-000001.tar:000000012" in sources
    assert f"{damaged_shards}/shard-000003.tar:<rest of shard>" in sources
    assert skipped["by_split"]["train"] == skipped["total"] >= 2


@pytest.mark.slow
def test_two_cpu_processes_train_from_shards_each_sample_once_per_epoch(model_dir, shards, corpus, tmp_path):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    out = tmp_path / "ddp"
    args = _stream_args(
        model_dir, shards, corpus, out, "--per_device_train_batch_size", "4", "--max_steps", "16"
    )
    result = accelerate_launch_two_cpu(str(driver), args, SAMPLE_LOG=str(tmp_path / "ddp.log"))
    assert result.returncode == 0, result.stderr[-4000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_state"]["num_processes"] == 2 and metrics["train_state"]["step"] == 16
    logs = [_log(tmp_path / f"ddp.log.{rank}") for rank in (0, 1)]
    assert [len(log) for log in logs] == [16, 16]  # every process took every step
    epoch0 = Counter(
        name for log in logs for row in log for epoch, names in row["batches"] if epoch == 0 for name in names
    )
    assert len(epoch0) == 64 and set(epoch0.values()) == {1}
    assert sorted(p.name for p in (out / "checkpoint-16").glob("data_state_*.pt")) == [
        "data_state_0.pt",
        "data_state_1.pt",
    ]
