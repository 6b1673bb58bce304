"""Glue for plain ``transformers.Trainer`` fine-tuning (no Trainer subclass needed).

* The model computes its own loss (``SupClapModel.forward``; cross-process negatives included), so
  the Trainer only needs our collator, which also sets ``return_loss=True`` for evaluation.
* ``SupClapConfig.keys_to_ignore_at_inference`` leaves ``(text_embeds, audio_embeds)`` as the
  predictions, which :func:`compute_retrieval_metrics_for_trainer` scores with the same
  ``retrieval`` evaluate module as ``eval_supclap.py``.

Example (docs/INTEGRATIONS.md has the full runnable version)::

    trainer = Trainer(
        model=SupClapModel.from_pretrained(folder),
        args=TrainingArguments("out", remove_unused_columns=False, eval_strategy="epoch"),
        train_dataset=train_rows, eval_dataset=eval_rows,
        data_collator=SupClapCollator(processor, caption_choice="first"),
        compute_metrics=compute_retrieval_metrics_for_trainer,
    )
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .metrics import compute_retrieval_metrics


def compute_retrieval_metrics_for_trainer(eval_prediction: Any) -> dict[str, float]:
    """``compute_metrics`` for the Trainer: R@1/5/10 and mAP@10 both ways, one caption per clip.

    Each evaluation row is one (clip, caption) pair, so caption i describes clip i.
    """
    predictions = eval_prediction.predictions
    if not isinstance(predictions, (tuple, list)) or len(predictions) != 2:
        raise ValueError(
            "expected the predictions to be (text_embeds, audio_embeds); the model's config must list every "
            "other output in keys_to_ignore_at_inference (SupClapConfig does)"
        )
    text_embeds, audio_embeds = (np.asarray(p, dtype=np.float32) for p in predictions)
    metrics = compute_retrieval_metrics(text_embeds, audio_embeds, np.arange(len(audio_embeds)))
    return {key: float(value) for key, value in metrics.items() if isinstance(value, float)}
