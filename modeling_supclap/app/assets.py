"""What the app serves when given nothing: the demo model, trained once if missing.

It is built by running the project's own command (``supclap-train``) in a child process, its progress bars
printed as they go, so the app's start-up from nothing is exactly what a person would run by hand (the
command is printed too).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["demo_model_is_complete", "ensure_demo_model", "run_command"]

# The last file a training run writes into its output folder (after the model and the processor).
_FINAL_FILE = "metrics.json"


def run_command(command: Sequence[str], what: str) -> None:
    """Run ``command`` with its output on this process's terminal; a failure is a ``RuntimeError`` naming
    ``what`` and the command to rerun."""
    printable = shlex.join(command)
    print(f"supclap-app: {what}: {printable}", flush=True)
    start = time.perf_counter()
    status = subprocess.run(list(command), env={**os.environ, "PYTHONUNBUFFERED": "1"}).returncode
    if status != 0:
        raise RuntimeError(f"{what} failed (exit status {status}); run it yourself to see why: {printable}")
    print(f"supclap-app: {what}: done in {time.perf_counter() - start:.1f} s", flush=True)


def demo_model_is_complete(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds a finished training run's model (model, processor and final metrics)."""
    folder = Path(folder)
    return all((folder / name).is_file() for name in ("config.json", "model.safetensors", _FINAL_FILE))


def ensure_demo_model(
    folder: str | os.PathLike, cache_dir: str | os.PathLike, num_clips: int, train_args: Sequence[str] = ()
) -> Path:
    """The demo model in ``folder``: used as it is when complete, else trained there first (the demo corpus
    of ``num_clips`` clips built under ``cache_dir`` if missing); ``train_args``: more ``supclap-train``
    arguments."""
    folder = Path(folder)
    if not demo_model_is_complete(folder):
        command = [
            sys.executable,
            "-m",
            "modeling_supclap.cli.train",
            "--output_dir",
            str(folder),
            "--cache_dir",
            str(cache_dir),
            "--demo_num_clips",
            str(num_clips),
            *train_args,
        ]
        run_command(command, f"no demo model in {folder}: training it (once)")
    return folder
