"""``datasets`` corpora: a ``save_to_disk`` folder, or a Hugging Face Hub dataset id (``load_dataset``).

Audio is never decoded by ``datasets`` (``Audio(decode=False)``: neither torchcodec nor FFmpeg is needed);
records keep the ``{"bytes", "path"}`` it yields. ``ClassLabel`` integers become their names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..captions import detect_caption_columns
from ..records import AudioTextRecord, ColumnSpec, MissingSplitError, split_family
from ..rows import check_caption_columns, pick_audio_column, rows_to_records


def is_saved_dataset(folder: Path) -> bool:
    """Whether ``folder`` was written by ``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk``."""
    return (folder / "dataset_dict.json").is_file() or (
        (folder / "state.json").is_file() and (folder / "dataset_info.json").is_file()
    )


def records_from_dataset(
    ds: Any, desc: str, columns: ColumnSpec, bases: Sequence[Path]
) -> list[AudioTextRecord]:
    """Every row of the ``datasets.Dataset`` ``ds`` as a record (only the columns needed are read)."""
    from datasets import Audio, ClassLabel

    if len(ds) == 0:
        raise ValueError(f"{desc}: no rows (empty dataset)")
    audio_col = pick_audio_column(ds.column_names, columns.audio_column, desc)
    caption_columns = columns.caption_columns or detect_caption_columns(ds.column_names, desc)
    check_caption_columns(ds.column_names, caption_columns, desc)
    if isinstance(ds.features.get(audio_col), Audio):
        # decode=False: rows hold {"bytes", "path"}; no torchcodec/FFmpeg needed.
        ds = ds.cast_column(audio_col, Audio(decode=False))
    label_col = columns.label_column if columns.label_column in ds.column_names else None
    label_names = None
    if label_col is not None and isinstance(ds.features[label_col], ClassLabel):
        label_names = ds.features[label_col].names
    cols = [audio_col, *caption_columns] + ([label_col] if label_col else [])
    cols += [c for c in columns.keep_columns if c in ds.column_names]  # a missing one: row_to_record names it
    ds = ds.select_columns(list(dict.fromkeys(cols)))
    columns = dataclasses.replace(
        columns, audio_column=audio_col, caption_columns=tuple(caption_columns), label_column=label_col
    )

    def rows() -> Iterator[tuple[str, dict]]:
        i = 0
        for batch in ds.iter(batch_size=1000):
            n = len(batch[audio_col])
            for j in range(n):
                yield f"{desc} row {i + j}", {k: v[j] for k, v in batch.items()}
            i += n

    return rows_to_records(rows(), desc, columns, bases=bases, label_names=label_names)


def load_saved_dataset(
    folder: Path, split: str, columns: ColumnSpec, data_dir: str | None = None
) -> list[AudioTextRecord]:
    """One split of a ``save_to_disk`` folder (a ``DatasetDict``, or a single ``Dataset`` = train)."""
    from datasets import DatasetDict, load_from_disk

    try:
        obj = load_from_disk(str(folder))
    except IndexError as err:
        # datasets 5.x cannot reload a dataset saved with 0 rows (0 shards): it fails on tables[0].
        raise ValueError(f"{folder}: cannot load the saved dataset; it is probably empty (0 rows)") from err
    if isinstance(obj, DatasetDict):
        names = list(obj.keys())
        name = next((n for n in names if n in split_family(split)), None)
        if name is None:
            raise MissingSplitError(
                f"{folder}: no split '{split}' in the saved DatasetDict; splits are {names}"
            )
        ds, desc = obj[name], f"{folder} [{name}]"
    else:
        if split not in split_family("train") and str(obj.split or "") != split:
            raise MissingSplitError(
                f"{folder}: holds a single saved Dataset (split {obj.split!r}), not split '{split}'; "
                "use split='train' to read it"
            )
        ds, desc = obj, str(folder)
    bases = [Path(data_dir)] if data_dir else []
    return records_from_dataset(ds, desc, columns, [*bases, folder, Path.cwd()])


def load_hub_dataset(
    name: str, split: str, columns: ColumnSpec, data_dir: str | None = None
) -> list[AudioTextRecord]:
    """One split of a Hub dataset (needs the network, or a populated ``datasets`` cache)."""
    from datasets import load_dataset

    try:
        ds = load_dataset(name, split=split, data_dir=data_dir)
    except ValueError as err:
        if "unknown split" in str(err).lower():
            raise MissingSplitError(f"{name}: no split '{split}' ({err})") from err
        raise
    return records_from_dataset(ds, f"{name} [{split}]", columns, [Path.cwd()])
