"""What keeps a long run on a shared cluster from losing work or hanging: signals, locks, heartbeats.

* :class:`StopSignals`: SIGTERM (a scheduler's preemption), SIGUSR1 (SLURM's warning before a time
  limit, ``--signal=USR1@90``) and SIGINT (Ctrl-C) only set a flag; the loop sees it at the next step
  boundary on every process (the flag is reduced over processes, so one signalled rank stops them all),
  saves a complete checkpoint and ends with :class:`Preempted` (exit status 75, ``EX_TEMPFAIL``), or
  :class:`Interrupted` after Ctrl-C (130, as a shell reports Ctrl-C). A second Ctrl-C stops at once.
* :class:`OutputDirLock`: the main process holds an exclusive POSIX lock (``lockf``) on
  ``<output_dir>/.lock`` for the whole run, so a second run in the same folder refuses to start
  instead of interleaving checkpoints. The kernel drops the lock when its holder dies (``kill -9``
  included; forked DataLoader workers do not inherit it), so resuming an abandoned run needs nothing;
  ``--take_over_output_dir`` is for the rest (a holder on another machine of a shared filesystem that
  is known to be gone, whose lock the filesystem still keeps).
* :class:`Heartbeat`: every process writes ``<output_dir>/.heartbeat/rank<r>`` (its step) as it goes;
  when a collective fails or times out (``--ddp_timeout``), :func:`dead_rank_error` names the ranks
  that stopped answering, instead of a bare backend error or a hang of the default 30 minutes.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from ..data.workers import STOP_SIGNALS

PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL: "try again" (resume)
INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT, what a shell reports for Ctrl-C


class Preempted(RuntimeError):
    """The run was asked to stop (a signal) and saved a checkpoint to resume from."""


class Interrupted(Preempted):
    """Stopped with Ctrl-C (SIGINT), after saving a checkpoint to resume from."""


class OutputDirLockedError(RuntimeError):
    """Another run holds the output folder."""


class DeadRankError(RuntimeError):
    """A collective failed because other processes stopped answering."""


class StopSignals:
    """Records SIGTERM/SIGUSR1/SIGINT instead of dying; :attr:`received` names the first one (or None).

    After a first Ctrl-C, SIGINT gets its previous handler back: a second one interrupts at once
    (``KeyboardInterrupt``), for a user who will not wait for the step and its checkpoint."""

    SIGNALS = STOP_SIGNALS  # DataLoader workers ignore them (data/workers.py): they are ours to act on

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        for signum in self.SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = self.received or signal.Signals(signum).name
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, self._previous[signal.SIGINT])
            print(
                "\nCtrl-C: stopping after this step, with a checkpoint to resume from (again: stop now)",
                file=sys.stderr,
                flush=True,
            )

    def stop_error(self, message: str) -> Preempted:
        """The error that ends a run stopped by the signal received (by another process if none here)."""
        return Interrupted(message) if self.received == "SIGINT" else Preempted(message)

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


class OutputDirLock:
    """An exclusive ``lockf`` lock on ``<folder>/.lock`` (main process only), released at exit or death."""

    def __init__(self, folder: str | os.PathLike, take_over: bool = False) -> None:
        self.path = Path(folder) / ".lock"
        self.take_over = take_over
        self._handle: Any = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES):
                handle.close()
                raise
            holder = self._holder()
            if not self.take_over:
                handle.close()
                raise OutputDirLockedError(
                    f"{self.path.parent} is in use by another run ({holder}); wait for it to finish, pick "
                    "another --output_dir, or, if that run is gone but its machine's lock is not (a shared "
                    "filesystem), pass --take_over_output_dir"
                ) from error
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}))
        handle.flush()
        self._handle = handle

    def _holder(self) -> str:
        try:
            info = json.loads(self.path.read_text() or "{}")
        except ValueError:
            return "holder unknown"
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("started", 0)))
        return f"pid {info.get('pid')} on {info.get('host')}, started {started}"

    def release(self) -> None:
        if self._handle is not None:
            fcntl.lockf(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


class Heartbeat:
    """``<folder>/.heartbeat/rank<r>`` holds this process's last step and when it was written."""

    def __init__(self, folder: str | os.PathLike, rank: int, world_size: int) -> None:
        self.folder, self.rank, self.world_size = Path(folder) / ".heartbeat", rank, world_size
        self.folder.mkdir(parents=True, exist_ok=True)

    def beat(self, step: int) -> None:
        (self.folder / f"rank{self.rank}").write_text(f"{step} {time.time()}\n")

    def silent_ranks(self) -> list[tuple[int, int | None, float | None]]:
        """(rank, last step, seconds since) of the other ranks, the longest silent first."""
        now, found = time.time(), []
        for rank in range(self.world_size):
            if rank == self.rank:
                continue
            try:
                step, stamp = (self.folder / f"rank{rank}").read_text().split()
                found.append((rank, int(step), now - float(stamp)))
            except (OSError, ValueError):
                found.append((rank, None, None))
        return sorted(found, key=lambda item: -(item[2] if item[2] is not None else float("inf")))


def is_collective_failure(error: BaseException) -> bool:
    """Whether ``error`` is a distributed backend's: a peer gone, or a collective that timed out."""
    import torch.distributed as dist

    if isinstance(error, getattr(dist, "DistError", ())):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and any(
        marker in text
        for marker in ("Connection closed by peer", "Connection reset by peer", "timed out", "Timeout")
    )


def dead_rank_error(error: BaseException, heartbeat: Heartbeat | None, timeout_s: float) -> DeadRankError:
    """A :class:`DeadRankError` naming the ranks that stopped answering (from their heartbeats)."""
    if heartbeat is None:
        who = "another process"
    else:
        silent = heartbeat.silent_ranks()
        stale = [s for s in silent if s[2] is None or s[2] > 1.0] or silent[:1]
        who = ", ".join(
            f"rank {rank}"
            + (f" (last step {step}, {since:.1f} s ago)" if since is not None else " (never heard)")
            for rank, step, since in stale
        )
    rank = heartbeat.rank if heartbeat is not None else "?"
    return DeadRankError(
        f"{who} stopped answering: a collective of rank {rank} failed ({type(error).__name__}: "
        f"{str(error).splitlines()[0][:200]}). This process stops (collectives time out after --ddp_timeout "
        f"{timeout_s:g} s). Resume every process with --resume_from_checkpoint latest."
    )
