"""The interface the training loop consumes: a :class:`TrainingSource` of collated batches.

A new kind of corpus is a subclass (a file in this folder) and a branch in ``training_data.py``; the loop
needs no change.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from accelerate import Accelerator

__all__ = ["TrainingSource"]


class TrainingSource(ABC):
    """What the training loop iterates: collated batches, epoch by epoch, resumable mid-epoch.

    ``num_samples`` is the number of training pairs, or ``None`` where it is not known up front
    (a stream): the loop never needs it, ``--max_steps`` defines the run. A source whose position
    cannot be derived from ``(epoch, batches already consumed)`` keeps it in :meth:`state_dict`:
    every process's is saved in each checkpoint (``data_state_<rank>.pt``) and handed back to
    :meth:`load_state_dict` on resume.
    """

    num_samples: int | None = None

    @abstractmethod
    def prepare(self, accelerator: Accelerator) -> None:
        """Build the loader(s) for this process (called once, before the first batch)."""

    @abstractmethod
    def batches(self, epoch: int, skip: int = 0) -> Iterator[dict[str, Any]]:
        """This process's batches of ``epoch``, after the first ``skip`` (already trained on)."""

    @abstractmethod
    def probe_batch(self, size: int) -> dict[str, Any]:
        """A fixed collated batch of up to ``size`` pairs (the drift probe's)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"{type(self).__name__} keeps no state, got {sorted(state)}")

    def skipped_samples(self) -> list[dict[str, str]]:
        """Bad samples this process skipped while reading (``source``, ``error``); up-front checks
        report theirs in ``TrainingData.report`` instead."""
        return []
