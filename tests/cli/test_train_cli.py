"""The main job through its real entry points: train -> save -> eval, resume after kill -9, 2 processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers.cli import (
    REPO,
    SMALL_CORPUS_CLIPS,
    accelerate_launch_two_cpu,
    run_in_process,
    run_script,
    tiny_train_args,
)
from helpers.processes import start
from safetensors.torch import load_file

from modeling_supclap.cli.evaluate import main as evaluate_main
from modeling_supclap.cli.train import main as train_main
from modeling_supclap.training import checkpointing


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=0, msg=name)


@pytest.mark.slow
def test_train_save_eval_through_the_cli(small_corpus_cache, tmp_path):
    out = tmp_path / "run"
    args = [
        *tiny_train_args(small_corpus_cache, out),
        "--drift_probe_steps",
        "3",
        "--report_to",
        "tensorboard",
    ]
    result = run_script(["train_supclap.py", *args])
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Test results" in result.stdout and "T2A (chance)" in result.stdout
    for name in (
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "processor_config.json",
        "README.md",
        "metrics.json",
        "modeling_supclap.py",
        "training_curves.png",
        "drift.png",
        "representation.png",
        "radius_over_distance.png",
        "radius_histogram.png",
    ):
        assert (out / name).exists(), name
    metrics = json.loads((out / "metrics.json").read_text())
    probes = metrics["train_state"]["drift"]
    assert [p["step"] for p in probes] == [3, 6]
    assert all(len(p["radius_over_distance"]) == 12 and 0 < p["text_effective_rank"] for p in probes)
    assert metrics["train_state"]["step"] == 6
    assert [entry["step"] for entry in metrics["train_state"]["validation"]] == [3, 6]
    assert metrics["test"]["num_clips"] == 8
    assert len(metrics["history"]) == 6 and all("loss_svr" in row for row in metrics["history"])
    card = (out / "README.md").read_text()
    assert "svr_mode" in card and "model-index" in card and "2509.21033" in card

    corpus = small_corpus_cache / f"demo_corpus_{SMALL_CORPUS_CLIPS}"
    report = tmp_path / "eval.json"
    args = ["--model", str(out), "--data", str(corpus), "--split", "test", "--output_json", str(report)]
    result = run_in_process(evaluate_main, args)  # the training above ran as a process, as users run it
    assert result.returncode == 0, result.stderr[-4000:]
    evaluated = json.loads(report.read_text())
    # The standalone evaluation reproduces the test numbers of the training run (seeded, deterministic).
    for key in ("t2a_R@1", "a2t_R@1", "t2a_mAP@10"):
        assert evaluated["retrieval"][key] == pytest.approx(metrics["test"]["retrieval"][key])
    assert evaluated["zero_shot"]["accuracy"] == pytest.approx(metrics["test"]["zero_shot"]["accuracy"])
    assert "LAION-CLAP" in evaluated["retrieval"]["mAP_definition"]


def _start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return start(
        [sys.executable, "train_supclap.py", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_kill_minus_9_then_resume_gives_the_uninterrupted_weights(small_corpus_cache, tmp_path):
    common = ["--save_steps", "1", "--save_total_limit", "3"]
    reference = tmp_path / "uninterrupted"
    result = run_in_process(train_main, tiny_train_args(small_corpus_cache, reference, *common))
    assert result.returncode == 0, result.stderr[-4000:]

    interrupted = tmp_path / "interrupted"
    process = _start(tiny_train_args(small_corpus_cache, interrupted, *common))
    deadline = time.monotonic() + 300
    while (
        checkpointing.latest_checkpoint(interrupted) is None
        or checkpointing.checkpoint_step(checkpointing.latest_checkpoint(interrupted)) < 3
    ):
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = checkpointing.checkpoint_step(checkpointing.latest_checkpoint(interrupted))
    assert killed_at < 6, "the run finished before the kill: nothing was tested"

    resume = tiny_train_args(small_corpus_cache, interrupted, *common, "--resume_from_checkpoint", "latest")
    result = run_in_process(train_main, resume)  # the kill is the process's part; resuming reads the folder
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"resumed from {interrupted / f'checkpoint-{killed_at}'}" in result.stderr
    _assert_same_weights(_weights(interrupted), _weights(reference))
    _assert_same_weights(_weights(interrupted / "checkpoint-6"), _weights(reference / "checkpoint-6"))
    assert not list(interrupted.glob("*.tmp"))


@pytest.mark.slow
def test_a_new_run_stops_at_an_earlier_runs_checkpoints_unless_told_to_overwrite_them(
    small_corpus_cache, tmp_path
):
    """Was: a new run in the folder went on beside the earlier run's checkpoints, and a later
    --resume_from_checkpoint latest took the earlier run's checkpoint-6 over the new run's checkpoint-4."""
    out = tmp_path / "run"
    assert run_in_process(train_main, tiny_train_args(small_corpus_cache, out)).returncode == 0
    earlier = _weights(out)
    assert [p.name for p in checkpointing.list_checkpoints(out)] == ["checkpoint-3", "checkpoint-6"]
    again = tiny_train_args(small_corpus_cache, out, "--max_steps", "4", "--save_steps", "2", "--seed", "1")
    result = run_in_process(train_main, again)
    assert result.returncode == 2
    assert f"{out} holds checkpoints of an earlier run (checkpoint-3, checkpoint-6)" in result.stderr
    assert "--resume_from_checkpoint latest" in result.stderr and "--overwrite_output_dir" in result.stderr
    assert [p.name for p in checkpointing.list_checkpoints(out)] == ["checkpoint-3", "checkpoint-6"]
    _assert_same_weights(_weights(out), earlier)  # stopped before it changed anything
    result = run_in_process(train_main, [*again, "--overwrite_output_dir"])
    assert result.returncode == 0, result.stderr[-4000:]
    assert "removed the earlier run's checkpoint-3, checkpoint-6" in result.stderr
    assert [p.name for p in checkpointing.list_checkpoints(out)] == ["checkpoint-2", "checkpoint-4"]
    assert json.loads((out / "metrics.json").read_text())["train_state"]["step"] == 4  # the new run's model


@pytest.mark.slow
def test_partial_checkpoint_gives_a_clear_error(small_corpus_cache, tmp_path):
    out = tmp_path / "run"
    result = run_in_process(train_main, tiny_train_args(small_corpus_cache, out, "--max_steps", "3"))
    assert result.returncode == 0, result.stderr[-4000:]
    checkpoint = out / "checkpoint-3"
    broken = out / "checkpoint-4"
    shutil.copytree(checkpoint, broken)
    (broken / checkpointing.COMPLETE_MARKER).unlink()
    assert checkpointing.latest_checkpoint(out) == checkpoint  # an incomplete folder is never picked
    resume = tiny_train_args(small_corpus_cache, out, "--resume_from_checkpoint")
    result = run_in_process(train_main, [*resume, str(broken)])
    assert result.returncode != 0
    assert "is incomplete" in result.stderr and "checkpoint-4" in result.stderr
    (checkpoint / "optimizer.pt").write_bytes(b"garbage")
    result = run_in_process(train_main, [*resume, str(checkpoint)])
    assert result.returncode != 0 and "could not be read" in result.stderr


@pytest.mark.slow
def test_two_cpu_processes_train_and_save_one_model(small_corpus_cache, tmp_path):
    out = tmp_path / "ddp"
    args = tiny_train_args(small_corpus_cache, out, "--per_device_train_batch_size", "4")
    result = accelerate_launch_two_cpu("train_supclap.py", args)
    assert result.returncode == 0, result.stderr[-4000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_state"]["num_processes"] == 2
    assert metrics["train_state"]["step"] == 6
    assert (out / "model.safetensors").exists()
    assert sorted(p.name for p in (out / "checkpoint-6").glob("rng_state_*.pt")) == [
        "rng_state_0.pt",
        "rng_state_1.pt",
    ]


@pytest.mark.parametrize("failure", ["preempted", "dead rank", "embed: bad data"])
def test_a_failed_run_frees_its_objects_before_the_process_group_is_shut_down(failure, monkeypatch):
    """The run's objects (its DDP reducer holds the gloo group) must be gone before the group is destroyed
    under a time limit: left to the interpreter's exit, the reducer's destructor joins gloo's worker thread
    while holding the GIL that thread needs, and the process hangs (it did, under load, after SIGUSR1).
    ``supclap-embed`` ends the same way."""
    import weakref

    from modeling_supclap.cli import embed as embed_cli
    from modeling_supclap.cli import process_group
    from modeling_supclap.cli import train as train_cli
    from modeling_supclap.training.resilience import DeadRankError, Preempted

    class Run:  # stands for the run: a cycle of objects, as the real one has
        pass

    runs = []

    def failing_run(*args, **kwargs):
        run = Run()
        run.itself = run
        runs.append(weakref.ref(run))
        if failure == "preempted":
            raise Preempted("SIGUSR1 received: saved checkpoint-4")
        if failure.startswith("embed"):
            raise ValueError("no audio column")
        try:
            raise RuntimeError("Connection closed by peer")
        except RuntimeError as cause:
            raise DeadRankError("rank 1 stopped answering") from cause

    shut_down = []
    monkeypatch.setattr(
        process_group,
        "shutdown_process_group",
        lambda program, exit_code, timeout_s: shut_down.append((program, exit_code, runs[0]() is None)),
    )
    if failure.startswith("embed"):
        monkeypatch.setattr(embed_cli, "parse_arguments", lambda *args, **kwargs: (None,))
        monkeypatch.setattr(embed_cli, "_build", failing_run)
        with pytest.raises(ValueError) as raised:
            embed_cli._embed([])
        assert shut_down == [("supclap-embed", 2, True)]  # 2: the status its one-line report exits with
    else:
        monkeypatch.setattr(train_cli, "parse_args", lambda argv: (None, None, None))
        monkeypatch.setattr(train_cli, "train", failing_run)
        with pytest.raises((Preempted, DeadRankError)) as raised:
            train_cli._train([])
        assert shut_down == [("train_supclap.py", 75 if failure == "preempted" else 1, True)]
    assert "failing_run" in "\n".join(raised.value.__notes__)  # where it was raised, kept for --debug


def test_a_finished_run_releases_its_process_group_and_a_stuck_release_ends_the_process(monkeypatch):
    """After a run, the group is destroyed; if that hangs, the process exits by itself, saying so."""
    import threading

    import torch.distributed as dist

    from modeling_supclap.cli import process_group

    destroyed, exits, release = [], [], threading.Event()
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "destroy_process_group", lambda: destroyed.append(True))
    monkeypatch.setattr(process_group.os, "_exit", exits.append)
    assert process_group.release_process_group_after("supclap-embed", lambda: "manifest") == "manifest"
    assert destroyed == [True] and exits == []
    monkeypatch.setattr(dist, "destroy_process_group", lambda: release.wait(30))  # gloo deadlocked
    process_group.shutdown_process_group("supclap-embed", exit_code=2, timeout_s=0.2)
    release.set()
    assert exits == [2]
