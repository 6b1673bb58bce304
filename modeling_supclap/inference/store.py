"""An embedding index on disk: Parquet parts, a manifest, and the identity of the model that made it.

::

    INDEX/
      settings.json               what determines the content (written first; a rerun must match it)
      parts/part-000000.parquet   one row per embedded clip of the clips part_size * i ... (i + 1) * part_size
      parts/part-000001.parquet   (the clips of that range that were bad are in the part's metadata)
      manifest.json               written last, once every part exists: settings, counts, parts, bad files

A part is written to a temporary name and renamed into place, so a part under its final name is complete: a
run killed at any moment loses at most the part it was writing. The manifest makes the folder an index.

Columns: ``id`` (int64, the clip's position in the corpus), ``key`` (the file's path relative to the corpus,
or the row the clip came from), ``path`` (the audio file, where the clip is one; else null), ``duration``
(seconds), ``num_windows`` (windows embedded), ``captions`` (list of strings, empty without any), ``label``
(null without one), ``embedding`` (fixed-size list of float32 or float16, L2-normalised).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

__all__ = [
    "EMBEDDING_DTYPES",
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "SETTINGS",
    "IndexRows",
    "model_fingerprint",
    "model_identity",
    "part_path",
    "parts_content_id",
    "read_json",
    "read_manifest",
    "read_part",
    "write_json_atomically",
    "write_part",
]

FORMAT, FORMAT_VERSION = "supclap-embedding-index", 1
MANIFEST, SETTINGS, PARTS = "manifest.json", "settings.json", "parts"
EMBEDDING_DTYPES = {"float32": pa.float32(), "float16": pa.float16()}
# Where a part keeps the clips of its range that could not be embedded (Parquet key-value metadata).
_SKIPPED_KEY = b"supclap.skipped"


def model_fingerprint(model: torch.nn.Module) -> str:
    """sha256 of the model's weights and buffers (names, shapes, float32 values), in name order.

    Identifies the weights whatever the model was loaded from (a folder, a Hub id, a Python object) and
    whatever precision a run computes in (autocast does not touch the weights), so an index can refuse a
    query embedded by another model. A model cast to half precision has other weights: it fingerprints
    differently.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        values = tensor.detach().to("cpu")
        values = values.to(torch.float32) if values.is_floating_point() else values
        digest.update(f"{name}:{tuple(values.shape)}:{values.dtype}".encode())
        digest.update(np.ascontiguousarray(values.numpy()).tobytes())
    return "sha256:" + digest.hexdigest()


def model_identity(model: torch.nn.Module, name_or_path: str | None = None) -> dict[str, Any]:
    """What an index records about its model: where it came from, its revision, class and fingerprint."""
    config = model.config
    return {
        "name_or_path": name_or_path or getattr(model, "name_or_path", None) or "<unsaved model>",
        "revision": getattr(config, "_commit_hash", None),
        "class": type(model).__name__,
        "embedding_dim": int(config.projection_dim),
        "fingerprint": model_fingerprint(model),
    }


def read_json(path: str | os.PathLike) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None if there is no such file."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error}); is this an embedding index?") from error


def write_json_atomically(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` through a temporary file and a rename (readers never see half of it)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as handle:
        handle.write(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def read_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    """The manifest of the index in ``folder``; a ``ValueError`` saying what is wrong where there is none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such index folder")
    manifest = read_json(folder / MANIFEST)
    if manifest is None:
        started = (folder / SETTINGS).is_file()
        raise ValueError(
            f"{folder}: no {MANIFEST}: "
            + (
                "the embedding run that writes it has not finished (rerun the same supclap-embed command "
                "to complete it)"
                if started
                else "not an embedding index (make one with supclap-embed)"
            )
        )
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{folder}: {MANIFEST} is not a {FORMAT} manifest")
    if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
        raise ValueError(
            f"{folder}: index format version {manifest['format_version']} is newer than this code's "
            f"({FORMAT_VERSION}): upgrade supclap"
        )
    return manifest


def part_path(folder: str | os.PathLike, part: int) -> Path:
    return Path(folder) / PARTS / f"part-{part:06d}.parquet"


class IndexRows:
    """The rows of one part, gathered clip by clip, then written as one Parquet file."""

    def __init__(self) -> None:
        self.columns: dict[str, list[Any]] = {
            name: [] for name in ("id", "key", "path", "duration", "num_windows", "captions", "label")
        }
        self.embeddings: list[np.ndarray] = []
        self.skipped: list[dict[str, Any]] = []

    def add(self, row: dict[str, Any], embedding: np.ndarray) -> None:
        for name, values in self.columns.items():
            values.append(row[name])
        self.embeddings.append(np.asarray(embedding, dtype=np.float32))

    def skip(self, clip_id: int, key: str, reason: str) -> None:
        self.skipped.append({"id": int(clip_id), "key": key, "reason": reason})

    def __len__(self) -> int:
        return len(self.embeddings)


def _schema(dim: int, embedding_dtype: str) -> pa.Schema:
    return pa.schema(
        [
            ("id", pa.int64()),
            ("key", pa.string()),
            ("path", pa.string()),
            ("duration", pa.float64()),
            ("num_windows", pa.int32()),
            ("captions", pa.list_(pa.string())),
            ("label", pa.string()),
            ("embedding", pa.list_(EMBEDDING_DTYPES[embedding_dtype], dim)),
        ]
    )


def write_part(path: Path, rows: IndexRows, dim: int, embedding_dtype: str) -> None:
    """Write ``rows`` as the Parquet file ``path``: to a temporary name, flushed, then renamed into place."""
    schema = _schema(dim, embedding_dtype)
    numpy_dtype = np.float16 if embedding_dtype == "float16" else np.float32
    matrix = np.stack(rows.embeddings).astype(numpy_dtype) if len(rows) else np.zeros((0, dim), numpy_dtype)
    embedding = pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), dim)
    arrays = [
        pa.array(rows.columns[field.name], type=field.type) for field in schema if field.name != "embedding"
    ]
    table = pa.Table.from_arrays([*arrays, embedding], schema=schema)
    table = table.replace_schema_metadata({_SKIPPED_KEY: json.dumps(rows.skipped).encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp, compression="zstd")
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def read_part(path: Path) -> tuple[pa.Table, list[dict[str, Any]]]:
    """A part's rows and its skipped clips."""
    table = pq.read_table(path)
    metadata = table.schema.metadata or {}
    return table, json.loads(metadata.get(_SKIPPED_KEY, b"[]"))


def parts_content_id(parts: Sequence[dict[str, Any]]) -> str:
    """A short id of the parts' content (their sha256 values), naming files derived from them."""
    digest = hashlib.sha256("".join(part["sha256"] for part in parts).encode())
    return digest.hexdigest()[:16]
