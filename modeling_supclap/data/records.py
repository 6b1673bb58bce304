"""What the data layer hands on: records, the column settings that read them, and bad-sample errors.

An :class:`AudioTextRecord` is one clip (a path, bytes or an array; not decoded yet) with its captions,
their languages and an optional label. A :class:`ColumnSpec` says how a table's columns become records
(the same for every format, train and evaluation alike); readers, streams and the command line pass one
object instead of five positional settings.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .captions import CaptionLanguages

__all__ = [
    "ON_BAD_SAMPLE_CHOICES",
    "AudioTextRecord",
    "BadSampleError",
    "BadSamplesError",
    "ColumnSpec",
    "MissingSplitError",
    "SPLIT_ALIASES",
    "check_on_bad_sample",
    "language_counts",
    "split_family",
]

# Split names datasets' audiofolder also recognises, by canonical split.
SPLIT_ALIASES = {
    "train": ("train", "training"),
    "validation": ("validation", "valid", "val", "dev"),
    "test": ("test", "testing", "eval", "evaluation"),
}


def split_family(split: str) -> tuple[str, ...]:
    """All folder/split names meaning ``split`` ("val" -> validation, valid, val, dev)."""
    for aliases in SPLIT_ALIASES.values():
        if split in aliases:
            return aliases
    return (split,)


@dataclass(frozen=True)
class ColumnSpec:
    """How a corpus's columns are read into records.

    ``audio_column``: the audio path or bytes (falls back to the usual names, ``rows.AUDIO_COLUMN_NAMES``);
    ``caption_columns``: one or several caption columns (``None``: detected by
    ``captions.detect_caption_columns``);
    ``label_column``: the class label for zero-shot (optional in the data); ``keep_columns``: other columns
    kept per record in ``record.extra`` (an evaluation suite's fold); ``caption_languages`` keeps only
    captions in those languages (``None``: all), ``default_caption_language`` is the language of captions
    whose column or cell does not name one.
    """

    audio_column: str = "audio"
    caption_columns: tuple[str, ...] | None = None
    label_column: str | None = "label"
    keep_columns: tuple[str, ...] = ()
    caption_languages: tuple[str, ...] | None = None
    default_caption_language: str = "en"

    def __post_init__(self) -> None:
        captions = self.caption_columns
        if isinstance(captions, str):
            captions = (captions,)
        if captions is not None:
            captions = tuple(captions)
            if not captions:
                raise ValueError("caption_columns must name at least one column")
        object.__setattr__(self, "caption_columns", captions)
        object.__setattr__(self, "keep_columns", tuple(self.keep_columns))
        languages = CaptionLanguages.make(self.caption_languages, self.default_caption_language)
        object.__setattr__(self, "caption_languages", languages.selected)
        object.__setattr__(self, "default_caption_language", languages.default)

    @property
    def languages(self) -> CaptionLanguages:
        return CaptionLanguages(self.caption_languages, self.default_caption_language)

    def with_captions(self, caption_columns: Sequence[str]) -> ColumnSpec:
        """The same settings with the caption columns found (detected or given)."""
        return replace(self, caption_columns=tuple(caption_columns))


# What to do with a sample that cannot be used (``--on_bad_sample``).
ON_BAD_SAMPLE_CHOICES = ("error", "skip")
# How many bad samples a BadSamplesError message lists (metrics.json has all of them).
_MAX_LISTED = 10


def check_on_bad_sample(value: str) -> str:
    """``value`` if it is one of :data:`ON_BAD_SAMPLE_CHOICES`, else a ``ValueError`` naming the choices."""
    if value not in ON_BAD_SAMPLE_CHOICES:
        raise ValueError(f"on_bad_sample must be 'error' or 'skip', got {value!r}")
    return value


class BadSampleError(ValueError):
    """One audio sample that cannot be used: missing, empty, corrupt, not audio, or non-finite."""

    def __init__(self, source: str, message: str) -> None:
        super().__init__(f"{source}: {message}")
        self.source = source


class BadSamplesError(BadSampleError):
    """Every bad sample of one split, found by the up-front scan with ``on_bad_sample="error"``.

    A :class:`BadSampleError` (so one ``except`` catches both), naming them all rather than the first:
    ``bad`` holds ``(record, message)`` pairs; ``source`` is the first bad record's.
    """

    def __init__(self, split: str, bad: Sequence[tuple[AudioTextRecord, str]]) -> None:
        self.bad = list(bad)
        self.source = self.bad[0][0].source
        lines = [message for _, message in self.bad[:_MAX_LISTED]]
        if len(self.bad) > _MAX_LISTED:
            lines.append(f"... and {len(self.bad) - _MAX_LISTED} more")
        ValueError.__init__(
            self,
            f"{len(self.bad)} bad sample(s) in the {split} split (--on_bad_sample error). Fix or remove "
            "them, or pass --on_bad_sample skip to drop them (they are then counted and reported):\n  "
            + "\n  ".join(lines),
        )


class MissingSplitError(ValueError):
    """The corpus has no such split (as opposed to a split that exists but cannot be read)."""


@dataclass
class AudioTextRecord:
    """One clip and its captions.

    ``audio`` is a path (str), encoded file bytes, or a dict with ``"path"`` and/or ``"bytes"`` (as
    ``datasets.Audio(decode=False)`` yields) or ``"array"`` + ``"sampling_rate"``. ``source`` names the
    file and row the record came from, for error messages.
    """

    audio: str | bytes | dict[str, Any]
    captions: list[str]
    label: str | None = None
    source: str = field(default="<unknown>")
    extra: dict[str, Any] = field(default_factory=dict)  # other columns asked for (``keep_columns``)
    # The language of each caption (same length as ``captions``; ``None``: not known). The k-th caption
    # of one language and the k-th of another are translations of each other where a corpus says so.
    languages: list[str] | None = None

    def __post_init__(self) -> None:
        if self.languages is not None and len(self.languages) != len(self.captions):
            raise ValueError(
                f"{self.source}: {len(self.languages)} caption languages for {len(self.captions)} captions"
            )

    def caption_languages(self, default: str = "und") -> list[str]:
        """The language of each caption, ``default`` where the corpus did not say."""
        return list(self.languages) if self.languages is not None else [default] * len(self.captions)


def language_counts(records: Iterable[AudioTextRecord], default: str = "und") -> dict[str, int]:
    """Captions per language over ``records`` (most frequent first)."""
    counts: Counter = Counter()
    for record in records:
        counts.update(record.caption_languages(default))
    return dict(counts.most_common())
