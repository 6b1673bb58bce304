"""Folders that appear complete or not at all: write into a temporary sibling, then rename; and a file's
SHA-256 (shard manifests, index parts, the checkpoint a converted model came from).

Used by everything that writes a folder a later run reads back: the demo corpus, cached
processors and training checkpoints. A rename within one filesystem is atomic, so a reader (or a
run killed half-way) never sees a half-written folder under the final name.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["file_sha256", "fsync_tree", "publish_folder", "staged_folder", "temporary_sibling"]


def file_sha256(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """The hex SHA-256 of a file, read in chunks (a checkpoint may be gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def temporary_sibling(target: str | os.PathLike, tag: str = "tmp") -> Path:
    """A new empty folder ``.<name>.<tag>-<pid>-<random>`` next to ``target`` (same filesystem)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.{tag}-{os.getpid()}-", dir=target.parent))


def fsync_tree(folder: str | os.PathLike) -> None:
    """Flush every file under ``folder`` to disk (before publishing something a crash must not lose)."""
    for path in Path(folder).rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


def publish_folder(tmp: str | os.PathLike, target: str | os.PathLike, *, keep_existing: bool = False) -> Path:
    """Rename the finished folder ``tmp`` to ``target``; returns ``target``.

    If ``target`` exists: with ``keep_existing`` it is kept and ``tmp`` deleted (another process
    finished the same, equivalent folder first); otherwise it is replaced, by moving it aside
    first (a non-empty folder cannot be renamed over) and deleting it afterwards.
    """
    tmp, target = Path(tmp), Path(target)
    if target.exists() and keep_existing:
        shutil.rmtree(tmp, ignore_errors=True)
        return target
    old = None
    if target.exists():
        old = temporary_sibling(target, "old")
        os.replace(target, old / target.name)
    try:
        os.replace(tmp, target)
    except OSError:
        if not (keep_existing and target.exists()):  # lost a race for a folder we would have kept
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


@contextmanager
def staged_folder(target: str | os.PathLike, tag: str = "tmp") -> Iterator[Path]:
    """A temporary sibling of ``target`` to write into; published as ``target`` if the block succeeds, and
    removed if it raises (nothing is left under either name)::

        with staged_folder("out/model") as folder:
            model.save_pretrained(folder)
    """
    tmp = temporary_sibling(target, tag)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    publish_folder(tmp, target)
