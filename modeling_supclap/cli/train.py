"""``train_supclap.py``: train a SupCLAP model with Accelerate.

With no arguments: build (or reuse) the offline demo corpus, train the small preset with bilateral
DynamicSVR for a few minutes on CPU, evaluate on the test split, print a table and save
everything under ``outputs/supclap-demo``. ``--help`` lists every option.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from ..training import DataArguments, ModelArguments, TrainArguments, train
from ..training.arguments import parse_arguments
from ..training.resilience import PREEMPTED_EXIT_CODE, DeadRankError, OutputDirLockedError, Preempted


def parse_args(argv: Sequence[str] | None = None) -> tuple[ModelArguments, DataArguments, TrainArguments]:
    return parse_arguments((ModelArguments, DataArguments, TrainArguments), argv, description=__doc__)


def main(argv: Sequence[str] | None = None, **train_kwargs) -> None:
    """``train_kwargs`` go to :func:`~modeling_supclap.training.train` (e.g. ``step_class``).

    A preempted run (SIGTERM/SIGUSR1, checkpoint saved) exits with status 75; one whose peers stopped
    answering, with 1; another run holding --output_dir, with 2; each with one message on stderr.
    """
    model_args, data_args, train_args = parse_args(argv)
    code = 0
    try:
        train(model_args, data_args, train_args, **train_kwargs)
    except Preempted as stop:
        print(f"train_supclap.py: preempted: {stop}", file=sys.stderr)
        code = PREEMPTED_EXIT_CODE
    except DeadRankError as error:
        print(f"train_supclap.py: {error}", file=sys.stderr)
        code = 1
    except OutputDirLockedError as error:
        print(f"train_supclap.py: {error}", file=sys.stderr)
        code = 2
    finally:
        _shutdown_process_group(exit_code=code)
    if code:
        sys.exit(code)


def _shutdown_process_group(exit_code: int, timeout_s: float = 60.0) -> None:
    """Destroy the process group (a live gloo/nccl group aborts the interpreter at exit), but never let
    it hang the exit: once, under heavy load, a gloo process stayed in it after its peer had exited."""
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
