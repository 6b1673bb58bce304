"""How the command lines end on an error: one clear message and an exit status, not a traceback.

A user's mistake (a missing column, a bad sample, a missing processor, a wrong flag value) or an
expected fault of a long run (preemption, a dead peer, a full disk) prints one line,
``<program>: <ErrorType>: <message>``, and exits with a status that says which kind it was. Anything
else is a bug and keeps its traceback. ``--debug`` (or ``SUPCLAP_DEBUG=1``) shows the traceback of
every error.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

USAGE_ERROR = 2  # the arguments or the data are wrong: fix them and run again
RUNTIME_ERROR = 1  # the run failed (non-finite training, a dead peer, a full disk)


def _exit_codes() -> list[tuple[type[BaseException], int]]:
    """(exception type, exit status), most specific first."""
    from ..training.checkpointing import CheckpointError
    from ..training.resilience import (
        INTERRUPTED_EXIT_CODE,
        PREEMPTED_EXIT_CODE,
        DeadRankError,
        Interrupted,
        OutputDirLockedError,
        Preempted,
    )
    from ..training.step import NonFiniteLossError

    return [
        (Interrupted, INTERRUPTED_EXIT_CODE),
        (Preempted, PREEMPTED_EXIT_CODE),
        (DeadRankError, RUNTIME_ERROR),
        (NonFiniteLossError, RUNTIME_ERROR),
        (CheckpointError, RUNTIME_ERROR),
        (OutputDirLockedError, USAGE_ERROR),
        (ValueError, USAGE_ERROR),  # includes BadSampleError / BadSamplesError
        (FileNotFoundError, USAGE_ERROR),
        (OSError, RUNTIME_ERROR),
    ]


def exit_code_of(error: BaseException) -> int:
    """The exit status a command line ends with after ``error`` (1 for one that is not listed: a bug)."""
    return next((code for kind, code in _exit_codes() if isinstance(error, kind)), RUNTIME_ERROR)


def _one_line(error: BaseException) -> str:
    """The error's message; for one re-raised from a DataLoader worker, without the worker's traceback."""
    text = str(error)
    if "Original Traceback" in text:
        lines = [line for line in text.splitlines() if line.strip()]
        text = lines[-1].split(": ", 1)[-1] if lines else text
    return text


def run(program: str, main: Callable[[Sequence[str]], Any], argv: Sequence[str] | None = None) -> Any:
    """``main(argv)`` with errors reported as described in the module docstring (``--debug`` removed)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("SUPCLAP_DEBUG") == "1"
    argv = [arg for arg in argv if arg != "--debug"]
    if debug:
        return main(argv)
    try:
        return main(argv)
    except Exception as error:
        if not any(isinstance(error, kind) for kind, _ in _exit_codes()):
            raise
        from ..training.resilience import Preempted  # (imported by _exit_codes already)

        code = exit_code_of(error)
        hint = "" if isinstance(error, Preempted) else " (--debug shows the traceback)"
        print(f"{program}: {type(error).__name__}: {_one_line(error)}{hint}", file=sys.stderr)
        sys.exit(code)
