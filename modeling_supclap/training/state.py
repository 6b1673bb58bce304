"""The progress of a training run: what a checkpoint saves (``trainer_state.json``) and restores."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass(slots=True)
class TrainState:
    """Where a run is, and what it has measured so far. JSON-serialisable (:meth:`to_dict`)."""

    step: int = 0  # optimizer steps taken
    epoch: int = 0
    batch_in_epoch: int = 0  # micro-batches of the current epoch already trained on (resume skips them)
    best_score: float | None = None  # best validation mean R@1, and when
    best_step: int | None = None
    history: list[dict[str, float]] = field(default_factory=list)  # logged loss terms, one row per log
    validation: list[dict[str, float]] = field(default_factory=list)
    drift: list[dict[str, float]] = field(default_factory=list)  # drift probe measurements
    nonfinite_skipped: int = 0
    train_seconds: float = 0.0  # wall clock of the steps (over resumes)
    train_cpu_seconds: float = 0.0  # CPU time of the main process during the steps (over resumes)
    # Recorded at the end of the run:
    num_processes: int = 1
    device: str = ""
    radius_values: list[float] | None = None  # raw radii on the probe batch (histogram)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainState:
        """The state of ``values`` (a checkpoint's); keys this version does not know are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training-state keys {unknown}: written by another version?")
        return cls(**values)
