"""Corpora without captions, for embedding: a plain folder of audio files, and tar shards.

``supclap-embed`` indexes any audio the project can read, captions or not: a folder of sound files with no
metadata at all (every file under it, in path order), or the tar shards ``supclap-shard`` writes, read in
place (each clip a byte range of its shard: nothing is extracted or held in memory).
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import soundfile as sf

from ..records import AudioTextRecord

__all__ = ["AUDIO_FILE_EXTENSIONS", "load_audio_files", "load_shard_records"]

# What libsndfile reads (soundfile's formats), and the usual spellings of the compressed ones.
AUDIO_FILE_EXTENSIONS = tuple(
    sorted(
        (
            {name.lower() for name in sf.available_formats()} - {"raw", "mat4", "mat5"}
        )  # not sound files, mostly
        | {"aif", "aifc", "oga", "opus", "wave"}
    )
)


def load_audio_files(folder: Path) -> list[AudioTextRecord]:
    """One record per audio file under ``folder`` (subfolders too, hidden ones skipped), in path order; the
    key of each is its path relative to ``folder``. Files are not opened here: a corrupt one is named when
    it is decoded."""
    files = sorted(
        path
        for path in folder.rglob("*")
        if path.is_file()
        and path.suffix.lower().lstrip(".") in AUDIO_FILE_EXTENSIONS
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )
    if not files:
        raise ValueError(
            f"{folder}: no audio files in it or its subfolders (looked for "
            f"{', '.join('.' + ext for ext in ('wav', 'flac', 'ogg', 'mp3', 'aiff'))} and the other formats "
            "libsndfile reads) and no metadata.csv or metadata.jsonl"
        )
    return [
        AudioTextRecord(audio=str(path), captions=[], source=path.relative_to(folder).as_posix())
        for path in files
    ]


def load_shard_records(spec: str) -> list[AudioTextRecord]:
    """One record per sample of the local tar shards ``spec`` (a folder, a pattern or a range): its audio
    is ``{"path": shard, "byte_range": (offset, size)}``, its key ``<shard>/<sample key>``, its captions and
    label those of the sample's ``.json`` member."""
    # Imported here: the sources package imports the readers (a module-level import would be circular).
    from ..sources.shards import AUDIO_EXTENSIONS, find_shards

    records: list[AudioTextRecord] = []
    for shard in find_shards(spec):
        if "://" in shard:
            raise ValueError(
                f"{shard}: remote shards cannot be embedded in place; copy them to a local folder"
            )
        samples: dict[str, dict] = {}
        with tarfile.open(shard) as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, _, extension = member.name.partition(".")
                sample = samples.setdefault(key, {})
                if extension.lower() in AUDIO_EXTENSIONS:
                    sample["audio"] = (member.name, member.offset_data, member.size)
                elif extension == "json":
                    handle = tar.extractfile(member)
                    sample["meta"] = json.loads(handle.read()) if handle is not None else {}
        for key, sample in samples.items():
            where = f"{Path(shard).name}/{key}"
            if "audio" not in sample:
                raise ValueError(f"{where}: a sample without an audio member ({', '.join(AUDIO_EXTENSIONS)})")
            meta = sample.get("meta") or {}
            _, offset, size = sample["audio"]
            records.append(
                AudioTextRecord(
                    audio={"path": shard, "byte_range": (offset, size)},
                    captions=[c for c in meta.get("captions") or [] if isinstance(c, str)],
                    label=meta.get("label"),
                    source=where,
                )
            )
    return records
