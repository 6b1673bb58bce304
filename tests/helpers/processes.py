"""Child processes of the tests: every wait bounded, every child cleaned up, no destructor deadlocks.

Why this exists: a two-process test once hung the suite for good. A gloo rank's worker function
returned, DDP's ``Reducer`` destructor ran ``~ProcessGroupGloo``, which joined gloo's worker thread
while holding the GIL, and that thread waited for the GIL. Three rules follow, each in one place here:

* :func:`run_workers` runs ``target(rank, *args)`` in spawned processes that end with ``os._exit``
  right after the target returns (no destructor of DDP, models or process groups runs), joins them
  against one deadline and kills what is left, so a hung rank fails the test naming itself.
* :func:`start` / :func:`run_bounded` start commands in a process group of their own (an
  ``accelerate launch`` or ``torchrun`` launcher and all its ranks), and a timeout kills the whole group.
* Every child dies with the test process (``PR_SET_PDEATHSIG`` on Linux), and :func:`kill_leftovers`
  (called by an autouse fixture after each test) kills the groups a failing test left running. A server
  that a module- or session-scoped fixture shares between tests (``start(..., across_tests=True)``) is
  killed by that fixture's teardown, and by :func:`kill_shared` at the end of the session.

The suite's per-test time limit (pytest-timeout, in ``pyproject.toml``) and the hard backstop for a test
process stuck with the GIL held are set up in ``conftest.py``.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

_STARTED: list[subprocess.Popen] = []  # by start(); kill_leftovers() ends the groups still alive
_SHARED: list[
    subprocess.Popen
] = []  # by start(across_tests=True); their fixture, or kill_shared(), ends them
_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a process group's rendezvous)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def die_with_parent() -> None:
    """Linux: SIGKILL this process when the process that started it ends (no orphan outlives a crashed
    test process). Elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def start(cmd: Sequence[str], across_tests: bool = False, **kwargs: Any) -> subprocess.Popen:
    """``subprocess.Popen(cmd)`` in a new process group (unless ``start_new_session=False``), dying with
    the test process; :func:`kill_group` or :func:`kill_leftovers` ends it and everything it started.

    ``across_tests``: a server a fixture shares between tests: not ended after each test, but by the
    fixture (``kill_group``) or at the end of the session (:func:`kill_shared`)."""
    kwargs.setdefault("start_new_session", True)
    process = subprocess.Popen(list(cmd), preexec_fn=die_with_parent, **kwargs)
    process.own_group = kwargs["start_new_session"]  # type: ignore[attr-defined]
    (_SHARED if across_tests else _STARTED).append(process)
    return process


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL ``process`` and, if it leads a group of its own, every process of that group; reap it."""
    try:
        if getattr(process, "own_group", False):
            os.killpg(process.pid, signal.SIGKILL)  # the group outlives its leader: killed either way
        elif process.poll() is None:
            process.kill()
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()


def run_bounded(
    cmd: Sequence[str], timeout: float, input: str | None = None, **kwargs: Any
) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, capture_output=True, text=True, timeout=...)``, except that a timeout kills
    the whole process group (a launcher's ranks too) before raising ``TimeoutExpired`` with the output."""
    kwargs.setdefault("stdin", subprocess.PIPE if input is not None else subprocess.DEVNULL)
    process = start(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)
    try:
        stdout, stderr = process.communicate(input=input, timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(process)
        stdout, stderr = process.communicate()
        raise subprocess.TimeoutExpired(list(cmd), timeout, stdout, stderr) from None
    finally:
        if process.poll() is None:
            kill_group(process)
    return subprocess.CompletedProcess(list(cmd), process.returncode, stdout, stderr)


def kill_leftovers() -> list[str]:
    """Kill the groups of every process :func:`start` began that still has a live member; the commands."""
    killed = []
    for process in _STARTED:
        group_alive = False
        if getattr(process, "own_group", False):
            try:
                os.killpg(process.pid, 0)
                group_alive = True
            except (ProcessLookupError, PermissionError):
                pass
        if group_alive or process.poll() is None:
            killed.append(" ".join(map(str, process.args))[:200])
            kill_group(process)
    _STARTED.clear()
    return killed


def kill_shared() -> None:
    """Kill the groups of the shared servers (``start(..., across_tests=True)``) still running."""
    for process in _SHARED:
        kill_group(process)
    _SHARED.clear()


def _worker_entry(target: Callable[..., None], rank: int, args: tuple) -> None:
    """A rank's whole life: run ``target``, then ``os._exit`` (destructors of DDP wrappers, models and
    process groups never run, so none of them can deadlock the exit)."""
    die_with_parent()
    code = 0
    try:
        target(rank, *args)
    except BaseException:  # reported through the exit status and stderr
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def run_workers(target: Callable[..., None], nprocs: int, args: tuple = (), timeout: float = 240.0) -> None:
    """``target(rank, *args)`` in ``nprocs`` spawned processes, all joined against one deadline.

    ``target`` must be importable (a module-level function) and write its results to files; it should
    end its collectives with a ``dist.barrier()`` so no rank exits while another still talks to it (no
    ``destroy_process_group``: the process ends with ``os._exit``). A rank still running at the deadline
    is killed and the test fails naming it, as does a rank that exits non-zero.
    """
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_worker_entry, args=(target, rank, args)) for rank in range(nprocs)]
    for process in processes:
        process.start()
    deadline = time.monotonic() + timeout
    try:
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
        hung = [rank for rank, process in enumerate(processes) if process.is_alive()]
        failed = {rank: p.exitcode for rank, p in enumerate(processes) if p.exitcode not in (0, None)}
        if hung or failed:
            raise AssertionError(
                f"{target.__name__}: rank(s) {hung} still running after {timeout:g} s (killed); "
                f"exit status by rank {failed} (their tracebacks are in the captured stderr)"
            )
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
            process.join()
