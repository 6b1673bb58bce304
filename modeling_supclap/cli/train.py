"""``train_supclap.py``: train a SupCLAP model with Accelerate.

With no arguments: build (or reuse) the offline demo corpus, train the small preset with bilateral
DynamicSVR for a few minutes on CPU, evaluate on the test split, print a table and save
everything under ``outputs/supclap-demo``. ``--help`` lists every option.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..training import DataArguments, ModelArguments, TrainArguments, train
from ..training.arguments import parse_arguments


def parse_args(argv: Sequence[str] | None = None) -> tuple[ModelArguments, DataArguments, TrainArguments]:
    return parse_arguments((ModelArguments, DataArguments, TrainArguments), argv, description=__doc__)


def main(argv: Sequence[str] | None = None, **train_kwargs) -> None:
    """``train_kwargs`` go to :func:`~modeling_supclap.training.train` (e.g. ``step_class``)."""
    model_args, data_args, train_args = parse_args(argv)
    try:
        train(model_args, data_args, train_args, **train_kwargs)
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()  # a live gloo/nccl group aborts the interpreter at exit


if __name__ == "__main__":
    main()
