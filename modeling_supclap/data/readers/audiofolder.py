"""An audiofolder: audio files with a ``metadata.jsonl`` or ``metadata.csv``, as ``datasets`` reads it.

Splits are subfolders (``train/``, ``validation/``, ``test/`` and their aliases) each with its own metadata
file, or one root metadata file whose ``file_name`` entries start with the split folder; a folder without
split folders is the train split.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from ..records import SPLIT_ALIASES, AudioTextRecord, ColumnSpec, MissingSplitError, split_family
from ..rows import pick_audio_column, rows_to_records
from .tables import iter_table

METADATA_FILES = ("metadata.jsonl", "metadata.csv")


def _find_split_dir(root: Path, split: str) -> tuple[Path | None, list[str]]:
    """The subfolder of ``root`` holding ``split`` (aliases allowed), and all split folders present."""
    present = [p.name for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    known = {alias for aliases in SPLIT_ALIASES.values() for alias in aliases}
    split_dirs = [name for name in present if name in known]
    wanted = split_family(split)
    for name in present:
        if name in wanted:
            return root / name, split_dirs
    return None, split_dirs


def metadata_file(folder: Path) -> Path | None:
    """The folder's ``metadata.jsonl`` or ``metadata.csv``, or None."""
    for name in METADATA_FILES:
        if (folder / name).is_file():
            return folder / name
    return None


def load_audiofolder(root: Path, split: str, columns: ColumnSpec) -> list[AudioTextRecord]:
    """The records of one split of the audiofolder ``root`` (see the module docstring)."""
    split_dir, split_dirs = _find_split_dir(root, split)
    if split_dir is not None and (meta := metadata_file(split_dir)) is not None:
        return rows_to_records(iter_table(meta), str(meta), columns, bases=[split_dir], from_text_file=True)

    if split_dir is None and split_dirs:
        raise MissingSplitError(f"{root}: no split '{split}'; split folders present: {split_dirs}")
    root_meta = metadata_file(root)
    if root_meta is None:
        where = split_dir if split_dir is not None else root
        raise ValueError(f"{where}: no {' or '.join(METADATA_FILES)} found (not an audiofolder)")
    if split_dir is None:
        # No split folders at all: like datasets' audiofolder, the whole folder is the train split.
        if split not in split_family("train"):
            raise MissingSplitError(
                f"{root}: has no split folders, so only split='train' exists (asked for '{split}')"
            )
        return rows_to_records(
            iter_table(root_meta), str(root_meta), columns, bases=[root], from_text_file=True
        )

    # A root metadata file covering split folders: keep the rows whose file lies in this split's folder.
    def in_split(rows: Iterable[tuple[str, dict]]) -> Iterator[tuple[str, dict]]:
        for where, row in rows:
            value = row.get(pick_audio_column(row.keys(), columns.audio_column, where))
            path = value.get("path") if isinstance(value, dict) else value
            if isinstance(path, str) and Path(path).parts[:1] == (split_dir.name,):
                yield where, row

    desc = f"{root_meta} (split '{split}')"
    return rows_to_records(in_split(iter_table(root_meta)), desc, columns, bases=[root], from_text_file=True)
