"""``supclap-train`` (``train_supclap.py``, ``python -m modeling_supclap.cli.train``): train a SupCLAP model
with Accelerate.

With no arguments: build (or reuse) the offline demo corpus, train the small preset with bilateral
DynamicSVR for a few minutes on CPU, evaluate on the test split, print a table and save
everything under ``outputs/supclap-demo``. ``--help`` lists every option.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..training import DataArguments, ModelArguments, TrainArguments, train
from .errors import run
from .parsing import parse_arguments
from .process_group import release_process_group_after


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
    # The run's DDP reducer holds the gloo group: it must be freed before the group goes (process_group.py).
    release_process_group_after(
        "train_supclap.py", lambda: train(model_args, data_args, train_args, **train_kwargs)
    )


if __name__ == "__main__":
    main()
