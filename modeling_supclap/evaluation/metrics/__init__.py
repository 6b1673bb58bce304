"""Evaluation metrics of SupCLAP, shipped as local ``evaluate`` modules.

The metric code lives only in the module files ``metrics/<name>/<name>.py`` (self-contained, because
``evaluate.load`` copies them into the Hugging Face modules cache and imports them from there).  This package
only locates, loads and calls them, plus two presentation helpers that need no metric math:

* :func:`load_metric` -- ``evaluate.load`` of the module folder inside this package (local path: no network,
  no ``HF_EVALUATE_OFFLINE`` needed; in-memory by default so concurrent runs never share a cache file).
* :func:`compute_retrieval_metrics`, :func:`compute_zero_shot_metrics`,
  :func:`compute_crosslingual_consistency` -- one-call wrappers going through the ``evaluate`` modules.
* :func:`retrieval_chance_levels` -- exact expected metric values under a uniformly random ranking
  (computed by the ``retrieval`` module's ``chance_levels``).
* :data:`RETRIEVAL_METRICS` -- the retrieval keys every report shows (cards, benchmarks), with names.

Printing results for people is ``modeling_supclap.evaluation.report``'s job.

``import modeling_supclap.evaluation.metrics`` does not import ``evaluate`` or ``datasets``; the first load
does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import evaluate

__all__ = [
    "AVAILABLE_METRICS",
    "RETRIEVAL_METRICS",
    "compute_crosslingual_consistency",
    "compute_retrieval_metrics",
    "compute_zero_shot_metrics",
    "load_metric",
    "metric_function",
    "metric_path",
    "retrieval_chance_levels",
]

METRICS_DIR = Path(__file__).resolve().parent
AVAILABLE_METRICS: tuple[str, ...] = ("retrieval", "zero_shot", "crosslingual_consistency")
# The retrieval results reported everywhere (model cards, benchmarks): key -> human name.
RETRIEVAL_METRICS: dict[str, str] = {
    "t2a_R@1": "Text-to-audio R@1",
    "t2a_R@5": "Text-to-audio R@5",
    "t2a_R@10": "Text-to-audio R@10",
    "a2t_R@1": "Audio-to-text R@1",
    "a2t_R@5": "Audio-to-text R@5",
    "a2t_R@10": "Audio-to-text R@10",
    "t2a_mAP@10": "Text-to-audio mAP@10",
    "a2t_mAP@10": "Audio-to-text mAP@10",
}


def metric_path(name: str) -> str:
    """Absolute path of the folder of the ``evaluate`` module ``name`` (e.g. ``"retrieval"``)."""
    if name not in AVAILABLE_METRICS:
        raise ValueError(f"unknown metric {name!r}; available: {', '.join(AVAILABLE_METRICS)}")
    return str(METRICS_DIR / name)


def load_metric(name: str, **kwargs: Any) -> evaluate.EvaluationModule:
    """``evaluate.load`` the metric module ``name`` shipped in this package, by local path.

    Loading a local path never touches the network (``evaluate`` only checks that the module's imports are
    installed), so nothing global is set.  ``keep_in_memory`` defaults to True: the few per-row inputs are
    kept in RAM instead of an Arrow file under ``~/.cache/huggingface/evaluate`` shared (and locked) by every
    process using the same ``experiment_id``.  Other ``kwargs`` go to ``evaluate.load``.
    """
    import evaluate

    kwargs.setdefault("keep_in_memory", True)
    return evaluate.load(metric_path(name), **kwargs)


def compute_retrieval_metrics(
    text_embeds: Any,
    audio_embeds: Any,
    caption_audio_ids: Any,
    ks: Sequence[int] = (1, 5, 10),
    chunk_size: int = 1024,
    *,
    map_k: int = 10,
    device: Any = None,
    with_chance: bool = False,
) -> dict[str, Any]:
    """Audio-text retrieval metrics through the ``retrieval`` evaluate module.

    Args:
        text_embeds: (Nt, d) caption embeddings (numpy or torch), one row per caption, L2-normalised.
        audio_embeds: (Na, d) clip embeddings, L2-normalised.
        caption_audio_ids: (Nt,) ints, the row of ``audio_embeds`` each caption describes.
        ks: R@k cut-offs.
        chunk_size: queries scored at once (memory O(chunk_size x N)).
        map_k: cut-off of mAP@k.
        device: torch device to compute on (default: that of ``text_embeds``, CPU for numpy).
        with_chance: also return ``chance``, every metric's chance level (:func:`retrieval_chance_levels`).

    Returns:
        ``t2a_R@{k}``, ``a2t_R@{k}``, ``t2a_mAP@{map_k}``, ``a2t_mAP@{map_k}`` (percent), ``mAP_definition``,
        ``num_captions``, ``num_audio`` (and ``chance``).  Protocol and tie rule: see
        ``metrics/retrieval/retrieval.py``.
    """
    import numpy as np

    if hasattr(caption_audio_ids, "detach"):  # torch tensor
        caption_audio_ids = caption_audio_ids.detach().cpu().numpy()
    return load_metric("retrieval").compute(
        caption_audio_ids=np.asarray(caption_audio_ids),
        text_embeds=text_embeds,
        audio_embeds=audio_embeds,
        ks=tuple(ks),
        map_k=map_k,
        chunk_size=chunk_size,
        device=device,
        with_chance=with_chance,
    )


def compute_zero_shot_metrics(
    predictions: Any, references: Any, label_names: Sequence[str] | None = None
) -> dict[str, Any]:
    """Zero-shot classification metrics through the ``zero_shot`` evaluate module.

    Returns ``accuracy``, ``balanced_accuracy`` (percent) and ``per_class_accuracy``
    (``{label name or str(class id): percent}``, classes present in ``references`` only).
    """
    import numpy as np

    def _ints(x: Any) -> Any:
        return np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x)

    kwargs = {} if label_names is None else {"label_names": list(label_names)}
    metric = load_metric("zero_shot")
    return metric.compute(predictions=_ints(predictions), references=_ints(references), **kwargs)


def compute_crosslingual_consistency(text_embeds: dict[str, Any], audio_embeds: Any) -> dict[str, Any]:
    """Cross-lingual consistency through the ``crosslingual_consistency`` evaluate module.

    Args:
        text_embeds: language -> (N, d) embeddings of the same N captions (rows aligned), L2-normalised.
        audio_embeds: (M, d) clip embeddings, L2-normalised.

    Returns ``top1_agreement`` (percent) and ``rank_correlation`` (mean Spearman) over every language pair,
    and ``per_pair`` (definitions: ``metrics/crosslingual_consistency/crosslingual_consistency.py``).
    """
    num_captions = len(next(iter(text_embeds.values()))) if text_embeds else 0
    return load_metric("crosslingual_consistency").compute(
        caption_ids=list(range(num_captions)), text_embeds=text_embeds, audio_embeds=audio_embeds
    )


def retrieval_chance_levels(
    num_audio: int,
    captions_per_clip: int | Sequence[int],
    ks: Sequence[int] = (1, 5, 10),
    map_k: int = 10,
) -> dict[str, float]:
    """Exact expected value of every retrieval metric under a uniformly random ranking (percent).

    Computed by ``chance_levels`` in the ``retrieval`` module file (which documents the formulas):
    same keys as :func:`compute_retrieval_metrics`.
    """
    return metric_function("retrieval", "chance_levels")(num_audio, captions_per_clip, ks, map_k)


def metric_function(name: str, function: str) -> Any:
    """A module-level function of the ``evaluate`` module ``name`` (as loaded by ``evaluate.load``)."""
    import sys

    module = sys.modules[type(load_metric(name)).__module__]
    return getattr(module, function)
