"""``train_supclap.py``: train a SupCLAP model with Accelerate.

With no arguments: build (or reuse) the offline demo corpus, train the small preset with bilateral
DynamicSVR for a few minutes on CPU, evaluate on the test split, print a table and save
everything under ``outputs/supclap-demo``. ``--help`` lists every option.
"""

from __future__ import annotations

import sys

from transformers import HfArgumentParser

from ..training import DataArguments, ModelArguments, TrainArguments, train


def parse_args(argv: list[str] | None = None) -> tuple[ModelArguments, DataArguments, TrainArguments]:
    parser = HfArgumentParser((ModelArguments, DataArguments, TrainArguments), description=__doc__)
    return parser.parse_args_into_dataclasses(args=argv)


def main(argv: list[str] | None = None) -> None:
    model_args, data_args, train_args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        train(model_args, data_args, train_args)
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()  # a live gloo/nccl group aborts the interpreter at exit


if __name__ == "__main__":
    main()
