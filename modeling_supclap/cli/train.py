"""``supclap-train`` (``train_supclap.py``, ``python -m modeling_supclap.cli.train``): train a SupCLAP model
with Accelerate.

With no arguments: build (or reuse) the offline demo corpus, train the small preset with bilateral
DynamicSVR for a few minutes on CPU, evaluate on the test split, print a table and save
everything under ``outputs/supclap-demo``. ``--help`` lists every option.
"""

from __future__ import annotations

import gc
import os
import sys
import traceback
from collections.abc import Sequence

from ..training import DataArguments, ModelArguments, TrainArguments, train
from ..training.resilience import PREEMPTED_EXIT_CODE, Preempted
from .errors import run
from .parsing import parse_arguments


def parse_args(argv: Sequence[str] | None = None) -> tuple[ModelArguments, DataArguments, TrainArguments]:
    return parse_arguments((ModelArguments, DataArguments, TrainArguments), argv, description=__doc__)


def main(argv: Sequence[str] | None = None, **train_kwargs) -> None:
    """``train_kwargs`` go to :func:`~modeling_supclap.training.train` (e.g. ``step_class``).

    Errors end in one message and an exit status (``cli/errors.py``): 2 for wrong arguments or data
    (or another run holding --output_dir), 1 for a failed run (a dead peer, non-finite training, a
    full disk), 75 for a preempted one (SIGTERM/SIGUSR1: checkpoint saved, resume it).
    """
    run("train_supclap.py", lambda args: _train(args, **train_kwargs), argv)


def _train(argv: Sequence[str], **train_kwargs) -> None:
    model_args, data_args, train_args = parse_args(argv)
    try:
        train(model_args, data_args, train_args, **train_kwargs)
    except BaseException as error:
        failure = _without_frames(error)
    else:
        _shutdown_process_group(exit_code=0)
        return
    # Out of the except block, so that nothing holds the training frames: the run (its DDP reducer, which
    # holds the gloo group) is freed here, before the group is destroyed under a time limit. Left to the
    # interpreter's exit, the reducer's destructor joins gloo's worker thread while holding the GIL that
    # thread needs: a hang (tests/training/test_resilience.py, SIGUSR1 to one of two processes).
    gc.collect()
    _shutdown_process_group(exit_code=PREEMPTED_EXIT_CODE if isinstance(failure, Preempted) else 1)
    raise failure


def _without_frames(error: BaseException) -> BaseException:
    """``error`` without its traceback (the frames hold the run's objects); the traceback's text is kept as
    a note, which ``--debug`` prints (one-line reports print the message alone)."""
    error.add_note(
        "Raised at (the training frames, freed before the exit):\n"
        + "".join(traceback.format_tb(error.__traceback__)).rstrip()
    )
    chained, seen = error, set()
    while chained is not None and id(chained) not in seen:  # the causes' tracebacks hold frames too
        seen.add(id(chained))
        chained.with_traceback(None)
        chained = chained.__cause__ or chained.__context__
    return error


def _shutdown_process_group(exit_code: int, timeout_s: float = 60.0) -> None:
    """Destroy the process group (a live gloo/nccl group aborts the interpreter at exit), after the run's
    objects are freed, and never let it hang the exit (gloo's destructor can deadlock on the GIL)."""
    import threading

    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    thread = threading.Thread(target=dist.destroy_process_group, daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        print(
            f"train_supclap.py: the process group did not shut down in {timeout_s:g} s; exiting",
            file=sys.stderr,
        )
        sys.stderr.flush()
        os._exit(exit_code)


if __name__ == "__main__":
    main()
