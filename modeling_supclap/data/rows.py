"""One table row to one :class:`~.records.AudioTextRecord`, the same for every format.

Which columns hold what comes from a :class:`~.records.ColumnSpec`; the audio column falls back to the
usual names (:data:`AUDIO_COLUMN_NAMES`), caption cells are parsed by ``captions.parse_caption_cell``,
relative audio paths are resolved against the table's folder. Every error names the row.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .captions import CaptionLanguages, caption_column_language, detect_caption_columns, parse_caption_cell
from .records import AudioTextRecord, ColumnSpec

logger = logging.getLogger(__name__)

__all__ = [
    "AUDIO_COLUMN_NAMES",
    "check_caption_columns",
    "pick_audio_column",
    "row_to_record",
    "rows_to_records",
]


@dataclass
class _LanguageTally:
    """Counted skips of one file: rows without a caption in a language, rows without any."""

    missing: Counter = field(default_factory=Counter)
    rows_without_caption: list[str] = field(default_factory=list)
    seen: Counter = field(default_factory=Counter)  # rows with a kept caption, per language
    found: Counter = field(default_factory=Counter)  # captions read, per language (selected or not)

    def report(self, desc: str, languages: CaptionLanguages) -> None:
        if languages.selected is not None:
            absent = [lang for lang in languages.selected if not self.seen[lang]]
            if absent:
                found = ", ".join(sorted(self.found)) or "none"
                raise ValueError(
                    f"{desc}: no caption in language(s) {absent} (--caption_languages); "
                    f"languages present: {found}"
                )
        if self.missing:
            counts = ", ".join(f"{lang} {n}" for lang, n in sorted(self.missing.items()))
            logger.warning(
                "%s: rows without a caption in a language (skipped for that language only): %s",
                desc,
                counts,
            )
        if self.rows_without_caption:
            logger.warning(
                "%s: %d row(s) have no caption in any of the languages %s and are skipped (first: %s)",
                desc,
                len(self.rows_without_caption),
                list(languages.selected or ()),
                self.rows_without_caption[0],
            )


class _NoCaptionInLanguages(ValueError):
    pass


def _resolve_audio(value: Any, bases: Sequence[Path], where: str, column: str) -> str | bytes | dict:
    """Make relative paths absolute (first base where the file exists, else the first base)."""

    def resolve(p: str) -> str:
        path = Path(p).expanduser()
        if path.is_absolute() or not bases:
            return str(path)
        for base in bases:
            if (base / path).exists():
                return str(base / path)
        return str(bases[0] / path)

    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError(f"{where}: audio column '{column}' is empty")
    if isinstance(value, str):
        return resolve(value.strip())
    if isinstance(value, dict):
        value = dict(value)
        if value.get("bytes") is None and value.get("array") is None:
            if not value.get("path"):
                raise ValueError(f"{where}: audio column '{column}' has neither bytes nor a path")
            value["path"] = resolve(value["path"])
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    raise ValueError(
        f"{where}: audio column '{column}' holds {type(value).__name__}, expected a path or dict"
    )


# Looked for, in this order, when the --audio_column is absent: datasets' Audio column, audiofolder's file
# column, then the names common in public metadata files (ESC-50's "filename", FSD50K's "fname", "path").
AUDIO_COLUMN_NAMES = ("audio", "file_name", "filename", "file", "fname", "path", "filepath", "audio_path")


def pick_audio_column(columns: Iterable[str], audio_column: str, where: str) -> str:
    columns = list(columns)
    for name in (audio_column, *AUDIO_COLUMN_NAMES):
        if name in columns:
            return name
    raise ValueError(
        f"{where}: no audio column '{audio_column}' (nor {', '.join(AUDIO_COLUMN_NAMES)}); columns are "
        f"{columns}. Name it with --audio_column"
    )


def check_caption_columns(
    columns: Iterable[str], caption_columns: Sequence[str], where: str, rows: bool = False
) -> None:
    """Every caption column is present; for one row (``rows``), a language column may be absent (missing
    for that language, a counted skip)."""
    columns = list(columns)
    missing = [
        c
        for c in caption_columns
        if c not in columns and not (rows and caption_column_language(c, explicit=True) is not None)
    ]
    if missing:
        raise ValueError(f"{where}: missing caption column(s) {missing}; columns are {columns}")


def row_to_record(
    row: dict[str, Any],
    where: str,
    columns: ColumnSpec,
    bases: Sequence[Path] = (),
    from_text_file: bool = False,
    label_names: Sequence[str] | None = None,
    tally: _LanguageTally | None = None,
) -> AudioTextRecord:
    """One table row as a record (``where`` names the row in errors); audio is not decoded.

    ``columns``: which columns hold what (its ``caption_columns`` must be known here: the readers detect
    them once per table); ``columns.keep_columns`` are kept in ``record.extra`` (a missing one is an error
    naming it); ``columns.languages`` says which caption languages to keep and the language of plain
    captions. ``bases``: folders relative audio paths are resolved against; ``from_text_file``: cells may
    hold JSON lists or mappings (CSV); ``label_names``: class names of integer labels; ``tally`` counts the
    languages a row lacks.
    """
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected an object/row, got {type(row).__name__}")
    languages, caption_columns = columns.languages, columns.caption_columns or ()
    audio_col = pick_audio_column(row.keys(), columns.audio_column, where)
    check_caption_columns(row.keys(), caption_columns, where, rows=True)
    pairs: list[tuple[str, str]] = []
    missing: set[str] = set()
    for col in caption_columns:
        column_language = caption_column_language(col, explicit=True)
        if col not in row:  # a language column this row lacks
            missing.add(column_language or languages.default)
            continue
        more, gone = parse_caption_cell(
            row[col],
            col,
            where,
            from_text_file,
            column_language or languages.default,
            language_column=column_language is not None,
        )
        pairs += more
        missing |= gone
    if tally is not None:
        tally.found.update(lang for lang, _ in pairs)
    if languages.selected is not None:
        pairs = [(lang, text) for lang, text in pairs if lang in languages.selected]
        missing = set(languages.selected)  # a selected language absent from the row is missing in it
    present = {lang for lang, _ in pairs}
    if tally is not None:
        tally.missing.update(missing - present)
        tally.seen.update(present)
    if not pairs:
        if languages.selected is not None:
            raise _NoCaptionInLanguages(f"{where}: no caption in {list(languages.selected)}")
        raise ValueError(f"{where}: no caption (every caption cell is null)")
    captions = [text for _, text in pairs]
    label = row.get(columns.label_column) if columns.label_column else None
    if isinstance(label, str) and not label.strip():
        label = None  # empty CSV cell
    if label is not None and label_names is not None and isinstance(label, (int, np.integer)):
        label = label_names[int(label)]  # ClassLabel ints -> names
    audio = _resolve_audio(row[audio_col], bases, where, audio_col)
    missing = [c for c in columns.keep_columns if c not in row]
    if missing:
        raise ValueError(f"{where}: missing column(s) {missing}; columns are {list(row)}")
    return AudioTextRecord(
        audio=audio,
        captions=captions,
        label=None if label is None else str(label),
        source=where,
        extra={c: row[c] for c in columns.keep_columns},
        languages=[lang for lang, _ in pairs],
    )


def rows_to_records(
    rows: Iterable[tuple[str, dict[str, Any]]],
    file_desc: str,
    columns: ColumnSpec,
    bases: Sequence[Path] = (),
    from_text_file: bool = False,
    label_names: Sequence[str] | None = None,
) -> list[AudioTextRecord]:
    """Every ``(where, row)`` of one table as records; caption columns detected from the first row when
    ``columns`` does not name them. Rows lacking every selected language are skipped and counted; an
    empty table, or one where no row has a caption, is an error naming ``file_desc``."""
    records = []
    tally = _LanguageTally()
    rows_read = 0
    for where, row in rows:
        rows_read += 1
        if columns.caption_columns is None and isinstance(row, dict):  # detected once, from the first row
            columns = columns.with_captions(detect_caption_columns(row.keys(), file_desc))
        try:
            record = row_to_record(row, where, columns, bases, from_text_file, label_names, tally)
        except _NoCaptionInLanguages:
            tally.rows_without_caption.append(where)
            continue
        records.append(record)
    if not rows_read:
        raise ValueError(f"{file_desc}: no rows (empty dataset)")
    tally.report(file_desc, columns.languages)
    if not records:
        raise ValueError(f"{file_desc}: no row has a caption in {list(columns.caption_languages or ())}")
    return records
