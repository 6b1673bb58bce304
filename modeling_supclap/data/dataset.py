"""The map-style torch dataset over records: audio decoded in ``__getitem__`` (in DataLoader workers).

:func:`scan_records` decodes every record once up front (the data checks), so bad samples are named
before the first step rather than in a worker hours later.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch

from .audio import decode_audio
from .records import AudioTextRecord, BadSampleError, check_on_bad_sample

__all__ = ["AudioTextDataset", "scan_records"]


class AudioTextDataset(torch.utils.data.Dataset):
    """Map-style dataset that decodes audio in ``__getitem__`` (so in DataLoader worker processes).

    Items are ``{"audio": float32 mono np.ndarray at target_sr, "captions": list[str], "languages":
    list[str] | None (the language of each caption), "label": str | None, "index": i, "epoch": e}``.
    With ``on_bad_sample="skip"`` an undecodable sample yields ``None`` (which :class:`SupClapCollator`
    drops) and is counted in ``num_bad`` / ``bad_sources``; with ``"error"`` it raises
    :class:`BadSampleError`.

    Note: with ``num_workers > 0`` each worker process works on its own copy of the dataset, so the
    counts seen in the main process stay at 0. Run :func:`scan_records` before training to find (and
    drop) bad samples up front.
    """

    def __init__(
        self,
        records: Sequence[AudioTextRecord],
        target_sr: int,
        on_bad_sample: Literal["error", "skip"] = "error",
    ) -> None:
        self.records = list(records)
        self.target_sr = int(target_sr)
        self.on_bad_sample = check_on_bad_sample(on_bad_sample)
        self.num_bad = 0
        self.bad_sources: list[str] = []
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """Record the epoch; items carry it so the collator's caption choice changes per epoch."""
        self.epoch = int(epoch)

    def __getitem__(self, i: int) -> dict[str, Any] | None:
        record = self.records[i]
        try:
            audio = decode_audio(record.audio, self.target_sr, record.source)
        except BadSampleError:
            if self.on_bad_sample == "error":
                raise
            self.num_bad += 1
            self.bad_sources.append(record.source)
            return None
        return {
            "audio": audio,
            "captions": list(record.captions),
            "languages": None if record.languages is None else list(record.languages),
            "label": record.label,
            "index": int(i),
            "epoch": self.epoch,
        }


def scan_records(
    records: Sequence[AudioTextRecord], target_sr: int
) -> tuple[list[AudioTextRecord], list[tuple[AudioTextRecord, str]]]:
    """Decode every record once; return ``(good_records, [(bad_record, error message), ...])``.

    Use it before training (in the main process) to report and drop bad samples deterministically,
    instead of relying on ``on_bad_sample="skip"`` counts, which worker processes do not send back.
    """
    good: list[AudioTextRecord] = []
    bad: list[tuple[AudioTextRecord, str]] = []
    for record in records:
        try:
            if not record.captions or any(not isinstance(c, str) or not c.strip() for c in record.captions):
                raise BadSampleError(record.source, "empty caption")
            decode_audio(record.audio, target_sr, record.source)
        except BadSampleError as err:
            bad.append((record, str(err)))
        else:
            good.append(record)
    return good, bad
