"""Audio decoding: any path, bytes or array to a float32 mono waveform at the rate a model wants.

soundfile reads it (no FFmpeg, no torchcodec), channels are averaged, other rates resampled with
``scipy.signal.resample_poly``. Everything unusable is a :class:`~.records.BadSampleError` naming its
source: a missing, empty, corrupt or non-audio file, NaN/inf samples, an implausible sampling rate.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from .records import BadSampleError

__all__ = ["MAX_SAMPLING_RATE", "MIN_SAMPLING_RATE", "decode_audio"]


# Sampling rates decode_audio accepts (telephone speech to high-resolution recordings).
MIN_SAMPLING_RATE, MAX_SAMPLING_RATE = 1000, 768000


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


def _read_range(path: str | os.PathLike, byte_range: Any, source: str) -> bytes:
    offset, size = (int(value) for value in byte_range)
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read(size)
    except OSError as err:
        raise BadSampleError(
            source, f"cannot read bytes {offset}..{offset + size} of {path} ({err})"
        ) from err
    if len(data) != size:
        raise BadSampleError(source, f"{path} ends before byte {offset + size} (truncated?)")
    return data


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
    ``"sampling_rate"`` (already decoded), ``"bytes"`` or ``"path"`` (tried in that order; a ``"path"`` with
    a ``"byte_range"`` ``(offset, size)`` is that range of the file: a clip inside a tar shard). Channels
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
        elif audio.get("path") and audio.get("byte_range") is not None:
            return decode_audio(_read_range(audio["path"], audio["byte_range"], source), target_sr, source)
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
