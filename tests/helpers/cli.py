"""The command lines of the real entry points, as the tests run them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .processes import run_bounded

REPO = Path(__file__).resolve().parents[2]
SMALL_CORPUS_CLIPS = 80

# Prefix of a subprocess script that must work without the modeling_supclap package (as on a machine
# that only has a saved model folder): any import of it raises ImportError.
BLOCK_PACKAGE_IMPORT = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "modeling_supclap" or name.startswith("modeling_supclap."):
            raise ImportError("modeling_supclap is blocked in this test")
sys.meta_path.insert(0, Block())
"""


def tiny_train_args(cache: Path, output_dir: Path, *extra: str) -> list[str]:
    """Arguments of a seconds-long ``train_supclap.py`` run on the small corpus."""
    return [
        "--preset",
        "tiny",
        "--cache_dir",
        str(cache),
        "--demo_num_clips",
        str(SMALL_CORPUS_CLIPS),
        "--output_dir",
        str(output_dir),
        "--per_device_train_batch_size",
        "8",
        "--per_device_eval_batch_size",
        "16",
        "--max_steps",
        "6",
        "--warmup_steps",
        "2",
        "--learning_rate",
        "3e-3",
        "--eval_steps",
        "3",
        "--save_steps",
        "3",
        "--logging_steps",
        "1",
        "--dataloader_num_workers",
        "0",
        "--report_to",
        "none",
        "--use_cpu",
        *extra,
    ]


def run_script(args: list[str], timeout: int = 600, **kwargs) -> subprocess.CompletedProcess:
    """Run a Python entry point of the repo in a subprocess (the way users run it); a ``None`` in ``env``
    unsets that variable."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **kwargs.pop("env", {})}
    env = {key: value for key, value in env.items() if value is not None}
    return run_bounded([sys.executable, *args], timeout, cwd=kwargs.pop("cwd", REPO), env=env, **kwargs)


def run_in_process(main: Callable[[list[str]], Any], argv: list[str]) -> subprocess.CompletedProcess:
    """A command line's ``main(argv)`` (``modeling_supclap.cli.*.main``) in the test process: its exit status,
    what it printed, and what it logged (in stderr, as a process would show it).

    For the runs whose results a test then reads (a report, a usage error, a trained folder): a subprocess
    costs ~5 s of imports (torch and transformers) and set-up before it does anything, most of a tiny
    training run (~8 s as a process, ~1.5 s here) and the better part of the suite's time. What only a
    process shows (the entry point itself, signals, several ranks, a crash) stays with :func:`run_script`.
    Accelerate's process-wide state is reset before and after, and the environment variables are restored
    afterwards, so nothing of an earlier test reaches the run and nothing of the run reaches the next test.

    Everything a process would print reaches ``stderr``: our logs, transformers' own logger (it does not
    propagate to the root and writes to the stream it found at import) and ``warnings`` (pytest records them
    instead of printing them)."""
    import contextlib
    import io
    import logging
    import warnings

    stdout, stderr = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(stderr)
    root, level = logging.getLogger(), logging.getLogger().level
    loggers = (root, logging.getLogger("transformers"))
    for logger in loggers:
        logger.addHandler(handler)
    root.setLevel(logging.INFO)  # as the command lines' own logging set-up does
    environment = dict(os.environ)
    code = 0
    # As a fresh process: no Accelerate state left by the test or an earlier one (a set mixed precision is
    # an error on the next Accelerator that asks for another).
    reset_accelerate_state()
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(warnings.catch_warnings())
            stack.enter_context(contextlib.redirect_stdout(stdout))
            stack.enter_context(contextlib.redirect_stderr(stderr))
            warnings.simplefilter("always")  # each one, not once per place: "not in stderr" checks see all
            warnings.showwarning = _print_warning
            main(list(argv))
    except SystemExit as exit_:
        code = exit_status(exit_)
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
        root.setLevel(level)
        reset_accelerate_state()
        os.environ.clear()
        os.environ.update(environment)
    return subprocess.CompletedProcess(list(argv), code, stdout.getvalue(), stderr.getvalue())


def exit_status(exit_: SystemExit) -> int:
    """The status a process would end with after ``exit_`` (``sys.exit(None)``: 0; a message: 1)."""
    return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)


def reset_accelerate_state() -> None:
    """Forget Accelerate's process-wide state (devices, mixed precision, gradient accumulation), as a new
    process starts without it."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def run_file_in_process(script: Path, argv: list[str], **env: str) -> subprocess.CompletedProcess:
    """A Python file run as ``__main__`` with ``argv`` (and ``env`` set), in the test process, as
    :func:`run_in_process` runs a ``main``: for a test's driver script that a process must also run
    elsewhere (killed, or under ``accelerate launch``), so that both runs use one script."""
    import runpy

    def main(arguments: list[str]) -> None:
        os.environ.update(env)  # run_in_process restores the environment afterwards
        saved = sys.argv
        sys.argv = [str(script), *arguments]
        try:
            runpy.run_path(str(script), run_name="__main__")
        finally:
            sys.argv = saved

    return run_in_process(main, argv)


def _print_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """``warnings.showwarning`` as an interpreter has it: the formatted warning on (the current) stderr."""
    import warnings

    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def accelerate_launch_two_cpu(
    script: str, args: list[str], timeout: int = 600, **env
) -> subprocess.CompletedProcess:
    """``accelerate launch`` of ``script`` as two gloo processes on the CPU (the README's line)."""
    import shutil

    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
    launcher = [
        accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--num_cpu_threads_per_process", "1", "--main_process_port", "0", "--mixed_precision", "no",
        "--dynamo_backend", "no",
    ]  # fmt: skip
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **env}
    return run_bounded([*launcher, script, *args], timeout, cwd=REPO, env=environment)


def wait_for_step(out: Path, step: int, processes: list[subprocess.Popen], timeout: float = 300) -> None:
    """Until every heartbeat of the run in ``out`` (training/resilience.py) says ``step`` or later."""
    deadline = time.monotonic() + timeout
    while True:
        beats = [out / ".heartbeat" / f"rank{rank}" for rank in range(len(processes))]
        try:
            if all(int(b.read_text().split()[0]) >= step for b in beats):
                return
        except (OSError, ValueError, IndexError):
            pass
        assert all(p.poll() is None for p in processes), "a process ended before the fault was injected"
        assert time.monotonic() < deadline
        time.sleep(0.05)
