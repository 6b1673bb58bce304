"""One optimizer step: forward and backward of its micro-batches, the non-finite guard, clip, step.

:class:`TrainStep` is public: the training loop calls it once per optimizer step, and tests and
benchmarks build one (``TrainStep.from_run(build_run(...))``) and drive it directly. The loss is the
model's own (``SupClapModel.forward``, which gathers negatives across processes): nothing here
computes one. To instrument or change what a micro-batch does, subclass and override
:meth:`TrainStep.forward` (``train(..., step_class=...)`` uses the subclass).

Host syncs: each micro-batch's loss is checked on the device; the flags of every micro-batch and of
the gradient norm are reduced over processes and read once per optimizer step, so the CPU keeps
queueing GPU work. Every process takes the same branch (skip or step).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ..lora import unwrap_supclap
from ..model.losses import LOSS_TERM_OUTPUTS

if TYPE_CHECKING:
    from accelerate import Accelerator

    from .arguments import TrainArguments
    from .run import TrainingRun

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """A step produced a non-finite loss or gradient (and --skip_nonfinite was not given)."""


@dataclass(frozen=True)
class StepPosition:
    """Where a step is, for messages: ``step`` (1-based), its epoch and its first micro-batch."""

    step: int
    epoch: int
    first_batch: int

    def batch(self, index: int) -> str:
        return f"step {self.step} (epoch {self.epoch}, batch {self.first_batch + index})"

    def __str__(self) -> str:
        return f"step {self.step} (epoch {self.epoch})"


@dataclass
class StepResult:
    """What one step did. ``terms``: mean of each loss term over the micro-batches (on the device,
    empty when skipped); ``grad_norm``: the norm before clipping (``None`` when skipped)."""

    skipped: bool
    terms: dict[str, torch.Tensor]
    grad_norm: torch.Tensor | None


class TrainStep:
    """Forward + backward of each micro-batch, then clip and step, or skip a non-finite step.

    ``micro_batches`` are collated batches (keyword arguments of ``SupClapModel.forward``); their
    gradients are averaged (each loss is divided by their number) and synchronised across processes
    only at the last one (``no_sync`` before). A non-finite loss or gradient stops the run naming the
    step and batch (:class:`NonFiniteLossError`), or with ``--skip_nonfinite`` skips the whole step
    and puts back the buffers its forwards changed (BatchNorm running statistics), so nothing
    non-finite reaches the weights. Under fp16 a non-finite gradient is the GradScaler's business (it
    skips the step and lowers its scale), not an error. After every step the logit scales are clamped.
    """

    def __init__(
        self,
        accelerator: Accelerator,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        train_args: TrainArguments,
    ) -> None:
        self.accelerator, self.model = accelerator, model
        self.optimizer, self.scheduler, self.train_args = optimizer, scheduler, train_args
        self.supclap = unwrap_supclap(model)

    @classmethod
    def from_run(cls, run: TrainingRun) -> TrainStep:
        return cls(run.accelerator, run.model, run.optimizer, run.scheduler, run.train_args)

    def forward(self, batch: dict[str, Any]) -> Any:
        """One micro-batch through the model: its output carries ``loss`` and the named terms."""
        return self.model(**batch)

    def __call__(self, micro_batches: Sequence[dict[str, Any]], position: StepPosition) -> StepResult:
        accelerator, count = self.accelerator, len(micro_batches)
        saved_buffers = _buffers(self.model) if self.train_args.skip_nonfinite else None
        losses: list[torch.Tensor] = []
        terms: dict[str, list[torch.Tensor]] = {}
        for index, batch in enumerate(micro_batches):
            # Gradients are all-reduced once, at the step's last micro-batch.
            with accelerator.no_sync(self.model) if index < count - 1 else nullcontext():
                outputs = self.forward(batch)
                accelerator.backward(outputs.loss / count if count > 1 else outputs.loss)
            losses.append(outputs.loss.detach().float().reshape(()))
            for name in LOSS_TERM_OUTPUTS:
                value = getattr(outputs, name, None)
                if value is not None:
                    terms.setdefault(name, []).append(value.detach().float().reshape(()))

        max_norm = self.train_args.max_grad_norm or float("inf")
        grad_norm = accelerator.clip_grad_norm_(self.model.parameters(), max_norm)
        # Under fp16 the GradScaler skips steps with inf/NaN gradients itself (and lowers its scale).
        checked_norm = grad_norm if accelerator.scaler is None else None
        skipped = self._is_bad(losses, checked_norm, position)
        if skipped:
            _restore_buffers(self.model, saved_buffers)
        else:
            self.optimizer.step()
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.supclap.clamp_logit_scales_()
        if skipped:
            return StepResult(True, {}, None)
        means = {name: torch.stack(values).mean() for name, values in terms.items()}
        if grad_norm is not None:
            means["grad_norm"] = torch.as_tensor(grad_norm).detach().float()
        return StepResult(False, means, grad_norm)

    def _is_bad(
        self, losses: list[torch.Tensor], grad_norm: torch.Tensor | None, position: StepPosition
    ) -> bool:
        """Whether the step must be skipped (raises NonFiniteLossError unless --skip_nonfinite)."""
        flags = [~torch.isfinite(loss) for loss in losses]
        if grad_norm is not None:
            flags.append(~torch.isfinite(torch.as_tensor(grad_norm, device=self.accelerator.device).float()))
        bad = self.accelerator.reduce(torch.stack(flags).float(), reduction="sum").gt(0).tolist()  # the sync
        for index, (loss, loss_bad) in enumerate(zip(losses, bad)):
            if loss_bad:
                where = position.batch(index)
                self._stop_or_skip(f"loss at {where}: {float(loss)}", f"{where}: non-finite loss")
                return True
        if grad_norm is not None and bad[-1]:
            self._stop_or_skip(f"gradient norm at {position}", f"{position}: non-finite gradient")
            return True
        return False

    def _stop_or_skip(self, error: str, warning: str) -> None:
        if not self.train_args.skip_nonfinite:
            raise NonFiniteLossError(
                f"non-finite {error}. Lower the learning rate, check the inputs of this batch, or pass "
                "--skip_nonfinite to skip such steps."
            )
        logger.warning("skipping %s", warning)


def _buffers(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: buffer.detach().clone() for name, buffer in model.named_buffers()}


@torch.no_grad()
def _restore_buffers(model: torch.nn.Module, saved: dict[str, torch.Tensor] | None) -> None:
    """Put back the buffers of the start of a skipped step (BatchNorm running stats and counts)."""
    for name, buffer in model.named_buffers():
        if saved is not None and name in saved:
            buffer.copy_(saved[name])
