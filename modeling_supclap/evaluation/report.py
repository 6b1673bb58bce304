"""Evaluation results printed for people: retrieval tables, per-language tables, suite summaries.

Computing happens elsewhere (``metrics/`` scores, ``encode.py`` encodes); this module only turns result
dicts into text, so the training run, ``eval_supclap.py`` and the model card print the same thing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "format_eval_suite",
    "format_language_table",
    "format_results",
    "format_retrieval_table",
]


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


def format_language_table(per_language: Mapping[str, Any], zero_shot: Mapping[str, Any] | None = None) -> str:
    """Markdown table of retrieval per caption language (rows: each language, then the mean; columns:
    R@1/5/10 and mAP@10 of both directions, plus zero-shot accuracy where ``zero_shot`` has it)."""
    keys = ["t2a_R@1", "t2a_R@5", "t2a_R@10", "t2a_mAP@10", "a2t_R@1", "a2t_R@5", "a2t_R@10", "a2t_mAP@10"]
    header = ["Language", *(k.replace("t2a_", "T2A ").replace("a2t_", "A2T ") for k in keys)]
    with_zero_shot = bool(zero_shot)
    if with_zero_shot:
        header.append("zero-shot")
    table = [header]
    for language, metrics in per_language.items():
        row = [language, *(_fmt(metrics.get(k)) for k in keys)]
        if with_zero_shot:
            entry = (zero_shot or {}).get(language)
            row.append(_fmt(entry.get("accuracy")) if entry else "-")
        table.append(row)
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = [
        "| "
        + " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
        + " |"
        for r in table
    ]
    return "\n".join([lines[0], "|" + "|".join("-" * (w + 2) for w in widths) + "|", *lines[1:]])


def format_results(results: dict[str, Any]) -> str:
    """Printable summary: the retrieval table with chance levels, then zero-shot accuracy."""
    retrieval = results["retrieval"]
    lines = [
        f"clips: {results['num_clips']}  captions: {results['num_captions']}"
        + (f"  skipped bad clips: {results['num_skipped']}" if results.get("num_skipped") else ""),
        format_retrieval_table(retrieval, retrieval.get("chance")),
    ]
    if retrieval.get("mAP_definition"):
        lines.append(f"mAP@10: {retrieval['mAP_definition']}")
    zero_shot = results.get("zero_shot")
    if zero_shot:
        lines.append(
            f"zero-shot ({zero_shot['template']!r}): accuracy {zero_shot['accuracy']:.2f} %, balanced "
            f"{zero_shot['balanced_accuracy']:.2f} %  (chance {zero_shot['chance_accuracy']:.2f} %)"
        )
    if per_language := results.get("retrieval_per_language"):
        lines.append("Per caption language (each against the clips captioned in it; mean: unweighted):")
        lines.append(format_language_table(per_language, (zero_shot or {}).get("per_language")))
    if consistency := results.get("crosslingual_consistency"):
        lines.append(
            f"cross-lingual consistency over {consistency['num_aligned_captions']} aligned captions: top-1 "
            f"agreement {consistency['top1_agreement']:.2f} %, rank correlation "
            f"{consistency['rank_correlation']:.3f}"
        )
    return "\n".join(lines)


def format_eval_suite(results: dict[str, Any]) -> str:
    """The zero-shot table of a fold-wise evaluation suite (retrieval results print as any evaluation)."""
    zero_shot = results["zero_shot"]
    folds = zero_shot["per_fold_accuracy"]
    lines = [
        f"{results['eval_suite']}: {results['num_clips']} clips, {results['num_classes']} classes, "
        f"prompt {zero_shot['template']!r}",
        "| fold | " + " | ".join(folds) + " | mean |",
        "|---" * (len(folds) + 2) + "|",
        "| accuracy (%) | "
        + " | ".join(f"{v:.2f}" for v in folds.values())
        + f" | {zero_shot['mean_accuracy']:.2f} |",
        f"chance {zero_shot['chance_accuracy']:.2f} %",
    ]
    return "\n".join(lines)
