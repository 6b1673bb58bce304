"""Tar shards (webdataset layout) of an audio-caption corpus: a writer, and where to find them.

A shard ``shard-000000.tar`` holds, per sample, ``<key>.<ext>`` (the audio file's original bytes:
FLAC, WAV, OGG, MP3...; decoded arrays are stored as FLAC) and ``<key>.json`` (``captions``, a list of
strings; ``label``; ``source``, where the sample came from). ``manifest.json`` beside the shards lists
every shard with its sample count, size and sha256, and is written last: a folder with a manifest is
complete. Hugging Face ``datasets`` reads the shards with its ``webdataset`` loader, locally or from
remote storage (``data/streaming.py``).

Write shards from any corpus the project loads (audiofolder, CSV/JSONL, ``save_to_disk``, Hub id) with
``supclap-shard --data SRC --output_dir OUT --shard_size 1000`` (``cli/shard.py``).
"""

from __future__ import annotations

import glob
import io
import json
import os
import re
import tarfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from ...files import file_sha256, publish_folder, temporary_sibling
from ..records import AudioTextRecord, BadSampleError

__all__ = ["MANIFEST", "find_shards", "looks_like_shards", "read_manifest", "write_shards"]

MANIFEST = "manifest.json"
SHARD_FORMAT = "shard-{:06d}.tar"
AUDIO_EXTENSIONS = ("flac", "wav", "ogg", "mp3", "opus", "aiff", "aif")


def _audio_bytes(record: AudioTextRecord) -> tuple[bytes, str]:
    """(the audio's original bytes, their extension); decoded arrays are encoded as FLAC."""
    audio = record.audio
    if isinstance(audio, dict) and audio.get("array") is not None:
        if audio.get("sampling_rate") is None:
            raise BadSampleError(record.source, "audio dict has an 'array' but no 'sampling_rate'")
        buffer = io.BytesIO()
        sf.write(
            buffer, np.asarray(audio["array"], dtype=np.float32), int(audio["sampling_rate"]), format="FLAC"
        )
        return buffer.getvalue(), "flac"
    path = audio.get("path") if isinstance(audio, dict) else audio if isinstance(audio, str) else None
    data = audio.get("bytes") if isinstance(audio, dict) else audio if isinstance(audio, bytes) else None
    if data is None:
        if not path or not Path(path).is_file():
            raise BadSampleError(record.source, f"audio file not found: {path}")
        data = Path(path).read_bytes()
    extension = Path(path).suffix.lower().lstrip(".") if path else ""
    if extension not in AUDIO_EXTENSIONS:
        extension = _sniff_extension(bytes(data), record.source)
    return bytes(data), extension


def _sniff_extension(data: bytes, source: str) -> str:
    try:
        kind = sf.info(io.BytesIO(data)).format.lower()
    except (sf.LibsndfileError, RuntimeError, TypeError) as error:
        raise BadSampleError(source, f"audio bytes are not a format libsndfile reads ({error})") from error
    return {"wav": "wav", "flac": "flac", "ogg": "ogg", "mp3": "mp3", "aiff": "aiff"}.get(kind, "wav")


def _add_member(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(payload), 0, 0o644  # fixed metadata: same input, same bytes
    tar.addfile(info, io.BytesIO(payload))


def write_shards(
    records: Iterable[AudioTextRecord],
    out_dir: str | os.PathLike,
    shard_size: int = 1000,
    key_prefix: str = "",
) -> dict[str, Any]:
    """Write ``records`` as tar shards of ``shard_size`` samples into ``out_dir``; returns the manifest.

    Keys are ``<key_prefix><running number, 9 digits>``: unique, and in the order of ``records``. The
    folder is written into a temporary sibling and renamed into place (an existing one is replaced).
    """
    if shard_size < 1:
        raise ValueError(f"--shard_size must be >= 1, got {shard_size}")
    out_dir = Path(out_dir)
    tmp = temporary_sibling(out_dir, "write")
    shards: list[dict[str, Any]] = []
    tar: tarfile.TarFile | None = None
    count = 0
    try:
        for index, record in enumerate(records):
            if index % shard_size == 0:
                if tar is not None:
                    tar.close()
                shards.append({"file": SHARD_FORMAT.format(len(shards)), "num_samples": 0})
                tar = tarfile.open(tmp / shards[-1]["file"], "w", format=tarfile.USTAR_FORMAT)
            assert tar is not None
            key = f"{key_prefix}{index:09d}"
            data, extension = _audio_bytes(record)
            meta = {"captions": list(record.captions), "label": record.label, "source": record.source}
            if record.languages is not None:
                meta["caption_languages"] = list(record.languages)
            _add_member(tar, f"{key}.{extension}", data)
            _add_member(tar, f"{key}.json", json.dumps(meta, ensure_ascii=False).encode("utf-8"))
            shards[-1]["num_samples"] += 1
            count += 1
        if tar is not None:
            tar.close()
        if not count:
            raise ValueError("no samples to write")
        for shard in shards:
            path = tmp / shard["file"]
            shard.update(bytes=path.stat().st_size, sha256=file_sha256(path))
        manifest = {"format": "webdataset", "num_samples": count, "num_shards": len(shards), "shards": shards}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")  # last: marks the folder complete
        publish_folder(tmp, out_dir)
    except BaseException:
        if tar is not None:
            tar.close()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def read_manifest(folder: str | os.PathLike) -> dict[str, Any] | None:
    path = Path(folder) / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else None


_BRACE_RANGE = re.compile(r"\{(\d+)\.\.(\d+)\}")


def expand_braces(spec: str) -> list[str]:
    """``shard-{000..002}.tar`` -> ``shard-000.tar, shard-001.tar, shard-002.tar`` (webdataset's notation)."""
    match = _BRACE_RANGE.search(spec)
    if match is None:
        return [spec]
    first, last = match.group(1), match.group(2)
    width = len(first) if first.startswith("0") else 0
    names = [
        f"{spec[: match.start()]}{i:0{width}d}{spec[match.end() :]}" for i in range(int(first), int(last) + 1)
    ]
    return [expanded for name in names for expanded in expand_braces(name)]


def find_shards(spec: str) -> list[str]:
    """The shard files of ``spec``: a folder of shards, a glob pattern, a ``{000..099}`` range, a URL.

    Remote shards (``s3://``, ``https://``...) are passed through as given (ranges expanded); local
    ones must exist.
    """
    if "://" in spec:
        return expand_braces(spec)
    if _BRACE_RANGE.search(spec):
        files = expand_braces(spec)
        missing = [f for f in files if not Path(f).is_file()]
        if missing:
            raise FileNotFoundError(f"{spec}: {len(missing)} shard(s) not found, e.g. {missing[0]}")
        return files
    folder = Path(spec).expanduser()
    if folder.is_dir():
        manifest = read_manifest(folder)
        names = (
            [s["file"] for s in manifest["shards"]]
            if manifest
            else sorted(p.name for p in folder.glob("*.tar"))
        )
        files = [str(folder / name) for name in names]
    else:
        files = sorted(glob.glob(str(folder)))
    if not files:
        raise FileNotFoundError(
            f"{spec}: no .tar shards found (a shard folder, or a pattern like 'out/shard-*.tar')"
        )
    return files


def looks_like_shards(spec: str | None) -> bool:
    """Whether ``spec`` names tar shards (a folder of them, a ``*.tar`` pattern or file)."""
    if not spec:
        return False
    if spec.endswith(".tar") or "*.tar" in spec or _BRACE_RANGE.search(spec):
        return True
    folder = Path(spec).expanduser()
    return folder.is_dir() and (read_manifest(folder) is not None or any(folder.glob("*.tar")))
