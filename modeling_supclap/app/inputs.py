"""What a person types or uploads into the demo app, checked: every problem is a :class:`UserFacingError`
whose message is written for the page (no traceback, no internal names).

Uploads are read with soundfile (as everywhere in the project), only their first ``max_seconds`` (a
ten-minute recording is not decoded whole), downmixed and resampled to the model's rate by
:func:`~modeling_supclap.data.audio.decode_audio`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ..data.audio import decode_audio
from ..data.records import BadSampleError

__all__ = ["UserFacingError", "Upload", "parse_labels", "parse_query", "read_upload"]

# Longest text query accepted (characters); the tokenizer truncates to the model's length anyway.
MAX_QUERY_CHARACTERS = 500
MAX_LABELS = 50


class UserFacingError(ValueError):
    """A question the app cannot answer as asked (bad input, an unusable index); ``str(error)`` is the
    message shown in the page (Markdown: names in backticks)."""


@dataclass(frozen=True)
class Upload:
    """An uploaded clip, decoded: ``waveform`` (mono float32 at ``sampling_rate``), the seconds the file
    holds, and whether only its first ``used_seconds`` were kept."""

    name: str
    waveform: np.ndarray
    sampling_rate: int
    file_seconds: float
    used_seconds: float

    @property
    def truncated(self) -> bool:
        return self.used_seconds < self.file_seconds

    def note(self) -> str:
        """A sentence for the page when the clip was cut (else empty)."""
        if not self.truncated:
            return ""
        return (
            f"`{self.name}` is {_duration(self.file_seconds)} long: only its first "
            f"{_duration(self.used_seconds)} were used."
        )


def _duration(seconds: float) -> str:
    if seconds >= 60:
        minutes, rest = divmod(seconds, 60)
        return f"{int(minutes)} min {rest:.0f} s"
    return f"{seconds:.1f} s"


def parse_query(query: str | None) -> str:
    """The query without surrounding blanks; an empty or overlong query is an :class:`UserFacingError`."""
    text = (query or "").strip()
    if not text:
        raise UserFacingError("Type what you are looking for, e.g. 'a dog barks twice'.")
    if len(text) > MAX_QUERY_CHARACTERS:
        raise UserFacingError(
            f"The query is {len(text)} characters long; describe the sound in at most {MAX_QUERY_CHARACTERS}."
        )
    return text


def parse_labels(labels: str | None) -> list[str]:
    """Comma-separated labels, blanks stripped, empty ones and repeats dropped (first spelling kept)."""
    parsed = list(dict.fromkeys(label.strip() for label in (labels or "").split(",") if label.strip()))
    if not parsed:
        raise UserFacingError("Type at least one label (several, separated by commas: 'dog, rain, siren').")
    if len(parsed) > MAX_LABELS:
        raise UserFacingError(f"{len(parsed)} labels given; at most {MAX_LABELS} are scored at once.")
    return parsed


def read_upload(path: str | os.PathLike | None, sampling_rate: int, max_seconds: float) -> Upload:
    """Decode the first ``max_seconds`` of the uploaded file at ``path`` to mono at ``sampling_rate``.

    No file, a file that is not audio (text, an image, a format libsndfile cannot read), a file without
    samples and non-finite samples are :class:`UserFacingError`\\ s naming the file.
    """
    if path is None or not str(path).strip():
        raise UserFacingError("Upload or record a clip first.")
    name = Path(path).name
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, EOFError) as error:
        raise UserFacingError(
            f"`{name}` is not an audio file this app can read. Upload WAV, FLAC, OGG or MP3 audio "
            "(convert other formats, such as M4A/AAC, first)."
        ) from error
    if info.frames <= 0 or info.samplerate <= 0:
        raise UserFacingError(f"`{name}` holds no audio samples.")
    kept_frames = min(info.frames, int(round(max_seconds * info.samplerate)))
    try:
        data, file_rate = sf.read(str(path), frames=kept_frames, dtype="float32", always_2d=True)
        mono = data.mean(axis=1)
        waveform = decode_audio({"array": mono, "sampling_rate": file_rate}, sampling_rate, name)
    except BadSampleError as error:
        raise UserFacingError(f"`{name}` cannot be used: {str(error).removeprefix(f'{name}: ')}") from error
    except (sf.LibsndfileError, RuntimeError, ValueError, EOFError) as error:
        raise UserFacingError(f"`{name}` is damaged: it could not be read to the end ({error}).") from error
    return Upload(
        name=name,
        waveform=waveform,
        sampling_rate=sampling_rate,
        file_seconds=info.frames / info.samplerate,
        used_seconds=kept_frames / info.samplerate,
    )
