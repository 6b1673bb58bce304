"""Long runs on shared clusters: preemption signals, a dead rank, a full disk, two runs in one folder,
and non-finite steps under two processes (docs/RELIABILITY.md lists each fault and its test).

Two-process runs are started here by hand (``RANK``/``WORLD_SIZE``/``MASTER_*`` in the environment, as
SLURM or a multi-node launcher would), so that signals and ``kill -9`` reach one worker exactly.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from helpers.cli import REPO, run_in_process, tiny_train_args, wait_for_step
from helpers.processes import free_port, start
from safetensors.torch import load_file

from modeling_supclap.cli.train import main as train_main
from modeling_supclap.training import checkpointing

pytestmark = pytest.mark.slow


def _start(
    args: list[str],
    rank: int = 0,
    world_size: int = 1,
    port: int = 0,
    script="train_supclap.py",
    new_session: bool = False,
    **env,
):
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **env}
    if world_size > 1:
        environment.update(
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE=str(world_size),
            LOCAL_WORLD_SIZE=str(world_size),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
        )
    return start(
        [sys.executable, str(script), *args],
        cwd=REPO,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=new_session,  # its own process group, as a scheduler's job step
    )


def _start_two(args: list[str], **env) -> list[subprocess.Popen]:
    port = free_port()
    return [_start(args, rank, 2, port, **env) for rank in (0, 1)]


def _args(cache: Path, out: Path, *extra: str) -> list[str]:
    return tiny_train_args(cache, out, "--max_steps", "10", "--eval_steps", "0", "--save_steps", "0", *extra)


def _same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], atol=1e-6, rtol=0, msg=name)


# --- 1. preemption -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "stop, code, said",
    [
        (signal.SIGTERM, 75, "Preempted: SIGTERM received: saved"),
        (signal.SIGINT, 130, "Interrupted: SIGINT received: saved"),  # Ctrl-C in the run's terminal
    ],
)
def test_sigterm_or_ctrl_c_saves_a_checkpoint_at_the_step_boundary_and_resuming_gives_the_same_weights(
    small_corpus_cache, tmp_path, stop, code, said
):
    """SIGTERM to every process of the run, DataLoader workers included, as SLURM's scancel or time limit
    sends it, or SIGINT, as a terminal's Ctrl-C does: the workers leave it to the main process, which
    checkpoints at the step boundary."""
    workers = ("--dataloader_num_workers", "2")
    reference = tmp_path / "reference"
    result = run_in_process(train_main, _args(small_corpus_cache, reference, *workers))
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "preempted"
    process = _start(_args(small_corpus_cache, out, *workers), new_session=True)
    wait_for_step(out, 3, [process])
    os.killpg(process.pid, stop)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr[-3000:]
    assert said in stderr and "--resume_from_checkpoint latest" in stderr
    saved = checkpointing.latest_checkpoint(out)
    assert saved is not None and 3 <= checkpointing.checkpoint_step(saved) < 10
    checkpointing.validate_checkpoint(saved)
    assert not (out / "model.safetensors").exists()  # the run is not finished: no final model
    result = run_in_process(
        train_main, _args(small_corpus_cache, out, *workers, "--resume_from_checkpoint", "latest")
    )
    assert result.returncode == 0, result.stderr[-3000:]
    _same_weights(out, reference)


def test_a_second_ctrl_c_stops_at_once_and_the_handlers_are_put_back():
    """The first Ctrl-C only asks for a stop at the step boundary; a second one interrupts there and then."""
    from modeling_supclap.training.resilience import StopSignals

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # a terminal's, whatever ran before
    try:
        with StopSignals() as signals:
            signal.raise_signal(signal.SIGINT)
            assert signals.received == "SIGINT"  # recorded, nothing raised
            with pytest.raises(KeyboardInterrupt):
                signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGTERM)
            assert signals.received == "SIGINT"  # the first signal names the stop
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)


def test_sigusr1_to_one_of_two_processes_stops_both_with_one_checkpoint(small_corpus_cache, tmp_path):
    args = _args(small_corpus_cache, tmp_path / "reference", "--per_device_train_batch_size", "4")
    reference = _start_two(args)
    assert [p.wait(timeout=300) for p in reference] == [0, 0], reference[0].stderr.read()[-3000:]
    out = tmp_path / "preempted"
    args = _args(small_corpus_cache, out, "--per_device_train_batch_size", "4")
    processes = _start_two(args)
    wait_for_step(out, 3, processes)
    processes[0].send_signal(signal.SIGUSR1)  # SLURM's warning before the time limit, to one rank only
    outputs = [p.communicate(timeout=120)[1] for p in processes]
    assert [p.returncode for p in processes] == [75, 75], outputs[0][-2000:] + outputs[1][-2000:]
    assert "SIGUSR1 received" in outputs[0] and "a stop signal (on another process) received" in outputs[1]
    saved = checkpointing.latest_checkpoint(out)
    checkpointing.validate_checkpoint(saved, world_size=2)  # every rank's RNG and data state in it
    resumed = _start_two([*args, "--resume_from_checkpoint", "latest"])
    assert [p.wait(timeout=300) for p in resumed] == [0, 0], resumed[0].stderr.read()[-3000:]
    _same_weights(out, tmp_path / "reference")


# --- 2. a dead rank ------------------------------------------------------------------------------
def test_a_killed_rank_makes_the_survivor_exit_soon_naming_it_then_resume_works(small_corpus_cache, tmp_path):
    out = tmp_path / "run"
    args = tiny_train_args(
        small_corpus_cache, out, "--max_steps", "200", "--eval_steps", "0", "--save_steps", "2",
        "--per_device_train_batch_size", "4", "--ddp_timeout", "10",
    )  # fmt: skip
    processes = _start_two(args)
    wait_for_step(out, 4, processes)
    processes[1].send_signal(signal.SIGKILL)
    killed = time.monotonic()
    _, stderr = processes[0].communicate(timeout=120)
    waited = time.monotonic() - killed
    assert processes[0].returncode == 1, stderr[-3000:]
    assert "rank 1 (last step" in stderr and "stopped answering" in stderr, stderr[-3000:]
    assert waited < 30, f"the survivor took {waited:.1f} s to exit"
    processes[1].wait()
    latest = checkpointing.latest_checkpoint(out)
    assert latest is not None
    short = [a if a != "200" else str(checkpointing.checkpoint_step(latest) + 2) for a in args]
    resumed = _start_two([*short, "--resume_from_checkpoint", "latest"])
    assert [p.wait(timeout=300) for p in resumed] == [0, 0], resumed[0].stderr.read()[-3000:]
    print(f"survivor exit after kill -9 of rank 1: {waited:.2f} s")


# --- 3. a full disk during a checkpoint ----------------------------------------------------------
def test_a_full_disk_keeps_the_previous_checkpoint_and_says_how_much_space(
    small_corpus_cache, tmp_path, monkeypatch
):
    real_save = torch.save

    def save(obj, path, *args, **kwargs):  # the disk fills up while checkpoint-2 is written
        if "checkpoint-2.tmp" in str(path) and str(path).endswith("optimizer.pt"):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_save(obj, path, *args, **kwargs)

    out = tmp_path / "run"
    args = _args(small_corpus_cache, out, "--save_steps", "1")
    with monkeypatch.context() as patched:
        patched.setattr(checkpointing.torch, "save", save)
        result = run_in_process(train_main, args)
    assert result.returncode != 0
    assert f"could not write {out / 'checkpoint-2'}" in result.stderr
    assert "No space left on device" in result.stderr and "MiB are free" in result.stderr
    assert "A checkpoint needs about" in result.stderr and "checkpoint-1 is intact" in result.stderr
    assert checkpointing.latest_checkpoint(out) == out / "checkpoint-1"
    checkpointing.validate_checkpoint(out / "checkpoint-1")
    assert not list(out.glob("checkpoint-2*"))  # the partial one is gone
    result = run_in_process(train_main, [*args, "--resume_from_checkpoint", "latest"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resumed from" in result.stderr and "checkpoint-1" in result.stderr


# --- 4. two runs, one output folder --------------------------------------------------------------
def test_a_second_run_in_the_same_folder_refuses_while_the_first_holds_it(small_corpus_cache, tmp_path):
    out = tmp_path / "run"
    first = _start(tiny_train_args(small_corpus_cache, out, "--max_steps", "400", "--save_steps", "5"))
    wait_for_step(out, 2, [first])
    second = run_in_process(train_main, tiny_train_args(small_corpus_cache, out))
    assert second.returncode == 2
    assert f"{out} is in use by another run (pid {first.pid}" in second.stderr
    assert "Traceback" not in second.stderr
    assert first.poll() is None  # the first run goes on, untouched
    first.send_signal(signal.SIGKILL)  # abandoned: the kernel drops its lock
    first.wait()
    resumed = run_in_process(
        train_main, tiny_train_args(small_corpus_cache, out, "--resume_from_checkpoint", "latest")
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]


# --- 5. non-finite steps under two processes -----------------------------------------------------
NAN_DRIVER = textwrap.dedent(
    """
    import hashlib, json, os, sys
    import torch
    from modeling_supclap.cli.train import main
    from modeling_supclap.training import TrainStep

    LOG = os.environ["WEIGHT_LOG"]


    class OneRankPoisoned(TrainStep):
        # Rank 1's loss at step 2 is NaN; every rank logs a hash of its weights after every step.
        def forward(self, batch):
            outputs = super().forward(batch)
            if self.accelerator.process_index == 1 and self.position.step == 2:
                outputs.loss = outputs.loss * float("nan")
            return outputs

        def __call__(self, micro_batches, position):
            self.position = position
            try:
                return super().__call__(micro_batches, position)
            finally:
                digest = hashlib.sha256()
                for param in self.model.parameters():  # the weights (BatchNorm statistics are per rank)
                    digest.update(param.detach().cpu().contiguous().numpy().tobytes())
                with open(f"{LOG}.{self.accelerator.process_index}", "a") as log:
                    log.write(json.dumps({"step": position.step, "sha256": digest.hexdigest()}) + "\\n")


    main(sys.argv[1:], step_class=OneRankPoisoned)
    """
)


def test_a_nonfinite_step_on_one_rank_is_skipped_by_all_and_weights_stay_identical(
    small_corpus_cache, tmp_path
):
    driver = tmp_path / "nan.py"
    driver.write_text(NAN_DRIVER)
    out = tmp_path / "skip"
    args = _args(small_corpus_cache, out, "--max_steps", "4", "--per_device_train_batch_size", "4")
    processes = _start_two([*args, "--skip_nonfinite"], script=driver, WEIGHT_LOG=str(tmp_path / "w"))
    assert [p.wait(timeout=300) for p in processes] == [0, 0], processes[0].stderr.read()[-3000:]
    logs = [
        [json.loads(line) for line in (tmp_path / f"w.{rank}").read_text().splitlines()] for rank in (0, 1)
    ]
    assert logs[0] == logs[1]  # bitwise the same weights on both ranks after every step
    hashes = [row["sha256"] for row in logs[0]]
    assert hashes[1] == hashes[0] and hashes[2] != hashes[1]  # step 2 skipped everywhere, step 3 trained
    assert json.loads((out / "metrics.json").read_text())["train_state"]["nonfinite_skipped"] == 1

    stop = tmp_path / "stop"
    args = _args(small_corpus_cache, stop, "--max_steps", "4", "--per_device_train_batch_size", "4")
    processes = _start_two(args, script=driver, WEIGHT_LOG=str(tmp_path / "v"))
    codes = [p.wait(timeout=120) for p in processes]
    errors = [p.stderr.read() for p in processes]
    assert all(code != 0 for code in codes)  # both stop, neither waits for the other
    assert all("NonFiniteLossError: non-finite loss at step 2" in e for e in errors), errors[0][-2000:]
