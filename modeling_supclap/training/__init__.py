"""Training with Accelerate (``train_supclap.py``): arguments, loop, checkpoints."""

from .arguments import DataArguments, ModelArguments, TrainArguments
from .loop import train

__all__ = ["DataArguments", "ModelArguments", "TrainArguments", "train"]
