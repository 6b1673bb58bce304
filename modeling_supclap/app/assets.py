"""What the app serves when given nothing: the demo model, trained once if missing, and an index of the
demo corpus's test split made by the model served, built once if missing.

Each is built by running the project's own command (``supclap-train``, ``supclap-demo-corpus``,
``supclap-embed``) in a child process, its progress bars printed as they go, so the app's start-up from
nothing is exactly what a person would run by hand (the commands are printed too). A start interrupted
while it trained (Ctrl-C, a closed terminal, a crash) loses nothing the run had checkpointed: the next start
with the same training arguments resumes from its last checkpoint.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ..demo.corpus import read_corpus_info
from ..inference.store import MANIFEST
from ..training.checkpointing import latest_checkpoint

__all__ = [
    "demo_index_folder",
    "demo_model_is_complete",
    "ensure_demo_index",
    "ensure_demo_model",
    "run_command",
]

# The last file a training run writes into its output folder (after the model and the processor).
_FINAL_FILE = "metrics.json"
# In the demo model's folder: the supclap-train arguments the app started its training with, so that a
# later start resumes that run's checkpoints and no other's (hub.PUSH_IGNORE_PATTERNS leaves it out).
TRAINING_RECORD = ".supclap_app_training.json"


def run_command(command: Sequence[str], what: str, on_step: Callable[[str], None] | None = None) -> None:
    """Run ``command`` with its output on this process's terminal; a failure is a ``RuntimeError`` naming
    ``what`` and the command to rerun. ``on_step`` hears what is being done (the getting-ready page)."""
    printable = shlex.join(command)
    print(f"supclap-app: {what} (missing; done once): {printable}", flush=True)
    if on_step is not None:
        on_step(f"{what} (missing; done once): {printable}")
    start = time.perf_counter()
    process = subprocess.Popen(list(command), env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        status = process.wait()
    except KeyboardInterrupt:
        _let_it_finish_its_checkpoint(process)
        raise
    if status != 0:
        raise RuntimeError(f"{what} failed (exit status {status}); run it yourself to see why: {printable}")
    print(f"supclap-app: {what}: done in {time.perf_counter() - start:.1f} s", flush=True)


def _let_it_finish_its_checkpoint(process: subprocess.Popen, timeout_s: float = 120.0) -> None:
    """After Ctrl-C: the command got it too (one process group) and training saves a checkpoint at the end
    of its step, so wait for it (``subprocess.run`` would kill it after 0.25 s); a second Ctrl-C, or
    ``timeout_s``, ends it at once."""
    print("supclap-app: Ctrl-C: waiting for the command to stop (again: stop it now)", flush=True)
    try:
        process.wait(timeout=timeout_s)
    except (KeyboardInterrupt, subprocess.TimeoutExpired):
        process.kill()
        process.wait()


def demo_model_is_complete(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds a finished training run's model (model, processor and final metrics)."""
    folder = Path(folder)
    return all((folder / name).is_file() for name in ("config.json", "model.safetensors", _FINAL_FILE))


def ensure_demo_model(
    folder: str | os.PathLike,
    cache_dir: str | os.PathLike,
    num_clips: int,
    train_args: Sequence[str] = (),
    on_step: Callable[[str], None] | None = None,
) -> Path:
    """The demo model in ``folder``: used as it is when complete, else trained there first (the demo corpus
    of ``num_clips`` clips built under ``cache_dir`` if missing); ``train_args``: more ``supclap-train``
    arguments. The arguments are recorded in the folder (``TRAINING_RECORD``): when an earlier start with
    the same arguments was interrupted, the training resumes from its latest complete checkpoint; the
    checkpoints of an earlier start with other arguments are removed (``--overwrite_output_dir``)."""
    folder = Path(folder)
    if demo_model_is_complete(folder):
        return folder
    arguments = ["--output_dir", str(folder), "--cache_dir", str(cache_dir)]
    arguments += ["--demo_num_clips", str(num_clips), *train_args]
    record = folder / TRAINING_RECORD
    recorded = _recorded_arguments(record)
    command = [sys.executable, "-m", "modeling_supclap.cli.train", *arguments]
    if latest_checkpoint(folder) is not None and recorded is not None:
        if recorded == arguments:  # this same training, interrupted: go on
            command += ["--resume_from_checkpoint", "latest"]
        else:  # the app's own training with other arguments: start over
            command += ["--overwrite_output_dir"]
    # The checkpoints of a run the app did not start are left to supclap-train: it stops, saying what to do.
    folder.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"supclap_train_arguments": arguments}, indent=1) + "\n")
    run_command(command, "training the demo model", on_step)
    return folder


def _recorded_arguments(record: Path) -> list[str] | None:
    """The training arguments an earlier start recorded in ``record``; None if none (or unreadable)."""
    try:
        return json.loads(record.read_text())["supclap_train_arguments"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def demo_index_folder(
    cache_dir: str | os.PathLike, model_name: str, fingerprint: str, num_clips: int
) -> Path:
    """Where the index of the demo test split made by a model lives: one folder per model name and weights
    (a model trained again gets a new index, not a refused one)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", model_name.strip("/"))[-60:] or "model"
    weights = fingerprint.rsplit(":", 1)[-1][:12]  # "sha256:<hex>"
    return Path(cache_dir) / "app_indexes" / f"{name}-{weights}-demo{num_clips}-test"


def ensure_demo_index(
    model_name_or_path: str,
    fingerprint: str,
    cache_dir: str | os.PathLike,
    num_clips: int,
    on_step: Callable[[str], None] | None = None,
) -> Path:
    """The index of the demo corpus's test split made by the model ``model_name_or_path`` (whose weights
    have ``fingerprint``): used as it is when complete, else built (the corpus first, if missing)."""
    corpus = Path(cache_dir) / f"demo_corpus_{num_clips}"
    if read_corpus_info(corpus) is None:
        command = [
            sys.executable,
            "-m",
            "modeling_supclap.cli.demo_corpus",
            "--output_dir",
            str(corpus),
            "--demo_num_clips",
            str(num_clips),
        ]
        run_command(command, "building the demo corpus", on_step)
    folder = demo_index_folder(cache_dir, model_name_or_path, fingerprint, num_clips)
    if not (folder / MANIFEST).is_file():
        command = [
            sys.executable,
            "-m",
            "modeling_supclap.cli.embed",
            "--model_name_or_path",
            model_name_or_path,
            "--data",
            str(corpus),
            "--split",
            "test",
            "--output_dir",
            str(folder),
        ]
        run_command(command, "indexing the demo test split", on_step)
    return folder
