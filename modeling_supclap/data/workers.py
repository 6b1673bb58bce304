"""What every DataLoader worker of a run sets up first (training, streaming and evaluation loaders)."""

from __future__ import annotations

import os
import signal
import threading

# A scheduler's stop request (SIGTERM), SLURM's warning before a time limit (--signal=USR1@90) and a
# terminal's Ctrl-C (SIGINT): the training loop saves a checkpoint on each (training/resilience.py).
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGUSR1", "SIGINT") if hasattr(signal, name)
)


def ignore_stop_signals(worker_id: int) -> None:
    """``worker_init_fn`` of every DataLoader: a stop signal is the main process's to act on.

    A scheduler stopping a job (SLURM's ``scancel``, its time limit or ``--signal``) signals every process
    of it, DataLoader workers included. PyTorch's worker dies on a SIGTERM that its parent did not send,
    and the main process then fails at once ("DataLoader worker ... is killed by signal: Terminated")
    instead of saving a checkpoint at the step boundary; SIGUSR1's default action kills a worker too.

    So a worker ignores SIGUSR1 and SIGINT (a terminal's Ctrl-C reaches every process of the foreground
    group: the worker would end, and the main process with it, before its checkpoint), and ignores SIGTERM
    from anyone but its parent. The parent's SIGTERM must still end it: that is how the loader stops a
    worker that did not exit in time (``Process.terminate()``), and a worker deaf to it leaves the run
    hanging at exit. Python's signal
    handlers do not see who sent a signal, so SIGTERM is blocked and a thread takes it with
    ``sigwaitinfo``, which does. Where that is missing (macOS, Windows) SIGTERM keeps PyTorch's handling.
    """
    if hasattr(signal, "SIGUSR1"):
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not hasattr(signal, "sigwaitinfo"):
        return
    parent = os.getppid()
    # Blocked in this thread before the watcher starts: threads started later inherit the mask, so no
    # thread of the worker runs SIGTERM's default action and the watcher receives every one.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})

    def exit_when_the_parent_asks() -> None:
        while True:
            sender = signal.sigwaitinfo({signal.SIGTERM}).si_pid
            if sender == parent:
                os._exit(0)  # as PyTorch's own handler does on its parent's SIGTERM

    threading.Thread(target=exit_when_the_parent_asks, name="supclap-sigterm", daemon=True).start()
