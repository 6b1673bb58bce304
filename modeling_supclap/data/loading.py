"""Reading audio-caption corpora into :class:`AudioTextRecord` lists, and decoding their audio.

Supported inputs of :func:`load_records`:

* a local *audiofolder*: a folder with ``metadata.jsonl`` or ``metadata.csv`` (file column
  ``file_name``), optionally split into ``train/``, ``validation/``, ``test/`` subfolders (or a root
  metadata file whose ``file_name`` entries start with the split folder);
* a ``.csv`` or ``.jsonl`` file whose audio paths are relative to the file (or to ``data_dir``);
* a folder written by ``datasets.Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``;
* a Hugging Face Hub dataset id, through ``datasets.load_dataset`` (needs network access).

Audio is never decoded by ``datasets`` (``Audio(decode=False)``, so neither torchcodec nor FFmpeg is
needed): records keep paths or bytes and :func:`decode_audio` reads them with soundfile.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

logger = logging.getLogger(__name__)

__all__ = [
    "AUDIO_COLUMN_NAMES",
    "AudioTextRecord",
    "BadSampleError",
    "CaptionLanguages",
    "BadSamplesError",
    "MissingSplitError",
    "ON_BAD_SAMPLE_CHOICES",
    "check_on_bad_sample",
    "caption_column_language",
    "decode_audio",
    "language_counts",
    "load_records",
    "normalize_language",
    "parse_caption_cell",
]

# Split folder names datasets' audiofolder also recognises, by canonical split.
_SPLIT_ALIASES = {
    "train": ("train", "training"),
    "validation": ("validation", "valid", "val", "dev"),
    "test": ("test", "testing", "eval", "evaluation"),
}
_METADATA_FILES = ("metadata.jsonl", "metadata.csv")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


# Sampling rates decode_audio accepts (telephone speech to high-resolution recordings).
MIN_SAMPLING_RATE, MAX_SAMPLING_RATE = 1000, 768000
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


# --------------------------------------------------------------------------------------------------
# decode_audio
# --------------------------------------------------------------------------------------------------


def _read_soundfile(obj: str | io.BytesIO, source: str, what: str) -> tuple[np.ndarray, int]:
    try:
        data, sr = sf.read(obj, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, EOFError) as err:
        raise BadSampleError(
            source,
            f"cannot decode {what} as audio ({err}). Supported are the formats of libsndfile "
            "(WAV, FLAC, OGG/Vorbis, MP3, AIFF, ...); convert other formats (e.g. M4A/AAC) first.",
        ) from err
    return data, int(sr)


def _to_mono(array: np.ndarray, source: str) -> np.ndarray:
    if array.ndim == 1:
        return array
    if array.ndim != 2:
        raise BadSampleError(source, f"audio array must be 1-D or 2-D, got shape {array.shape}")
    # soundfile gives (frames, channels); some datasets give (channels, frames) with few channels.
    channel_axis = 0 if array.shape[0] <= 8 and array.shape[1] > array.shape[0] else 1
    return array.mean(axis=channel_axis)


def decode_audio(
    audio: str | os.PathLike | bytes | dict[str, Any], target_sr: int, source: str
) -> np.ndarray:
    """Decode ``audio`` to a float32 mono waveform at ``target_sr`` Hz.

    ``audio`` may be a file path, the bytes of an audio file, or a dict with ``"array"`` +
    ``"sampling_rate"`` (already decoded), ``"bytes"`` or ``"path"`` (tried in that order). Channels
    are averaged; other sampling rates are resampled with ``scipy.signal.resample_poly``. Missing,
    empty (zero-byte or zero-frame), corrupt or non-audio inputs and NaN/inf samples raise
    :class:`BadSampleError` naming ``source``.
    """
    sr: int
    if isinstance(audio, dict):
        if audio.get("array") is not None:
            if audio.get("sampling_rate") is None:
                raise BadSampleError(source, "audio dict has an 'array' but no 'sampling_rate'")
            data = np.asarray(audio["array"], dtype=np.float32)
            sr = int(audio["sampling_rate"])
            data = _to_mono(data, source)
        elif audio.get("bytes") is not None:
            return decode_audio(bytes(audio["bytes"]), target_sr, source)
        elif audio.get("path"):
            return decode_audio(audio["path"], target_sr, source)
        else:
            raise BadSampleError(
                source, f"audio dict has no 'array', 'bytes' or 'path' (keys: {sorted(audio)})"
            )
    elif isinstance(audio, (bytes, bytearray, memoryview)):
        if len(audio) == 0:
            raise BadSampleError(source, "audio bytes are empty (0 bytes)")
        data, sr = _read_soundfile(io.BytesIO(bytes(audio)), source, "audio bytes")
        data = data.mean(axis=1)
    elif isinstance(audio, (str, os.PathLike)):
        path = Path(audio)
        if not path.exists():
            raise BadSampleError(source, f"audio file not found: {path}")
        if not path.is_file():
            raise BadSampleError(source, f"audio path is not a file: {path}")
        if path.stat().st_size == 0:
            raise BadSampleError(source, f"audio file is empty (0 bytes): {path}")
        data, sr = _read_soundfile(str(path), source, f"file {path}")
        data = data.mean(axis=1)
    else:
        raise BadSampleError(source, f"unsupported audio value of type {type(audio).__name__}")

    if data.size == 0:
        raise BadSampleError(source, "audio has no samples")
    if not np.all(np.isfinite(data)):
        bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
        raise BadSampleError(source, f"audio has {bad} NaN/inf sample(s)")
    if not MIN_SAMPLING_RATE <= sr <= MAX_SAMPLING_RATE:
        # A corrupt header can claim any rate; resampling from an absurd one would need absurd memory
        # (2**31 Hz: a 320 GiB filter). Real audio lies well inside these bounds.
        raise BadSampleError(
            source, f"implausible sampling rate {sr} Hz (accepted: {MIN_SAMPLING_RATE}..{MAX_SAMPLING_RATE})"
        )
    if sr != target_sr:
        from scipy.signal import resample_poly  # local import: scipy.signal is slow to import

        g = math.gcd(int(sr), int(target_sr))
        data = resample_poly(data, int(target_sr) // g, int(sr) // g)
    return np.ascontiguousarray(data, dtype=np.float32)


# --------------------------------------------------------------------------------------------------
# Row parsing shared by all formats
# --------------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------------
# Caption languages
# --------------------------------------------------------------------------------------------------

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


def language_counts(records: Iterable[AudioTextRecord], default: str = "und") -> dict[str, int]:
    """Captions per language over ``records`` (most frequent first)."""
    counts: Counter = Counter()
    for record in records:
        counts.update(record.caption_languages(default))
    return dict(counts.most_common())


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


def _pick_audio_column(columns: Iterable[str], audio_column: str, where: str) -> str:
    columns = list(columns)
    for name in (audio_column, *AUDIO_COLUMN_NAMES):
        if name in columns:
            return name
    raise ValueError(
        f"{where}: no audio column '{audio_column}' (nor {', '.join(AUDIO_COLUMN_NAMES)}); columns are "
        f"{columns}. Name it with --audio_column"
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


def _check_columns(
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
    audio_column: str,
    caption_columns: Sequence[str],
    label_column: str | None,
    bases: Sequence[Path] = (),
    from_text_file: bool = False,
    label_names: Sequence[str] | None = None,
    keep_columns: Sequence[str] = (),
    languages: CaptionLanguages | None = None,
    tally: _LanguageTally | None = None,
) -> AudioTextRecord:
    """One table row as a record (``where`` names the row in errors); audio is not decoded.

    ``keep_columns``: other columns to keep in ``record.extra`` (a missing one is an error naming it).
    ``languages``: which caption languages to keep and the language of plain captions; ``tally`` counts
    the languages a row lacks.
    """
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected an object/row, got {type(row).__name__}")
    languages = languages or CaptionLanguages()
    audio_col = _pick_audio_column(row.keys(), audio_column, where)
    _check_columns(row.keys(), caption_columns, where, rows=True)
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
    label = row.get(label_column) if label_column else None
    if isinstance(label, str) and not label.strip():
        label = None  # empty CSV cell
    if label is not None and label_names is not None and isinstance(label, (int, np.integer)):
        label = label_names[int(label)]  # ClassLabel ints -> names
    audio = _resolve_audio(row[audio_col], bases, where, audio_col)
    missing = [c for c in keep_columns if c not in row]
    if missing:
        raise ValueError(f"{where}: missing column(s) {missing}; columns are {list(row)}")
    return AudioTextRecord(
        audio=audio,
        captions=captions,
        label=None if label is None else str(label),
        source=where,
        extra={c: row[c] for c in keep_columns},
        languages=[lang for lang, _ in pairs],
    )


def _rows_to_records(
    rows: Iterable[tuple[str, dict[str, Any]]],
    file_desc: str,
    audio_column: str,
    caption_columns: Sequence[str] | None,
    label_column: str | None,
    bases: Sequence[Path],
    from_text_file: bool,
    label_names: Sequence[str] | None = None,
    keep_columns: Sequence[str] = (),
    languages: CaptionLanguages | None = None,
) -> list[AudioTextRecord]:
    records = []
    languages = languages or CaptionLanguages()
    tally = _LanguageTally()
    rows_read = 0
    for where, row in rows:
        rows_read += 1
        if caption_columns is None and isinstance(row, dict):  # detected once, from the first row
            caption_columns = detect_caption_columns(row.keys(), file_desc)
        try:
            record = row_to_record(
                row,
                where,
                audio_column,
                caption_columns or (),
                label_column,
                bases,
                from_text_file,
                label_names,
                keep_columns,
                languages,
                tally,
            )
        except _NoCaptionInLanguages:
            tally.rows_without_caption.append(where)
            continue
        records.append(record)
    if not rows_read:
        raise ValueError(f"{file_desc}: no rows (empty dataset)")
    tally.report(file_desc, languages)
    if not records:
        raise ValueError(f"{file_desc}: no row has a caption in {list(languages.selected or ())}")
    return records


# --------------------------------------------------------------------------------------------------
# Formats
# --------------------------------------------------------------------------------------------------


def _check_utf8(path: Path) -> None:
    """Raise ValueError naming the file, line and byte if ``path`` is not UTF-8 text."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise ValueError(
            f"{path} line {line}: not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}); "
            "save the metadata file as UTF-8"
        ) from err


def _iter_jsonl(path: Path) -> Iterator[tuple[str, dict]]:
    _check_utf8(path)
    with open(path, encoding="utf-8-sig") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path} line {lineno}"
            try:
                yield where, json.loads(line)
            except ValueError as err:
                raise ValueError(f"{where}: invalid JSON ({err})") from err


def _iter_csv(path: Path) -> Iterator[tuple[str, dict]]:
    _check_utf8(path)
    # utf-8-sig: a byte-order mark (Excel's "CSV UTF-8") is not part of the first column's name.
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames:
            raise ValueError(f"{path}: no header row (empty CSV)")
        for row in reader:
            if None in row:  # more cells than header columns
                raise ValueError(f"{path} line {reader.line_num}: more cells than header columns")
            # CSV has no null: an empty cell of a language column (caption_fr) is a missing caption.
            for column, value in row.items():
                if value == "" and caption_column_language(column, explicit=True) is not None:
                    row[column] = None
            yield f"{path} line {reader.line_num}", row


def _iter_table(path: Path) -> Iterator[tuple[str, dict]]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return _iter_jsonl(path)
    if suffix == ".csv":
        return _iter_csv(path)
    raise ValueError(f"{path}: unsupported file type '{suffix}' (expected .csv or .jsonl)")


def _split_family(split: str) -> tuple[str, ...]:
    """All folder/split names meaning ``split`` ("val" -> validation, valid, val, dev)."""
    for aliases in _SPLIT_ALIASES.values():
        if split in aliases:
            return aliases
    return (split,)


def _find_split_dir(root: Path, split: str) -> tuple[Path | None, list[str]]:
    """The subfolder of ``root`` holding ``split`` (aliases allowed), and all split folders present."""
    present = [p.name for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    known = {alias: canon for canon, aliases in _SPLIT_ALIASES.items() for alias in aliases}
    split_dirs = [name for name in present if name in known]
    wanted = _split_family(split)
    for name in present:
        if name in wanted:
            return root / name, split_dirs
    return None, split_dirs


def _metadata_file(folder: Path) -> Path | None:
    for name in _METADATA_FILES:
        if (folder / name).is_file():
            return folder / name
    return None


def _load_audiofolder(
    root: Path,
    split: str,
    audio_column: str,
    caption_columns: Sequence[str] | None,
    label_column: str | None,
    keep_columns: Sequence[str] = (),
    languages: CaptionLanguages | None = None,
) -> list[AudioTextRecord]:
    split_dir, split_dirs = _find_split_dir(root, split)
    kwargs = dict(
        audio_column=audio_column,
        caption_columns=caption_columns,
        label_column=label_column,
        keep_columns=keep_columns,
        languages=languages,
    )
    if split_dir is not None and (meta := _metadata_file(split_dir)) is not None:
        return _rows_to_records(
            _iter_table(meta), str(meta), bases=[split_dir], from_text_file=True, **kwargs
        )

    if split_dir is None and split_dirs:
        raise MissingSplitError(f"{root}: no split '{split}'; split folders present: {split_dirs}")
    root_meta = _metadata_file(root)
    if root_meta is None:
        where = split_dir if split_dir is not None else root
        raise ValueError(f"{where}: no {' or '.join(_METADATA_FILES)} found (not an audiofolder)")
    if split_dir is None:
        # No split folders at all: like datasets' audiofolder, the whole folder is the train split.
        if split not in _split_family("train"):
            raise MissingSplitError(
                f"{root}: has no split folders, so only split='train' exists (asked for '{split}')"
            )
        return _rows_to_records(
            _iter_table(root_meta), str(root_meta), bases=[root], from_text_file=True, **kwargs
        )

    # A root metadata file covering split folders: keep the rows whose file lies in this split's folder.
    def in_split(rows: Iterable[tuple[str, dict]]) -> Iterator[tuple[str, dict]]:
        for where, row in rows:
            col = _pick_audio_column(row.keys(), audio_column, where)
            value = row.get(col)
            path = value.get("path") if isinstance(value, dict) else value
            if isinstance(path, str) and Path(path).parts[:1] == (split_dir.name,):
                yield where, row

    records = _rows_to_records(
        in_split(_iter_table(root_meta)),
        f"{root_meta} (split '{split}')",
        bases=[root],
        from_text_file=True,
        **kwargs,
    )
    return records


def _is_saved_dataset(folder: Path) -> bool:
    return (folder / "dataset_dict.json").is_file() or (
        (folder / "state.json").is_file() and (folder / "dataset_info.json").is_file()
    )


def _records_from_dataset(
    ds: Any,
    desc: str,
    audio_column: str,
    caption_columns: Sequence[str] | None,
    label_column: str | None,
    bases: Sequence[Path],
    keep_columns: Sequence[str] = (),
    languages: CaptionLanguages | None = None,
) -> list[AudioTextRecord]:
    from datasets import Audio, ClassLabel

    if len(ds) == 0:
        raise ValueError(f"{desc}: no rows (empty dataset)")
    audio_col = _pick_audio_column(ds.column_names, audio_column, desc)
    if caption_columns is None:
        caption_columns = detect_caption_columns(ds.column_names, desc)
    _check_columns(ds.column_names, caption_columns, desc)
    if isinstance(ds.features.get(audio_col), Audio):
        # decode=False: rows hold {"bytes", "path"}; no torchcodec/FFmpeg needed.
        ds = ds.cast_column(audio_col, Audio(decode=False))
    label_col = label_column if label_column and label_column in ds.column_names else None
    label_names = None
    if label_col is not None and isinstance(ds.features[label_col], ClassLabel):
        label_names = ds.features[label_col].names
    cols = [audio_col, *caption_columns] + ([label_col] if label_col else [])
    cols += [c for c in keep_columns if c in ds.column_names]  # a missing one: row_to_record names it
    ds = ds.select_columns(list(dict.fromkeys(cols)))

    def rows() -> Iterator[tuple[str, dict]]:
        i = 0
        for batch in ds.iter(batch_size=1000):
            n = len(batch[audio_col])
            for j in range(n):
                yield f"{desc} row {i + j}", {k: v[j] for k, v in batch.items()}
            i += n

    return _rows_to_records(
        rows(),
        desc,
        audio_column=audio_col,
        caption_columns=caption_columns,
        label_column=label_col,
        bases=bases,
        from_text_file=False,
        label_names=label_names,
        keep_columns=keep_columns,
        languages=languages,
    )


def _load_saved_dataset(
    folder: Path,
    split: str,
    audio_column: str,
    caption_columns: Sequence[str] | None,
    label_column: str | None,
    data_dir: str | None,
    keep_columns: Sequence[str] = (),
    languages: CaptionLanguages | None = None,
) -> list[AudioTextRecord]:
    from datasets import DatasetDict, load_from_disk

    try:
        obj = load_from_disk(str(folder))
    except IndexError as err:
        # datasets 5.x cannot reload a dataset saved with 0 rows (0 shards): it fails on tables[0].
        raise ValueError(f"{folder}: cannot load the saved dataset; it is probably empty (0 rows)") from err
    if isinstance(obj, DatasetDict):
        names = list(obj.keys())
        name = next((n for n in names if n in _split_family(split)), None)
        if name is None:
            raise MissingSplitError(
                f"{folder}: no split '{split}' in the saved DatasetDict; splits are {names}"
            )
        ds, desc = obj[name], f"{folder} [{name}]"
    else:
        if split not in _split_family("train") and str(obj.split or "") != split:
            raise MissingSplitError(
                f"{folder}: holds a single saved Dataset (split {obj.split!r}), not split '{split}'; "
                "use split='train' to read it"
            )
        ds, desc = obj, str(folder)
    bases = [Path(data_dir)] if data_dir else []
    return _records_from_dataset(
        ds,
        desc,
        audio_column,
        caption_columns,
        label_column,
        [*bases, folder, Path.cwd()],
        keep_columns,
        languages,
    )


def _load_hub_dataset(
    name: str,
    split: str,
    audio_column: str,
    caption_columns: Sequence[str] | None,
    label_column: str | None,
    data_dir: str | None,
    keep_columns: Sequence[str] = (),
    languages: CaptionLanguages | None = None,
) -> list[AudioTextRecord]:
    # Needs network access to the Hugging Face Hub (or a populated datasets cache / HF_HUB_OFFLINE).
    from datasets import load_dataset

    try:
        ds = load_dataset(name, split=split, data_dir=data_dir)
    except ValueError as err:
        if "unknown split" in str(err).lower():
            raise MissingSplitError(f"{name}: no split '{split}' ({err})") from err
        raise
    return _records_from_dataset(
        ds,
        f"{name} [{split}]",
        audio_column,
        caption_columns,
        label_column,
        [Path.cwd()],
        keep_columns,
        languages,
    )


def load_records(
    data: str | os.PathLike,
    split: str = "train",
    audio_column: str = "audio",
    caption_columns: Sequence[str] | None = None,
    label_column: str | None = "label",
    data_dir: str | None = None,
    keep_columns: Sequence[str] = (),
    caption_languages: Sequence[str] | None = None,
    default_caption_language: str = "en",
) -> list[AudioTextRecord]:
    """Read one split of an audio-caption corpus into records (audio is not decoded here).

    ``data`` is a local audiofolder, a ``.csv``/``.jsonl`` file, a ``save_to_disk`` folder, or a Hub
    dataset id (see the module docstring). The audio column is ``audio_column``, falling back to
    ``file_name`` (audiofolder) or ``audio``. Each caption column may hold a string or a list of strings
    (in CSV: a string or a JSON list); several columns are concatenated. ``caption_columns=None``:
    detected (:func:`detect_caption_columns`: ``captions``/``caption``, Clotho's ``caption_1..5``,
    ``text``) and logged. ``label_column`` is optional
    (``None`` labels when absent). ``data_dir`` is the base folder for relative audio paths of
    ``.csv``/``.jsonl`` files and saved datasets, or ``load_dataset``'s ``data_dir`` for Hub ids.
    ``keep_columns``: other columns to keep, per record, in ``record.extra`` (e.g. a benchmark's fold).

    Languages: a caption column named ``caption_<language>`` (``caption_fr``) holds that language; a cell
    may also hold a ``{language: caption or list}`` mapping or a list of them (CSV: as JSON); other
    captions are ``default_caption_language``. Each record's ``languages`` says the language of each
    caption. ``caption_languages``: keep only those languages (a row lacking one is a counted skip for
    that language, logged; a row with none of them is skipped and counted; a language found in no row
    is an error).

    Raises ``ValueError`` naming the file and row for missing columns, empty captions or an empty
    dataset, and ``FileNotFoundError`` for a local path that does not exist.
    """
    if isinstance(caption_columns, str):
        caption_columns = (caption_columns,)
    if caption_columns is not None:
        caption_columns = tuple(caption_columns)
        if not caption_columns:
            raise ValueError("caption_columns must name at least one column")
    languages = CaptionLanguages.make(caption_languages, default_caption_language)
    path = Path(data).expanduser()
    if path.is_file():
        bases = [Path(data_dir)] if data_dir else [path.parent]
        return _rows_to_records(
            _iter_table(path),
            str(path),
            audio_column=audio_column,
            caption_columns=caption_columns,
            label_column=label_column,
            bases=bases,
            from_text_file=True,
            keep_columns=keep_columns,
            languages=languages,
        )
    columns = (audio_column, caption_columns, label_column)
    if path.is_dir():
        if _is_saved_dataset(path):
            return _load_saved_dataset(path, split, *columns, data_dir, keep_columns, languages)
        return _load_audiofolder(path, split, *columns, keep_columns, languages)
    looks_local = path.suffix.lower() in (".csv", ".jsonl", ".json") or str(data).startswith(("/", ".", "~"))
    if looks_local or not _HUB_ID.match(str(data)):
        raise FileNotFoundError(f"{data}: no such file or folder")
    return _load_hub_dataset(str(data), split, *columns, data_dir, keep_columns, languages)
