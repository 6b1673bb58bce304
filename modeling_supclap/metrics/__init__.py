"""Evaluation metrics of SupCLAP, shipped as local ``evaluate`` modules.

The metric code lives only in the module files ``metrics/<name>/<name>.py`` (self-contained, because
``evaluate.load`` copies them into the Hugging Face modules cache and imports them from there).  This package
only locates, loads and calls them, plus two presentation helpers that need no metric math:

* :func:`load_metric` -- ``evaluate.load`` of the module folder inside this package (local path: no network,
  no ``HF_EVALUATE_OFFLINE`` needed; in-memory by default so concurrent runs never share a cache file).
* :func:`compute_retrieval_metrics`, :func:`compute_zero_shot_metrics` -- one-call wrappers going through the
  ``evaluate`` modules.
* :func:`retrieval_chance_levels` -- exact expected metric values under a uniformly random ranking.
* :func:`format_retrieval_table` -- small text (markdown) table of T2A / A2T results.

``import modeling_supclap.metrics`` does not import ``evaluate`` or ``datasets``; the first load does.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import evaluate

__all__ = [
    "AVAILABLE_METRICS",
    "compute_retrieval_metrics",
    "compute_zero_shot_metrics",
    "format_retrieval_table",
    "load_metric",
    "metric_path",
    "retrieval_chance_levels",
]

METRICS_DIR = Path(__file__).resolve().parent
AVAILABLE_METRICS: tuple[str, ...] = ("retrieval", "zero_shot")


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

    Returns:
        ``t2a_R@{k}``, ``a2t_R@{k}``, ``t2a_mAP@{map_k}``, ``a2t_mAP@{map_k}`` (percent), ``mAP_definition``,
        ``num_captions``, ``num_audio``.  Protocol and tie rule: see ``metrics/retrieval/retrieval.py``.
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


def _a2t_miss_probability(num_text: int, num_pos: int, k: int) -> float:
    """``C(Nt - c, k) / C(Nt, k)``: probability that none of ``c`` relevant items is in a random top-k."""
    if k >= num_text - num_pos + 1:
        return 0.0
    # prod_{i<k} (Nt - c - i) / (Nt - i), exact in rationals; floats suffice (k small, factors in (0, 1]).
    p = 1.0
    for i in range(k):
        p *= (num_text - num_pos - i) / (num_text - i)
    return p


def retrieval_chance_levels(
    num_audio: int,
    captions_per_clip: int | Sequence[int],
    ks: Sequence[int] = (1, 5, 10),
    map_k: int = 10,
) -> dict[str, float]:
    """Expected value of every retrieval metric under a uniformly random ranking (percent, exact).

    Args:
        num_audio: number of clips ``Na``.
        captions_per_clip: captions per clip ``c`` (int), or one count per clip (len ``Na``).
        ks, map_k: as for :func:`compute_retrieval_metrics`.

    Returns the same keys as the metric (``t2a_R@k``, ``a2t_R@k``, ``t2a_mAP@{map_k}``, ``a2t_mAP@{map_k}``):

    * T2A R@k = min(k, Na) / Na (the clip's rank is uniform on 1..Na).
    * A2T R@k = mean over clips of 1 - C(Nt - c_a, k) / C(Nt, k) (no relevant caption in a random top-k).
    * T2A mAP@K = H(min(K, Na)) / Na and A2T mAP@K = H(min(K, Nt)) / Nt, with H the harmonic number: each
      relevant item's own rank is marginally uniform (A2T counts the other relevant captions above it, as the
      metric does), and the mean over pairs is linear, so this is exact for any caption counts.
    """
    if isinstance(captions_per_clip, int):
        counts = [captions_per_clip] * num_audio
    else:
        counts = [int(c) for c in captions_per_clip]
        if len(counts) != num_audio:
            raise ValueError(f"captions_per_clip has {len(counts)} entries for {num_audio} clips")
    if num_audio < 1 or min(counts) < 1:
        raise ValueError("need at least one clip and one caption per clip")
    num_text = sum(counts)
    out: dict[str, float] = {}
    for k in ks:
        out[f"t2a_R@{k}"] = 100.0 * min(k, num_audio) / num_audio
    for k in ks:
        # group clips by caption count: the miss probability depends only on c
        miss = sum(counts.count(c) * _a2t_miss_probability(num_text, c, k) for c in set(counts))
        out[f"a2t_R@{k}"] = 100.0 * (1.0 - miss / num_audio)

    def harmonic(n: int) -> float:
        return math.fsum(1.0 / r for r in range(1, n + 1))

    out[f"t2a_mAP@{map_k}"] = 100.0 * harmonic(min(map_k, num_audio)) / num_audio
    out[f"a2t_mAP@{map_k}"] = 100.0 * harmonic(min(map_k, num_text)) / num_text
    return out


def _fmt(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    return f"{value:.2f}" if value == 0 or abs(value) >= 1 else f"{value:.3g}"


def format_retrieval_table(metrics: Mapping[str, Any], chance: Mapping[str, Any] | None = None) -> str:
    """Small markdown text table of retrieval results, rows T2A / A2T (+ chance rows if ``chance`` given).

    Columns are ``R@k`` for every k found in ``metrics`` (keys ``t2a_R@k`` / ``a2t_R@k``, sorted) then
    ``mAP@K`` for every mAP key found; values in percent as produced by the metric, ``-`` when missing.
    """
    ks = sorted({int(m.group(2)) for key in metrics if (m := re.fullmatch(r"(t2a|a2t)_R@(\d+)", key))})
    maps = sorted({int(m.group(2)) for key in metrics if (m := re.fullmatch(r"(t2a|a2t)_mAP@(\d+)", key))})
    columns = [f"R@{k}" for k in ks] + [f"mAP@{k}" for k in maps]
    rows = [("T2A", "t2a", metrics), ("A2T", "a2t", metrics)]
    if chance is not None:
        rows += [("T2A (chance)", "t2a", chance), ("A2T (chance)", "a2t", chance)]
    table = [["Direction", *columns]]
    table += [[label] + [_fmt(src.get(f"{prefix}_{col}")) for col in columns] for label, prefix, src in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]

    def line(cells: list[str]) -> str:
        padded = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return "| " + " | ".join(padded) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(table[0]), sep, *(line(r) for r in table[1:])])
