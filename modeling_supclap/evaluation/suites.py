"""The standard evaluation suites of the field, by name: ``eval_supclap.py --eval_suite NAME``.

Each suite knows its layout (which columns hold the audio, captions, labels and folds; several rows
per clip for AudioCaps) and its protocol, so that a user passes only the data:

* ``esc50``: ESC-50 (2,000 clips, 50 classes, 5 folds): zero-shot accuracy per fold and their mean,
  prompt "This is a sound of {label}." (``dog``, ``chirping_birds`` -> "chirping birds").
* ``urbansound8k``: UrbanSound8K (8,732 clips, 10 classes, 10 folds), the same protocol.
* ``clotho``: Clotho evaluation split: retrieval with the five captions ``caption_1..caption_5``.
* ``audiocaps``: AudioCaps test split: retrieval, one row per (clip, caption), grouped per clip.

``--eval_data`` is a local folder in the layout the suite names (an audiofolder whose metadata has
those columns, or a ``save_to_disk`` folder) or, for users with the Hub, a dataset id such as the
``hub_id`` of each suite (not checked here: nothing reaches the Hub in this project's tests).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..data.readers import load_records
from ..data.records import AudioTextRecord
from .scoring import evaluate_records
from .zero_shot import DEFAULT_PROMPT_TEMPLATE


def _label_words(label: str) -> str:
    return label.replace("_", " ").strip()


@dataclass(frozen=True)
class EvalSuite:
    name: str
    task: str  # "zero_shot" (per fold) or "retrieval"
    hub_id: str
    split: str
    label_column: str | None = None
    fold_column: str | None = None
    caption_columns: tuple[str, ...] | None = None
    group_by_audio: bool = False  # several rows per clip (AudioCaps): one record with every caption
    template: str = DEFAULT_PROMPT_TEMPLATE
    label_text: Callable[[str], str] = _label_words

    def load(self, data: str, split: str | None = None) -> list[AudioTextRecord]:
        if self.task == "zero_shot":  # no captions: the class name stands in (retrieval is not reported)
            records = load_records(
                data,
                split=split or self.split,
                caption_columns=(self.label_column,),
                label_column=self.label_column,
                keep_columns=(self.fold_column,) if self.fold_column else (),
            )
            for record in records:
                record.label = self.label_text(str(record.label))
                record.captions = [record.label]
            return records
        records = load_records(data, split=split or self.split, caption_columns=self.caption_columns)
        return _group_by_audio(records) if self.group_by_audio else records


def _audio_key(record: AudioTextRecord) -> Any:
    audio = record.audio
    return audio.get("path") or id(audio) if isinstance(audio, dict) else audio


def _group_by_audio(records: Sequence[AudioTextRecord]) -> list[AudioTextRecord]:
    """One record per clip with the captions of all its rows, in the order the clips first appear."""
    grouped: dict[Any, AudioTextRecord] = {}
    for record in records:
        key = _audio_key(record)
        if key in grouped:
            grouped[key].captions.extend(record.captions)
        else:
            grouped[key] = AudioTextRecord(record.audio, list(record.captions), record.label, record.source)
    return list(grouped.values())


EVAL_SUITES: dict[str, EvalSuite] = {
    "esc50": EvalSuite("esc50", "zero_shot", "ashraq/esc50", "train", "category", "fold"),
    "urbansound8k": EvalSuite("urbansound8k", "zero_shot", "danavery/urbansound8K", "train", "class", "fold"),
    "clotho": EvalSuite(
        "clotho",
        "retrieval",
        "CLAPv2/Clotho",
        "test",
        caption_columns=tuple(f"caption_{k}" for k in range(1, 6)),
    ),
    "audiocaps": EvalSuite(
        "audiocaps", "retrieval", "d0rj/audiocaps", "test", caption_columns=("caption",), group_by_audio=True
    ),
}


def run_eval_suite(
    suite: EvalSuite,
    model: Any,
    processor: Any,
    records: Sequence[AudioTextRecord],
    template: str | None = None,
    **evaluate_kwargs: Any,
) -> dict[str, Any]:
    """The suite's protocol on ``records``: per-fold zero-shot accuracy and their mean, or retrieval."""
    template = template or suite.template
    if suite.task == "retrieval":
        results = evaluate_records(model, processor, records, zero_shot=False, **evaluate_kwargs)
        return {"eval_suite": suite.name, **results}
    classes = sorted({record.label for record in records})
    folds = sorted({record.extra.get(suite.fold_column) for record in records}, key=str)
    per_fold = {}
    for fold in folds:
        subset = [r for r in records if r.extra.get(suite.fold_column) == fold]
        result = evaluate_records(
            model, processor, subset, class_labels=classes, template=template, **evaluate_kwargs
        )
        per_fold[str(fold)] = result["zero_shot"]["accuracy"]
    return {
        "eval_suite": suite.name,
        "num_clips": len(records),
        "num_classes": len(classes),
        "zero_shot": {
            "per_fold_accuracy": per_fold,
            "mean_accuracy": statistics.fmean(per_fold.values()),
            "template": template,
            "chance_accuracy": 100.0 / len(classes),
        },
    }
