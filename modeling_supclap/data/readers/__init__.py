"""Reading audio-caption corpora into records: one dispatch (:func:`load_records`), a file per format.

Supported inputs of :func:`load_records`:

* a local *audiofolder*: a folder with ``metadata.jsonl`` or ``metadata.csv`` (file column
  ``file_name``), optionally split into ``train/``, ``validation/``, ``test/`` subfolders (or a root
  metadata file whose ``file_name`` entries start with the split folder);
* a ``.csv`` or ``.jsonl`` file whose audio paths are relative to the file (or to ``data_dir``);
* a folder written by ``datasets.Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``;
* a Hugging Face Hub dataset id, through ``datasets.load_dataset`` (needs network access).

:func:`load_audio_records` (embedding: captions optional) also reads tar shards in place and a plain folder
of audio files with no metadata (``audio_files.py``).

Audio is never decoded by ``datasets`` (``Audio(decode=False)``, so neither torchcodec nor FFmpeg is
needed): records keep paths or bytes and ``data/audio.py`` decodes them with soundfile. Which columns
hold what is one :class:`~..records.ColumnSpec`, the same for every format.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..records import SPLIT_ALIASES, AudioTextRecord, ColumnSpec
from ..rows import rows_to_records
from .audio_files import load_audio_files, load_shard_records
from .audiofolder import load_audiofolder, metadata_file
from .hf_datasets import is_saved_dataset, load_hub_dataset, load_saved_dataset
from .tables import iter_table

__all__ = ["load_audio_records", "load_records"]

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def load_records(
    data: str | os.PathLike,
    split: str = "train",
    columns: ColumnSpec | None = None,
    *,
    data_dir: str | None = None,
    **column_settings,
) -> list[AudioTextRecord]:
    """Read one split of an audio-caption corpus into records (audio is not decoded here).

    ``data`` is a local audiofolder, a ``.csv``/``.jsonl`` file, a ``save_to_disk`` folder, or a Hub
    dataset id (see the module docstring). ``columns`` (or its fields as keywords: ``audio_column``,
    ``caption_columns``, ``label_column``, ``keep_columns``, ``caption_languages``,
    ``default_caption_language``) says which columns hold what: the audio column falls back to the usual
    names; each caption column may hold a string or a list of strings (in CSV: a string or a JSON list),
    several columns are concatenated, and without ``caption_columns`` they are detected
    (``captions``/``caption``, Clotho's ``caption_1..5``, ``caption_<language>``, ``text``) and logged;
    the label column is optional (``None`` labels when absent); ``keep_columns`` are kept per record in
    ``record.extra`` (an evaluation suite's fold). ``data_dir`` is the base folder for relative audio
    paths of ``.csv``/``.jsonl`` files and saved datasets, or ``load_dataset``'s ``data_dir`` for Hub ids.

    Languages: a caption column named ``caption_<language>`` (``caption_fr``) holds that language; a cell
    may also hold a ``{language: caption or list}`` mapping or a list of them (CSV: as JSON); other
    captions are ``default_caption_language``. Each record's ``languages`` says the language of each
    caption. ``caption_languages``: keep only those languages (a row lacking one is a counted skip for
    that language, logged; a row with none of them is skipped and counted; a language found in no row
    is an error).

    Raises ``ValueError`` naming the file and row for missing columns, empty captions or an empty
    dataset, and ``FileNotFoundError`` for a local path that does not exist.
    """
    if columns is None:
        columns = ColumnSpec(**column_settings)
    elif column_settings:
        raise TypeError("load_records takes a ColumnSpec or column keywords, not both")
    path = Path(data).expanduser()
    if path.is_file():
        bases = [Path(data_dir)] if data_dir else [path.parent]
        return rows_to_records(iter_table(path), str(path), columns, bases=bases, from_text_file=True)
    if path.is_dir():
        if is_saved_dataset(path):
            return load_saved_dataset(path, split, columns, data_dir)
        return load_audiofolder(path, split, columns)
    looks_local = path.suffix.lower() in (".csv", ".jsonl", ".json") or str(data).startswith(("/", ".", "~"))
    if looks_local or not _HUB_ID.match(str(data)):
        raise FileNotFoundError(f"{data}: no such file or folder")
    return load_hub_dataset(str(data), split, columns, data_dir)


def _has_metadata(folder: Path) -> bool:
    """Whether ``folder`` is an audiofolder: a metadata file at its root or in a split folder."""
    splits = {alias for aliases in SPLIT_ALIASES.values() for alias in aliases}
    candidates = [folder, *(child for child in folder.iterdir() if child.is_dir() and child.name in splits)]
    return any(metadata_file(candidate) is not None for candidate in candidates)


def load_audio_records(
    data: str | os.PathLike, split: str = "train", columns: ColumnSpec | None = None
) -> list[AudioTextRecord]:
    """The clips of any corpus, captions or not (what ``supclap-embed`` indexes).

    Tar shards (a folder of them, a pattern or a range) are read in place, every sample (``split`` does not
    apply); a folder with no metadata file is a plain folder of audio files (all of them, subfolders too);
    anything else is :func:`load_records`'s.
    """
    # Imported here: the sources package imports this one (a module-level import would be circular).
    from ..sources.shards import looks_like_shards

    spec = str(data)
    path = Path(spec).expanduser()
    if looks_like_shards(spec):
        return load_shard_records(spec)
    if path.is_dir() and not is_saved_dataset(path) and not _has_metadata(path):
        return load_audio_files(path)
    return load_records(data, split, columns)
