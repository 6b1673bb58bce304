"""Training with Accelerate (``train_supclap.py``).

``arguments.py`` the flags; ``run.py`` builds a run from them (:func:`build_run`); ``step.py`` one
optimizer step (:class:`TrainStep`); ``loop.py`` the loop (:func:`train`); ``state.py`` its progress
(:class:`TrainState`); ``checkpointing.py`` resumable checkpoints; ``validation.py`` and ``finish.py``
what is evaluated and saved. See docs/ARCHITECTURE.md.
"""

from .arguments import ColumnArguments, CorpusArguments, DataArguments, ModelArguments, TrainArguments
from .loop import train
from .run import TrainingRun, build_run
from .state import TrainState
from .step import NonFiniteLossError, StepPosition, StepResult, TrainStep

__all__ = [
    "ColumnArguments",
    "CorpusArguments",
    "DataArguments",
    "ModelArguments",
    "NonFiniteLossError",
    "StepPosition",
    "StepResult",
    "TrainArguments",
    "TrainState",
    "TrainStep",
    "TrainingRun",
    "build_run",
    "train",
]
