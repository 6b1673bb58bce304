# Copyright 2025 The SupCLAP Authors. Licensed under the Apache License, Version 2.0.
"""Zero-shot classification metric: top-1 accuracy, balanced accuracy and per-class accuracy (percent).

This file is an ``evaluate`` module (copied to the Hugging Face modules cache by ``evaluate.load``), so it
must stay self-contained.  Load it with ``modeling_supclap.evaluation.metrics.load_metric("zero_shot")``.

* ``accuracy``: percentage of samples with ``prediction == reference``.
* ``per_class_accuracy``: ``{label_name: accuracy of the samples whose reference is that class}`` (percent,
  i.e. per-class recall), only for classes that occur in ``references`` (a class with no sample has no
  accuracy); names are ``label_names[c]`` if given, else ``str(c)``; ordered by class id.
* ``balanced_accuracy``: mean of ``per_class_accuracy`` over those classes (as sklearn's
  ``balanced_accuracy_score``, in percent).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """\
Zero-shot audio classification: top-1 accuracy, balanced (mean per-class) accuracy and per-class accuracy,
all in percent.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[int]`): predicted class ids.
    references (`list[int]`): true class ids.
    label_names (`Sequence[str]`, keyword, optional): name of each class id, used as keys of
        `per_class_accuracy` (default: the class id as a string).
Returns:
    accuracy (`float`), balanced_accuracy (`float`), per_class_accuracy (`dict[str, float]`), in percent.
Examples:
    >>> metric = evaluate.load("modeling_supclap/metrics/zero_shot")
    >>> metric.compute(predictions=[0, 1, 1], references=[0, 1, 0], label_names=["dog", "cat"])["accuracy"]
    66.66666666666667
"""

_CITATION = ""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ZeroShot(evaluate.Metric):
    """Zero-shot classification accuracy (see the module docstring)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
            format="numpy",
        )

    def _compute(
        self,
        predictions: np.ndarray,
        references: np.ndarray,
        label_names: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        predictions = np.asarray(predictions, dtype=np.int64)
        references = np.asarray(references, dtype=np.int64)
        if references.size == 0:
            raise ValueError("no samples")
        if label_names is not None:
            label_names = [str(name) for name in label_names]
            if len(set(label_names)) != len(label_names):
                raise ValueError("label_names must be unique (they are the keys of per_class_accuracy)")
            if references.min() < 0 or references.max() >= len(label_names):
                raise ValueError(f"references must lie in [0, {len(label_names)}) to match label_names")
        correct = predictions == references
        classes = np.unique(references)
        class_acc = [float(correct[references == c].mean() * 100) for c in classes]
        names = [label_names[c] if label_names is not None else str(c) for c in classes]
        return {
            "accuracy": float(correct.mean() * 100),
            "balanced_accuracy": float(np.mean(class_acc)),
            "per_class_accuracy": dict(zip(names, class_acc)),
        }
