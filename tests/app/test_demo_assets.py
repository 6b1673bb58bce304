"""What the app builds when given nothing (app/assets.py): an interrupted demo training goes on from its last
checkpoint at the next start, and only a training with the same arguments does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.cli import REPO, SMALL_CORPUS_CLIPS, wait_for_step
from helpers.processes import start

from modeling_supclap.app import assets
from modeling_supclap.hub import PUSH_IGNORE_PATTERNS
from modeling_supclap.training import checkpointing

# supclap-train arguments of a seconds-long demo training with no periodic checkpoint: a checkpoint in its
# folder can only be the one a stop signal made.
TRAIN_ARGS = [
    "--preset", "tiny", "--max_steps", "12", "--warmup_steps", "2", "--learning_rate", "3e-3",
    "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "16", "--eval_steps", "0",
    "--save_steps", "0", "--logging_steps", "1", "--dataloader_num_workers", "2", "--report_to", "none",
    "--use_cpu",
]  # fmt: skip

ENSURE = "import sys; from modeling_supclap.app.assets import ensure_demo_model; " + (
    "ensure_demo_model(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:])"
)


@pytest.mark.slow
def test_a_start_stopped_by_ctrl_c_while_training_resumes_at_the_next_start(
    small_corpus_cache, tmp_path, capfd
):
    """The first start is stopped with Ctrl-C (SIGINT to its process group, as a terminal sends it: the app,
    its training and the training's DataLoader workers) mid-run: the app waits while the training saves a
    checkpoint at the end of its step; the next start with the same arguments resumes from it and finishes
    the model."""
    folder = tmp_path / "outputs" / "supclap-demo"
    first = start(
        [
            sys.executable,
            "-c",
            ENSURE,
            str(folder),
            str(small_corpus_cache),
            str(SMALL_CORPUS_CLIPS),
            *TRAIN_ARGS,
        ],
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the training child gets the SIGINT too
    )
    wait_for_step(folder, 3, [first])
    os.killpg(first.pid, signal.SIGINT)
    first.wait(timeout=120)
    assert not assets.demo_model_is_complete(folder), "the training ended before Ctrl-C: nothing was tested"
    saved = checkpointing.latest_checkpoint(folder)
    assert saved is not None, "no checkpoint: the app did not let the training save one at Ctrl-C"
    checkpointing.validate_checkpoint(saved)
    interrupted_at = checkpointing.checkpoint_step(saved)
    assert 3 <= interrupted_at < 12

    capfd.readouterr()
    assets.ensure_demo_model(folder, small_corpus_cache, SMALL_CORPUS_CLIPS, TRAIN_ARGS)
    shown = capfd.readouterr()
    assert "--resume_from_checkpoint latest" in shown.out
    assert f"resumed from {folder / f'checkpoint-{interrupted_at}'}" in shown.err
    assert assets.demo_model_is_complete(folder)
    assert json.loads((folder / "metrics.json").read_text())["train_state"]["step"] == 12


def _complete_checkpoint(folder: Path, step: int) -> None:
    """A checkpoint folder that ``latest_checkpoint`` takes (its completion mark; nothing is loaded here)."""
    checkpoint = folder / f"checkpoint-{step}"
    checkpoint.mkdir(parents=True)
    (checkpoint / checkpointing.COMPLETE_MARKER).write_text("ok\n")


RESUME, OVERWRITE = ["--resume_from_checkpoint", "latest"], ["--overwrite_output_dir"]


@pytest.mark.parametrize(
    "recorded, checkpoint, flags",
    [
        ("same", True, RESUME),
        ("same", False, []),  # interrupted before its first checkpoint: from the start
        ("other", True, OVERWRITE),  # the app's own training with other --demo_train_args: start over
        (None, False, []),  # a first start
        (None, True, []),  # a run the app did not start (`python train_supclap.py`): supclap-train refuses
        ("unreadable", True, []),
    ],
)
def test_only_the_same_trainings_checkpoint_is_resumed(tmp_path, monkeypatch, recorded, checkpoint, flags):
    started = []
    monkeypatch.setattr(assets, "run_command", lambda command, what, on_step=None: started.append(command))
    folder, args = tmp_path / "demo", ["--max_steps", "12"]
    arguments = [
        "--output_dir",
        str(folder),
        "--cache_dir",
        str(tmp_path / "cache"),
        "--demo_num_clips",
        "80",
    ]
    folder.mkdir()
    record = folder / assets.TRAINING_RECORD
    if recorded == "unreadable":
        record.write_text("{not json")
    elif recorded is not None:
        other = ["--max_steps", "99"] if recorded == "other" else args
        record.write_text(json.dumps({"supclap_train_arguments": [*arguments[:6], *other]}))
    if checkpoint:
        _complete_checkpoint(folder, 4)
    assets.ensure_demo_model(folder, tmp_path / "cache", 80, args)
    (command,) = started
    assert command[:3] == [sys.executable, "-m", "modeling_supclap.cli.train"]
    assert command[3:9] == arguments and command[9:11] == args
    assert command[11:] == flags, command
    # The record now names this training, whatever was there: its own checkpoints are the ones resumed next.
    assert json.loads(record.read_text()) == {"supclap_train_arguments": [*arguments, *args]}


def test_the_record_stays_out_of_a_push_and_a_finished_model_is_used_as_it_is(tmp_path, monkeypatch):
    import fnmatch

    assert any(fnmatch.fnmatch(assets.TRAINING_RECORD, pattern) for pattern in PUSH_IGNORE_PATTERNS)
    folder = tmp_path / "demo"
    folder.mkdir()
    for name in ("config.json", "model.safetensors", "metrics.json"):
        (folder / name).write_text("{}")
    monkeypatch.setattr(assets, "run_command", lambda *args, **kwargs: pytest.fail("nothing to build"))
    assert assets.ensure_demo_model(folder, tmp_path / "cache", 80, ["--max_steps", "12"]) == folder
    assert not (folder / assets.TRAINING_RECORD).exists()


SLOW_TO_STOP = """
import pathlib, signal, sys, time
folder = pathlib.Path(sys.argv[1])

def stop(*_):  # as training does at Ctrl-C: finish the step, write a checkpoint, then exit
    time.sleep(1.0)
    (folder / "saved").write_text("ok")
    sys.exit(130)

signal.signal(signal.SIGINT, stop)
(folder / "ready").write_text("ok")
time.sleep(120)
"""
RUN_IT = "import sys; from modeling_supclap.app import assets; assets.run_command(sys.argv[1:], 'it')"


@pytest.mark.slow
def test_ctrl_c_waits_for_the_command_to_save_before_the_app_stops(tmp_path):
    """``subprocess.run`` kills its command 0.25 s after Ctrl-C; the app lets it finish saving (1 s here)."""
    app = start(
        [sys.executable, "-c", RUN_IT, sys.executable, "-c", SLOW_TO_STOP, str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not (tmp_path / "ready").exists():
        assert app.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(app.pid, signal.SIGINT)  # Ctrl-C: the app and its command
    assert app.wait(timeout=60) != 0
    assert (tmp_path / "saved").read_text() == "ok"
