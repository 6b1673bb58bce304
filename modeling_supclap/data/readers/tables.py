"""Metadata tables: ``.csv`` and ``.jsonl`` files, row by row, each row named by its file and line."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

from ..captions import caption_column_language


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


def iter_table(path: Path) -> Iterator[tuple[str, dict]]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return _iter_jsonl(path)
    if suffix == ".csv":
        return _iter_csv(path)
    raise ValueError(f"{path}: unsupported file type '{suffix}' (expected .csv or .jsonl)")
