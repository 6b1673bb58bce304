"""Validation during training: mean R@1 on the validation split, and the best model kept in ``best/``."""

from __future__ import annotations

import logging
from typing import Any

from ..evaluation.scoring import evaluate_records, mean_recall_at_1
from .run import TrainingRun
from .state import TrainState

logger = logging.getLogger(__name__)


def validate(run: TrainingRun, state: TrainState) -> None:
    """Validation R@1 on the main process; saves ``best/`` when the mean R@1 improves (collective)."""
    accelerator, train_args = run.accelerator, run.train_args
    if accelerator.is_main_process:
        results = evaluate_records(
            run.supclap,
            run.processor,
            run.data.validation,
            batch_size=train_args.per_device_eval_batch_size,
            seed=train_args.seed,
            zero_shot=False,
            per_language=False,
            on_bad_sample=run.data_args.on_bad_sample,
            max_text_length=run.data_args.max_text_length,
            long_audio=run.data_args.long_audio_policy(),
        )
        score = mean_recall_at_1(results)
        retrieval = results["retrieval"]
        entry = {
            "step": state.step,
            "mean_R@1": score,
            "t2a_R@1": retrieval["t2a_R@1"],
            "a2t_R@1": retrieval["a2t_R@1"],
        }
        state.validation.append(entry)
        accelerator.log({f"validation/{k}": v for k, v in entry.items() if k != "step"}, step=state.step)
        if state.best_score is None or score > state.best_score:
            state.best_score, state.best_step = score, state.step
            run.supclap.save_pretrained(run.output_dir / "best", safe_serialization=True)
        logger.info(
            "validation at step %d: mean R@1 %.2f (best %.2f at step %s)",
            state.step,
            score,
            state.best_score,
            state.best_step,
        )
    accelerator.wait_for_everyone()
    # Every process needs the same best score in its state (it is saved in the checkpoint).
    shared = _broadcast_json(
        accelerator,
        {"best_score": state.best_score, "best_step": state.best_step, "validation": state.validation},
    )
    state.best_score, state.best_step, state.validation = (
        shared["best_score"],
        shared["best_step"],
        shared["validation"],
    )


def _broadcast_json(accelerator: Any, payload: dict[str, Any]) -> dict[str, Any]:
    if accelerator.num_processes == 1:
        return payload
    import torch.distributed as dist

    holder = [payload]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]
