"""Captions: their languages, how a cell of any format holds them, which columns they are in, and which
one a training batch uses.

A cell holds a caption, a list, a ``{language: caption}`` mapping or a list of those
(:func:`parse_caption_cell`); a column ``caption_fr`` holds French (:func:`caption_column_language`);
without ``--caption_columns`` the usual names are looked for (:func:`detect_caption_columns`); training
draws one caption per clip, first a language by weight (:func:`choose_caption`).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

__all__ = [
    "CAPTION_COLUMN_NAMES",
    "CaptionLanguages",
    "caption_column_language",
    "choose_caption",
    "detect_caption_columns",
    "normalize_language",
    "parse_caption_cell",
    "parse_language_weights",
]


# ISO 639-1 codes: a column ``caption_<code>`` (or ``captions_<code>``, with an optional region such as
# ``caption_zh-CN`` / ``caption_pt_br``) holds that language's captions. "id" (Indonesian) is left out:
# ``caption_id`` is a key column far more often. ``--caption_columns`` may name any 2-3 letter code.
_ISO_639_1 = frozenset(
    "aa ab ae af ak am an ar as av ay az ba be bg bh bi bm bn bo br bs ca ce ch co cr cs cu cv cy da de dv "
    "dz ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht hu hy hz ia ie ig ii "
    "ik io is it iu ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw ky la lb lg li ln lo lt lu lv mg mh mi "
    "mk ml mn mr ms mt my na nb nd ne ng nl nn no nr nv ny oc oj om or os pa pi pl ps pt qu rm rn ro ru rw "
    "sa sc sd se sg si sk sl sm sn so sq sr ss st su sv sw ta te tg th ti tk tl tn to tr ts tt tw ty ug uk "
    "ur uz ve vi vo wa wo xh yi yo za zh zu".split()
)
_LANGUAGE_COLUMN = re.compile(r"^captions?_([a-z]{2,3})(?:[-_]([A-Za-z]{2}|[A-Za-z]{4}))?$")
_LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{2,8})*$")


def normalize_language(code: Any, where: str = "language") -> str:
    """``"zh_CN"`` -> ``"zh-cn"``: lower case, ``-`` between subtags; ``ValueError`` if not a code."""
    text = str(code).strip().replace("_", "-").lower() if isinstance(code, str) else ""
    if not _LANGUAGE_CODE.match(text):
        raise ValueError(f"{where}: {code!r} is not a language code (such as en, fr, zh-cn)")
    return text


def caption_column_language(column: str, explicit: bool = False) -> str | None:
    """The language a caption column is named for (``caption_fr`` -> ``fr``), or None.

    Detection (``explicit=False``) only takes ISO 639-1 codes; a column the user named (``explicit``)
    may carry any 2-3 letter code (``caption_yue``).
    """
    match = _LANGUAGE_COLUMN.match(column)
    if match is None or (not explicit and (match[1] not in _ISO_639_1 or match[1] == "id")):
        return None
    return match[1] + (f"-{match[2].lower()}" if match[2] else "")


@dataclass(frozen=True)
class CaptionLanguages:
    """Which caption languages a corpus is read in (``--caption_languages``, ``--default_caption_language``).

    ``selected``: keep only captions in these languages (None: every language present). ``default``: the
    language of captions whose column or cell does not say (a plain ``caption`` column).
    """

    selected: tuple[str, ...] | None = None
    default: str = "en"

    @classmethod
    def make(cls, selected: Sequence[str] | str | None = None, default: str = "en") -> CaptionLanguages:
        if isinstance(selected, str):
            selected = (selected,)
        if selected is not None:
            selected = tuple(dict.fromkeys(normalize_language(c, "--caption_languages") for c in selected))
            if not selected:
                raise ValueError("--caption_languages must name at least one language")
        return cls(selected, normalize_language(default, "--default_caption_language"))


def _cell_json(text: str) -> Any:
    """A JSON list or object written into a CSV cell, else None."""
    if (text.startswith("[") and text.endswith("]")) or (text.startswith("{") and text.endswith("}")):
        try:
            return json.loads(text)
        except ValueError:
            return None
    return None


def parse_caption_cell(
    value: Any,
    column: str,
    where: str,
    from_text_file: bool,
    language: str = "en",
    language_column: bool = False,
) -> tuple[list[tuple[str, str]], set[str]]:
    """``(language, caption)`` pairs of one cell, and the languages it marks missing.

    A cell holds a caption, a list of captions, a ``{language: caption or list}`` mapping, or a list of
    such mappings (CSV: the list or mapping as JSON). ``language``: that of plain captions (the
    column's). Missing (a counted skip for that language): a null under a language key or a null cell of
    a language column (``language_column``; CSV has no null, so ``_iter_csv`` reads an empty cell of a
    language column as null). Empty strings are errors naming the row, the column and the language.
    """
    if value is None:
        if language_column:
            return [], {language}
        raise ValueError(f"{where}: caption column '{column}' is empty (null)")
    if isinstance(value, str):
        text = value.strip()
        if from_text_file and (parsed := _cell_json(text)) is not None:
            return parse_caption_cell(parsed, column, where, False, language, language_column)
        if not text:
            raise ValueError(f"{where}: empty caption in column '{column}'")
        return [(language, text)], set()
    if isinstance(value, Mapping):
        pairs: list[tuple[str, str]] = []
        missing: set[str] = set()
        if not value:
            raise ValueError(f"{where}: caption column '{column}' holds an empty mapping")
        for key, item in value.items():
            lang = normalize_language(key, f"{where}: caption column '{column}'")
            if item is None:
                missing.add(lang)
                continue
            items = [item] if isinstance(item, str) else item
            if not isinstance(items, (list, tuple)):
                raise ValueError(
                    f"{where}: caption column '{column}', language '{lang}' holds "
                    f"{type(item).__name__}, expected str or list of str"
                )
            for j, text in enumerate(items):
                if not isinstance(text, str):
                    raise ValueError(
                        f"{where}: caption {j} of language '{lang}' in column '{column}' is "
                        f"{type(text).__name__}, not a string"
                    )
                if not text.strip():
                    raise ValueError(f"{where}: empty caption in column '{column}', language '{lang}'")
                pairs.append((lang, text.strip()))
        return pairs, missing
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"{where}: caption column '{column}' holds an empty list")
        pairs, missing = [], set()
        for j, item in enumerate(value):
            if isinstance(item, Mapping):
                more, gone = parse_caption_cell(item, column, where, False, language)
                pairs += more
                missing |= gone
                continue
            if not isinstance(item, str):
                raise ValueError(
                    f"{where}: caption {j} in column '{column}' is {type(item).__name__}, not a string"
                )
            if not item.strip():
                raise ValueError(f"{where}: empty caption (item {j}) in column '{column}'")
            pairs.append((language, item.strip()))
        return pairs, missing
    raise ValueError(
        f"{where}: caption column '{column}' holds {type(value).__name__}, expected str, list of str or "
        "a {language: caption} mapping"
    )


# Looked for when --caption_columns is not given: the usual names, Clotho's caption_1..caption_5, and
# one column per language (caption_fr, caption_de, ...).
CAPTION_COLUMN_NAMES = ("captions", "caption")
_NUMBERED_CAPTION = re.compile(r"^caption_?(\d+)$")


def detect_caption_columns(columns: Iterable[str], where: str) -> tuple[str, ...]:
    """The caption column(s) among ``columns``: ``captions``/``caption``, every ``caption_<n>`` (in number
    order) and every ``caption_<language>`` (in column order), else ``text``; a ``ValueError`` naming the
    columns when there is none."""
    columns = list(columns)
    found = [c for c in CAPTION_COLUMN_NAMES if c in columns]
    found += sorted(
        (c for c in columns if _NUMBERED_CAPTION.match(c)), key=lambda c: int(_NUMBERED_CAPTION.match(c)[1])
    )
    found += [c for c in columns if caption_column_language(c) is not None]
    if not found and "text" in columns:
        found = ["text"]
    if not found:
        raise ValueError(
            f"{where}: no caption column found (looked for captions, caption, caption_1.., "
            f"caption_<language>, text); columns are {columns}. Name it with --caption_columns"
        )
    logger.info("%s: caption column(s) %s (--caption_columns to choose others)", where, ", ".join(found))
    return tuple(found)


def _weight_entry(entry: str) -> tuple[str, str]:
    language, sep, weight = str(entry).partition("=")
    if not sep:
        raise ValueError(f"--caption_language_weights: {entry!r} is not LANGUAGE=WEIGHT (e.g. fr=0.5)")
    return language, weight


def parse_language_weights(spec: Sequence[str] | Mapping[str, float] | None) -> dict[str, float] | None:
    """``["en=2", "fr=1"]`` (``--caption_language_weights``) as ``{"en": 2.0, "fr": 1.0}``."""
    if spec is None:
        return None
    items = spec.items() if isinstance(spec, Mapping) else [_weight_entry(entry) for entry in spec]
    weights: dict[str, float] = {}
    for language, weight in items:
        try:
            value = float(weight)
        except ValueError as err:
            raise ValueError(
                f"--caption_language_weights: weight {weight!r} of {language!r} is not a number"
            ) from err
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"--caption_language_weights: weight of {language!r} must be >= 0, got {value}")
        weights[normalize_language(language, "--caption_language_weights")] = value
    if weights and not any(weights.values()):
        raise ValueError("--caption_language_weights: every weight is 0")
    return weights


def choose_caption(
    captions: Sequence[str],
    languages: Sequence[str] | None,
    generator: torch.Generator,
    language_weights: Mapping[str, float] | None = None,
) -> str:
    """One caption: a language among those present (probability ∝ its weight, 1 for unlisted languages),
    then one of its captions, uniformly. One language: a caption uniformly (the draw of a monolingual
    corpus does not change with languages)."""
    distinct = list(dict.fromkeys(languages)) if languages is not None else []
    if len(distinct) > 1:
        weights = torch.tensor(
            [float((language_weights or {}).get(lang, 1.0)) for lang in distinct], dtype=torch.float64
        )
        if weights.sum() <= 0:  # every language present has weight 0: fall back to all of them
            weights = torch.ones(len(distinct), dtype=torch.float64)
        language = distinct[int(torch.multinomial(weights, 1, generator=generator))]
        captions = [c for c, lang in zip(captions, languages) if lang == language]
    if len(captions) == 1:
        return captions[0]
    return captions[int(torch.randint(len(captions), (1,), generator=generator))]
