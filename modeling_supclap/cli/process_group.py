"""How a command line that may run as several processes ends: its process group released, never hung.

``train_supclap.py`` (an Accelerate run, whose DDP reducer holds the gloo group) and ``supclap-embed``
(a ``PartialState`` group, no model wrapper) both end through :func:`release_process_group_after`.

Why: a live gloo/nccl group aborts the interpreter at its exit, and gloo's destructor can deadlock there:
it joins gloo's worker thread while holding the GIL that thread needs. It did, under load, after SIGUSR1
to one of two ranks, because the failed run's traceback kept the DDP reducer alive until the exit
(tests/training/test_resilience.py). So a failure drops its frames first, the garbage is collected, and
the group is destroyed under a time limit; past it, the process exits with the status the error reports.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import traceback
from collections.abc import Callable
from typing import TypeVar

from .errors import exit_code_of

T = TypeVar("T")


def release_process_group_after(program: str, body: Callable[[], T], timeout_s: float = 60.0) -> T:
    """``body()``, then the process group destroyed (bounded by ``timeout_s``); a failure of ``body`` is
    re-raised after that, without its frames (the traceback's text is kept as a note that ``--debug``
    prints), so that nothing of the run is alive when the group goes."""
    try:
        result = body()
    except BaseException as error:
        failure = without_frames(error)
    else:
        shutdown_process_group(program, exit_code=0, timeout_s=timeout_s)
        return result
    # Out of the except block, so that nothing holds the run's frames: freed here, before the group.
    gc.collect()
    shutdown_process_group(program, exit_code=exit_code_of(failure), timeout_s=timeout_s)
    raise failure


def without_frames(error: BaseException) -> BaseException:
    """``error`` without its traceback (the frames hold the run's objects), nor its causes'; the traceback's
    text is kept as a note, which ``--debug`` prints (one-line reports print the message alone)."""
    error.add_note(
        "Raised at (the run's frames, freed before the exit):\n"
        + "".join(traceback.format_tb(error.__traceback__)).rstrip()
    )
    chained: BaseException | None = error
    seen: set[int] = set()
    while chained is not None and id(chained) not in seen:
        seen.add(id(chained))
        chained.with_traceback(None)
        chained = chained.__cause__ or chained.__context__
    return error


def shutdown_process_group(program: str, exit_code: int, timeout_s: float = 60.0) -> None:
    """Destroy the default process group, if there is one; if that takes longer than ``timeout_s``, say so
    and end the process with ``exit_code`` (``os._exit``: no destructor runs that could hang it)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    thread = threading.Thread(target=dist.destroy_process_group, daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        print(f"{program}: the process group did not shut down in {timeout_s:g} s; exiting", file=sys.stderr)
        sys.stderr.flush()
        os._exit(exit_code)
