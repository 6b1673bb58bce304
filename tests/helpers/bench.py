"""The benchmark scripts of ``benchmarks/`` in the test process.

:func:`run_benchmark` calls a script's ``main(argv)`` as ``python benchmarks/<name>.py ARGV`` runs it (its
``sys.argv``, its exit status, what it printed), and with ``train_in_process`` every run it starts through
``bench_quality.launch`` (where ``bench_quality.execute_run`` starts each ``train_supclap.py`` command, and
``bench_lr_curves.py`` its ``eval_supclap.py`` one) becomes a call of that command line's ``main`` with the
command's arguments, in this process: each process costs ~5 s of imports before it does anything.

What stays a process (docs/ARCHITECTURE.md): the children a benchmark measures as processes (timed from
their start, or their peak memory) are left to the script, and a few calls run the scripts as users do
(bench_quality.py with a real training run, bench_lr_curves.py resuming).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import queue
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from .cli import REPO, exit_status, reset_accelerate_state, run_in_process

BENCH = REPO / "benchmarks"
# The scripts bench_quality.launch runs, and the module of each one's main.
SCRIPTS = {
    str(REPO / "train_supclap.py"): "modeling_supclap.cli.train",
    str(REPO / "eval_supclap.py"): "modeling_supclap.cli.evaluate",
}
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # the command lines' (training/run.py)


def import_benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` as a module (the scripts import each other from their folder)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)


def run_benchmark(
    name: str, argv: list[str], *, train_in_process: bool = False
) -> subprocess.CompletedProcess:
    """``python benchmarks/<name>.py *argv`` in this process: exit status, stdout, stderr (with the logs).

    With ``train_in_process``, the runs the script starts through ``bench_quality.launch`` run here
    (:class:`_Runs`); without it, whatever the script starts stays a process."""
    import torch

    module = import_benchmark(name)
    saved_argv, threads, cwd = sys.argv, torch.get_num_threads(), os.getcwd()
    sys.argv = [str(BENCH / f"{name}.py"), *argv]
    try:
        if not train_in_process:
            return run_in_process(lambda args: sys.exit(module.main(args)), argv)
        return _run_with_launches_in_process(name, module.main, argv)
    finally:
        sys.argv = saved_argv
        torch.set_num_threads(threads)  # the scripts set their own (--threads)
        os.chdir(cwd)


class _PerThread(io.TextIOBase):
    """``sys.stdout`` / ``sys.stderr`` while a benchmark runs: each thread's writes go to its own target
    (default: the benchmark's), so a training run's output reaches its log and not the benchmark's table."""

    def __init__(self, default: io.StringIO) -> None:
        self.default, self._local = default, threading.local()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        return (getattr(self._local, "target", None) or self.default).write(text)

    @contextlib.contextmanager
    def to(self, target: io.StringIO):
        self._local.target = target
        try:
            yield
        finally:
            self._local.target = None


class _Runs:
    """``bench_quality.launch``'s stand-in. The benchmark (in a thread of its own) hands every command to
    the test's main thread, which runs the script's ``main(cmd[2:])`` there (``SCRIPTS``), as a process's
    main thread would (the training loop installs its signal handlers), one run at a time: in ``REPO`` (the
    command's working directory) with the command's environment variables and thread count, its output
    into the run's log; Accelerate's state and the environment are restored after each run."""

    def __init__(self, stdout: _PerThread, stderr: _PerThread) -> None:
        self.stdout, self.stderr = stdout, stderr
        self.pending: queue.Queue = queue.Queue()
        self.lock, self.closed = threading.Lock(), False

    def launch(self, cmd: list[str], log: Path, env: dict[str, str], timeout: float | None) -> int:
        """In a benchmark thread: wait for the main thread to run ``cmd``; its exit status."""
        assert cmd[0] == sys.executable and cmd[1] in SCRIPTS, cmd  # the script a process would run
        done, result = threading.Event(), {"code": 1}
        with self.lock:
            if self.closed:  # the test ended (a failure, its time limit): no more runs
                return 1
            self.pending.put((cmd[1:], Path(log), env, done, result))
        done.wait()
        return result["code"]

    def serve(self, benchmark: threading.Thread) -> None:
        """In the main thread: run the commands handed over until the benchmark ends."""
        while benchmark.is_alive():
            try:
                (script, *argv), log, env, done, result = self.pending.get(timeout=0.05)
            except queue.Empty:
                continue
            try:
                result["code"] = self._run(importlib.import_module(SCRIPTS[script]).main, argv, log, env)
            finally:
                done.set()

    def close(self) -> None:
        """Release every benchmark thread still waiting (after a failure in the main thread)."""
        with self.lock:
            self.closed = True
            while not self.pending.empty():
                self.pending.get_nowait()[3].set()

    def _run(self, main: Callable[[list[str]], Any], argv: list[str], log: Path, env: dict[str, str]) -> int:
        import torch

        changed = {key: os.environ.get(key) for key, value in env.items() if os.environ.get(key) != value}
        threads, cwd, output = torch.get_num_threads(), os.getcwd(), io.StringIO()
        code = 0
        try:
            os.environ.update({key: env[key] for key in changed})
            if env.get("OMP_NUM_THREADS", "").isdigit():
                torch.set_num_threads(int(env["OMP_NUM_THREADS"]))
            os.chdir(REPO)
            with self.stdout.to(output), self.stderr.to(output):
                try:
                    main(list(argv))
                except SystemExit as exit_:
                    code = exit_status(exit_)
                except Exception:  # a crash: its traceback in the log and status 1, as a process ends
                    output.write(traceback.format_exc())
                    code = 1
        finally:
            reset_accelerate_state()
            for key, value in changed.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            torch.set_num_threads(threads)
            os.chdir(cwd)
            log.write_text(output.getvalue())
        return code


def _run_with_launches_in_process(
    name: str, main: Callable[[list[str]], Any], argv: list[str]
) -> subprocess.CompletedProcess:
    bench_quality = import_benchmark("bench_quality")
    out, err = io.StringIO(), io.StringIO()
    stdout, stderr = _PerThread(out), _PerThread(err)
    runs = _Runs(stdout, stderr)
    outcome: dict[str, Any] = {}

    def benchmark() -> None:
        try:
            code = main(list(argv))
            outcome["code"] = code if isinstance(code, int) else 0
        except SystemExit as exit_:
            outcome["code"] = exit_status(exit_)
        except BaseException as error:  # noqa: BLE001  (raised again in the test's thread)
            outcome["error"] = error

    handler = logging.StreamHandler(stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root, level = logging.getLogger(), logging.getLogger().level
    environment, launch = dict(os.environ), bench_quality.launch
    thread = threading.Thread(target=benchmark, name=f"benchmark {name}", daemon=True)
    root.addHandler(handler)
    root.setLevel(logging.INFO)  # as the command lines' own logging set-up does
    bench_quality.launch = runs.launch
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            thread.start()
            runs.serve(thread)
            thread.join()
    finally:
        runs.close()
        bench_quality.launch = launch
        root.removeHandler(handler)
        root.setLevel(level)
        os.environ.clear()
        os.environ.update(environment)
    if "error" in outcome:
        raise outcome["error"]
    return subprocess.CompletedProcess(list(argv), outcome["code"], out.getvalue(), err.getvalue())
