"""The training loop behind ``train_supclap.py``, in four phases (read :func:`train` top to bottom).

Where things happen: ``run.py`` builds what a run needs, ``data/sources.py`` says what a batch is
and in which order batches come, ``step.py`` takes one optimizer step (the loss is the model's own:
``SupClapModel.forward``, which gathers negatives across processes), ``validation.py`` and
``finish.py`` evaluate and save, ``checkpointing.py`` makes the run resumable. This file only
sequences them and decides when to log, probe, validate and checkpoint.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from . import checkpointing
from .arguments import DataArguments, ModelArguments, TrainArguments
from .finish import finish
from .resilience import Heartbeat, StopSignals, dead_rank_error, is_collective_failure
from .run import TrainingRun, build_run
from .state import TrainState
from .step import StepPosition, TrainStep
from .validation import validate

logger = logging.getLogger(__name__)


def train(
    model_args: ModelArguments,
    data_args: DataArguments,
    train_args: TrainArguments,
    step_class: type[TrainStep] = TrainStep,
) -> dict[str, Any]:
    """Train, validate, checkpoint, test and save. Returns the final metrics (also in metrics.json).

    ``step_class``: a :class:`TrainStep` subclass to take the optimizer steps (e.g. instrumented).
    """
    # 1. Everything the run needs: accelerator, checked data, model, processor, optimizer, scheduler.
    run = build_run(model_args, data_args, train_args)
    accelerator, source = run.accelerator, run.data.train

    # 2. A fresh state, or the checkpoint's (which also restores weights, optimizer, RNGs, data position).
    state = resume_or_start(run)
    step = step_class.from_run(run)
    probe = _drift_probe(run)
    _open_outputs(run)

    # 3. Optimizer steps until --max_steps or --max_train_minutes (or a stop signal: checkpoint, then
    #    Preempted); log, probe, validate, checkpoint. A peer that stops answering ends it (DeadRankError).
    progress = tqdm(
        total=train_args.max_steps,
        initial=state.step,
        disable=not accelerator.is_local_main_process,
        desc="training",
    )
    clock, log = _Clock(state), _LossLog()
    heartbeat = Heartbeat(run.output_dir, accelerator.process_index, accelerator.num_processes)
    done = state.step >= train_args.max_steps
    with StopSignals() as signals:
        try:
            while not done:
                batches = source.batches(state.epoch, skip=state.batch_in_epoch)
                for micro_batches in _groups(batches, train_args.gradient_accumulation_steps):
                    position = StepPosition(state.step + 1, state.epoch, state.batch_in_epoch)
                    result = step(micro_batches, position)
                    state.step += 1
                    state.batch_in_epoch += len(micro_batches)
                    state.nonfinite_skipped += int(result.skipped)
                    clock.tick(state)
                    heartbeat.beat(state.step)
                    log.add(result.terms)
                    progress.update(1)
                    if done := _after_step(run, state, log, probe, progress, signals):
                        break
                else:
                    state.epoch, state.batch_in_epoch = state.epoch + 1, 0
        except Exception as error:
            if accelerator.num_processes > 1 and is_collective_failure(error):
                raise dead_rank_error(error, heartbeat, train_args.ddp_timeout) from error
            raise
    progress.close()

    # 4. Test the best model; save it with processor, model card, metrics and plots; push if asked.
    state.num_processes, state.device = accelerator.num_processes, str(accelerator.device)
    if probe is not None:
        radii = probe.radii(run.supclap)
        state.radius_values = radii.tolist() if radii is not None else None
    return finish(run, state)


def resume_or_start(run: TrainingRun) -> TrainState:
    """A fresh state, or the one of ``--resume_from_checkpoint`` (restoring weights, optimizer, RNGs)."""
    resume = run.train_args.resume_from_checkpoint
    if not resume:
        return TrainState()
    path = checkpointing.latest_checkpoint(run.output_dir) if resume == "latest" else Path(resume)
    if path is None:
        logger.info(
            "--resume_from_checkpoint latest: no complete checkpoint in %s, starting fresh", run.output_dir
        )
        return TrainState()
    state, data_state = checkpointing.load_checkpoint(
        path, run.accelerator, run.model, run.optimizer, run.scheduler
    )
    run.data.train.load_state_dict(data_state)
    logger.info("resumed from %s at step %d", path, state.step)
    return state


def _after_step(
    run: TrainingRun, state: TrainState, log: _LossLog, probe: Any, progress: tqdm, signals: StopSignals
) -> bool:
    """Log, probe, validate and checkpoint after step ``state.step``; True when the run is over.

    Raises :class:`Preempted` after saving a checkpoint when any process got a stop signal.
    """
    accelerator, train_args, step = run.accelerator, run.train_args, state.step
    if step % train_args.logging_steps == 0 or step == train_args.max_steps:
        record = log.flush(accelerator)
        record.update(
            step=step,
            lr=run.scheduler.get_last_lr()[0],
            logit_scale=float(run.supclap.logit_scales()[0].detach()),
        )
        state.history.append(record)
        accelerator.log({f"train/{k}": v for k, v in record.items() if k != "step"}, step=step)
        progress.set_postfix(loss=f"{record.get('loss', float('nan')):.3f}")
    if probe is not None and step % train_args.drift_probe_steps == 0:
        drift = probe.measure(run.supclap)
        state.drift.append({"step": step, **drift})
        accelerator.log({f"drift/{k}": v for k, v in drift.items()}, step=step)

    done = step >= train_args.max_steps
    out_of_time = (
        train_args.max_train_minutes is not None and state.train_seconds > 60 * train_args.max_train_minutes
    )
    # Every process must agree on stopping: one reduce of both reasons (clocks and signals differ by process).
    out_of_time, signalled = _any_process(accelerator, out_of_time, signals.received is not None)
    done = done or out_of_time
    # Validation comes before a stop's checkpoint: it uses the RNGs and picks best/, and the resumed run
    # must continue from the state the uninterrupted run had after this step.
    if run.data.validation and (done or (train_args.eval_steps and step % train_args.eval_steps == 0)):
        validate(run, state)
    if signalled:
        path = _save(run, state)
        raise signals.stop_error(
            f"{signals.received or 'a stop signal (on another process)'} received: saved {path} after step "
            f"{step}. Resume with --resume_from_checkpoint latest (same arguments)."
        )
    if train_args.save_steps and (done or step % train_args.save_steps == 0):
        _save(run, state)
    return done


def _save(run: TrainingRun, state: TrainState) -> Path:
    return checkpointing.save_checkpoint(
        run.accelerator,
        run.model,
        run.optimizer,
        run.scheduler,
        state,
        run.output_dir,
        run.train_args.save_total_limit,
        data_state=run.data.train.state_dict(),
    )


def _drift_probe(run: TrainingRun) -> Any:
    """The fixed batch drift is measured on (``--drift_probe_steps``), or None."""
    if run.train_args.drift_probe_steps <= 0:
        return None
    from .diagnostics import DriftProbe

    return DriftProbe(run.data.train.probe_batch(64))


def _open_outputs(run: TrainingRun) -> None:
    if run.accelerator.is_main_process:
        run.output_dir.mkdir(parents=True, exist_ok=True)
    if any(tracker != "none" for tracker in run.train_args.report_to):
        run.accelerator.init_trackers(
            "runs", config=_flat_config(run.model_args, run.data_args, run.train_args)
        )


def _groups(batches: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    """The micro-batches of each optimizer step (the last group of an epoch may be shorter)."""
    group: list[dict[str, Any]] = []
    for batch in batches:
        group.append(batch)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


class _Clock:
    """Wall-clock and CPU seconds of the training steps, continued across resumes."""

    def __init__(self, state: TrainState) -> None:
        self.wall = time.monotonic() - state.train_seconds
        self.cpu = time.process_time() - state.train_cpu_seconds

    def tick(self, state: TrainState) -> None:
        state.train_seconds = time.monotonic() - self.wall
        state.train_cpu_seconds = time.process_time() - self.cpu


class _LossLog:
    """Loss terms of the steps since the last log, kept on the device (read once per logging step)."""

    def __init__(self) -> None:
        self.terms: dict[str, list[torch.Tensor]] = {}

    def add(self, terms: dict[str, torch.Tensor]) -> None:
        for name, value in terms.items():
            self.terms.setdefault(name, []).append(value)

    def flush(self, accelerator: Any) -> dict[str, float]:
        """Mean of each term since the last log, averaged over processes: one reduce, one host sync."""
        terms, self.terms = self.terms, {}
        names = [name for name, values in terms.items() if values]
        if not names:
            return {}
        means = torch.stack([torch.stack(terms[name]).to(accelerator.device).mean() for name in names])
        return dict(zip(names, accelerator.reduce(means, reduction="mean").tolist()))


def _any_process(accelerator: Any, *flags: bool) -> tuple[bool, ...]:
    """Each flag, True on every process if it is True on any (so all processes take the same branch).

    One process: no collective and no device sync; several: one reduce for all the flags.
    """
    if accelerator.num_processes == 1:
        return flags
    values = torch.tensor([1.0 if flag else 0.0 for flag in flags], device=accelerator.device)
    return tuple(bool(v > 0) for v in accelerator.reduce(values, reduction="sum").tolist())


def _flat_config(*argument_sets: Any) -> dict[str, Any]:
    from dataclasses import asdict

    flat: dict[str, Any] = {}
    for arguments in argument_sets:
        for key, value in asdict(arguments).items():
            flat[key] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return flat
