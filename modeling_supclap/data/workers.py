"""What every DataLoader worker of a run sets up first (training, streaming and evaluation loaders)."""

from __future__ import annotations

import signal

# A scheduler's stop request (SIGTERM) and SLURM's warning before a time limit (--signal=USR1@90):
# the training loop saves a checkpoint on either (training/resilience.py: StopSignals).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


def ignore_stop_signals(worker_id: int) -> None:
    """``worker_init_fn`` of every DataLoader: stop signals are the main process's to act on.

    A scheduler stopping a job (SLURM's ``scancel``, its time limit or ``--signal``) signals every process
    of it, DataLoader workers included. PyTorch's worker dies on a SIGTERM that its parent did not send,
    and the main process then fails at once ("DataLoader worker ... is killed by signal: Terminated")
    instead of saving a checkpoint at the step boundary; SIGUSR1's default action kills a worker too.
    Ignoring both, a worker lives until the main process shuts the loader down (or dies: workers watch
    their parent and exit with it).
    """
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
