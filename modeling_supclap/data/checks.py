"""Up-front corpus checks run by ``train()`` before the first step: bad samples, duplicates, leakage.

:func:`check_splits` decodes every record of every split once, in the main process (see
:func:`~modeling_supclap.data.collator.scan_records`), so that

* with ``on_bad_sample="error"`` a bad sample stops the run *before* training, with an error that
  names every bad file and row (not hours later, in a DataLoader worker);
* with ``on_bad_sample="skip"`` bad samples are dropped, counted and listed in the report that
  ``train()`` stores in ``metrics.json`` and prints at the end with :func:`format_data_report`
  (counts taken inside DataLoader worker processes would be lost);
* clips whose audio is identical (same file listed twice, or byte-identical copies) are reported:
  within a split they are *allowed* but counted (each copy is a false negative of the other in a
  contrastive batch; several rows per clip is a legitimate layout for several captions), and
  training clips that reappear in the validation or test split are reported as leakage (the
  evaluation numbers of that split are optimistic). Neither stops the run.

Identity is the SHA-1 of the encoded bytes (file contents, ``bytes`` payload, or the decoded array
and its rate), so two different files that merely share a *name* in different split folders are
not duplicates, and a re-encoded copy (WAV vs FLAC) is not detected.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .dataset import scan_records
from .records import AudioTextRecord, BadSamplesError, check_on_bad_sample

__all__ = ["BadSamplesError", "audio_fingerprint", "check_splits", "format_data_report"]

# How many bad samples / duplicate groups the printed report lists (metrics.json has all).
_SHOWN = 10


def _audio_path(audio: Any) -> str | None:
    path = audio.get("path") if isinstance(audio, dict) else audio
    return path if isinstance(path, str) and path else None


def _with_path(record: AudioTextRecord, message: str) -> str:
    """The error message, naming the audio file too when the message does not (e.g. NaN samples)."""
    path = _audio_path(record.audio)
    return message if path is None or path in message else f"{message} [{path}]"


def audio_fingerprint(audio: Any) -> str | None:
    """SHA-1 of a record's encoded audio (file contents, bytes, or array + rate); None if unreadable."""
    digest = hashlib.sha1()
    try:
        if isinstance(audio, dict):
            if audio.get("array") is not None:
                digest.update(np.ascontiguousarray(audio["array"], dtype=np.float32).tobytes())
                digest.update(str(audio.get("sampling_rate")).encode())
                return digest.hexdigest()
            if audio.get("bytes") is not None:
                return audio_fingerprint(bytes(audio["bytes"]))
            return audio_fingerprint(audio.get("path"))
        if isinstance(audio, (bytes, bytearray, memoryview)):
            digest.update(bytes(audio))
            return digest.hexdigest()
        if isinstance(audio, str) and audio:
            with open(Path(audio), "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            return digest.hexdigest()
    except (OSError, TypeError, ValueError):
        return None
    return None


def _fingerprints(records: Sequence[AudioTextRecord]) -> dict[str, list[str]]:
    """fingerprint -> sources of the records with that audio, in record order."""
    groups: dict[str, list[str]] = {}
    for record in records:
        key = audio_fingerprint(record.audio)
        if key is not None:
            groups.setdefault(key, []).append(record.source)
    return groups


def check_splits(
    splits: Mapping[str, Sequence[AudioTextRecord] | None], target_sr: int, on_bad_sample: str = "error"
) -> tuple[dict[str, list[AudioTextRecord] | None], dict[str, Any]]:
    """Scan every split once; return ``(splits without bad records, report)``.

    ``on_bad_sample="error"`` raises :class:`BadSamplesError` at the first split with a bad sample
    (listing all of that split's); ``"skip"`` drops them. A split left with no record becomes
    ``None``. The report (JSON-serialisable) holds ``skipped_samples`` (``total``, ``by_split``,
    ``samples``: split, source, error), ``duplicates`` (per split, groups of sources with identical
    audio), ``train_overlap`` (per evaluation split, groups of train and evaluation sources with
    identical audio) and ``num_records`` (per split, before / after dropping).
    """
    check_on_bad_sample(on_bad_sample)
    clean: dict[str, list[AudioTextRecord] | None] = {}
    skipped: list[dict[str, str]] = []
    by_split: dict[str, int] = {}
    num_records: dict[str, dict[str, int]] = {}
    fingerprints: dict[str, dict[str, list[str]]] = {}
    for split, records in splits.items():
        if records is None:
            clean[split] = None
            continue
        good, bad = scan_records(records, target_sr)
        bad = [(record, _with_path(record, message)) for record, message in bad]
        if bad and on_bad_sample == "error":
            raise BadSamplesError(split, bad)
        by_split[split] = len(bad)
        skipped.extend({"split": split, "source": r.source, "error": message} for r, message in bad)
        num_records[split] = {"loaded": len(records), "used": len(good)}
        fingerprints[split] = _fingerprints(good)
        clean[split] = good or None
    duplicates = {
        split: [sources for sources in groups.values() if len(sources) > 1]
        for split, groups in fingerprints.items()
    }
    train = fingerprints.get("train", {})
    overlap = {
        split: [train[key] + sources for key, sources in groups.items() if key in train]
        for split, groups in fingerprints.items()
        if split != "train"
    }
    report = {
        "on_bad_sample": on_bad_sample,
        "num_records": num_records,
        "skipped_samples": {"total": len(skipped), "by_split": by_split, "samples": skipped},
        "duplicates": {split: groups for split, groups in duplicates.items() if groups},
        "train_overlap": {split: groups for split, groups in overlap.items() if groups},
    }
    return clean, report


def _groups_text(groups: list[list[str]]) -> list[str]:
    lines = ["    - " + " = ".join(group) for group in groups[:_SHOWN]]
    if len(groups) > _SHOWN:
        lines.append(f"    ... and {len(groups) - _SHOWN} more (see metrics.json)")
    return lines


def format_data_report(report: dict[str, Any] | None) -> str:
    """Human-readable summary of :func:`check_splits`'s report ("" when there is nothing to say)."""
    if not report:
        return ""
    lines: list[str] = []
    skipped = report.get("skipped_samples") or {}
    if skipped.get("total"):
        counts = ", ".join(f"{split} {n}" for split, n in skipped["by_split"].items() if n)
        lines.append(f"Skipped {skipped['total']} bad sample(s) (--on_bad_sample skip): {counts}")
        lines += [f"    - [{s['split']}] {s['error']}" for s in skipped["samples"][:_SHOWN]]
        if len(skipped["samples"]) > _SHOWN:
            lines.append(f"    ... and {len(skipped['samples']) - _SHOWN} more (see metrics.json)")
    for split, groups in (report.get("duplicates") or {}).items():
        extra = sum(len(g) - 1 for g in groups)
        lines.append(
            f"WARNING: {extra} record(s) of the {split} split repeat an earlier clip (identical audio); "
            "copies in one batch are each other's negatives:"
        )
        lines += _groups_text(groups)
    for split, groups in (report.get("train_overlap") or {}).items():
        lines.append(
            f"WARNING: {len(groups)} clip(s) of the {split} split are also in the train split (identical "
            f"audio): train/{split} leakage, {split} results are optimistic:"
        )
        lines += _groups_text(groups)
    return "\n".join(lines)
