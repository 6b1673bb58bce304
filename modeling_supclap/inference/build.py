"""``supclap-embed``'s engine: a corpus and a model in, an embedding index out (``store.py`` says its layout).

How the work flows: clips are numbered in corpus order and cut into parts of ``part_size`` clips; process
``r`` of ``n`` (``accelerate launch``) takes parts ``r, r + n, ...`` that are not on disk yet. DataLoader
workers decode, resample, cut each clip into windows (the long-audio policy) and make the windows' model
inputs, or, with ``log_mel_on_device``, stop before CLAP's log-mel, which the model's device computes. The
main thread forwards windows in fixed-shape chunks (``evaluation/encode.py``), pools them per clip and writes
each part as soon as its last clip is embedded. When every process is done, the main process writes the
manifest.

What makes it resumable and reproducible: a part is a fixed range of clips, written atomically, so a rerun
of the same command finds the finished parts and embeds only the others (a killed run loses at most the
parts being written); ``settings.json``, written first, holds everything that decides the index's content
(model fingerprint, policy, data, part size, precision), and a rerun with other settings is refused rather
than mixed in; a clip's embedding does not depend on the batch, the workers or the process that computed it,
so one process and two give the same parts.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.audio import decode_audio
from ..data.features import audio_model_inputs
from ..data.long_audio import LongAudioPolicy, audio_window_samples
from ..data.records import AudioTextRecord, BadSampleError, check_on_bad_sample
from ..data.workers import ignore_stop_signals
from ..evaluation.encode import embed_window_inputs, pool_windows
from ..files import file_sha256
from .store import (
    EMBEDDING_DTYPES,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    PARTS,
    SETTINGS,
    IndexRows,
    part_path,
    read_json,
    read_part,
    write_json_atomically,
    write_part,
)

logger = logging.getLogger(__name__)

__all__ = ["ClipDataset", "EmbeddingJob", "build_index", "index_settings"]

MIXED_PRECISION = {"no": None, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class EmbeddingJob:
    """What to embed and how. ``data_root``: the folder keys are relative to (a corpus folder), if any;
    ``data``: how the manifest describes the corpus (``location``, ``split``)."""

    records: Sequence[AudioTextRecord]
    output_dir: Path
    data: dict[str, Any]
    data_root: Path | None = None
    long_audio: LongAudioPolicy = LongAudioPolicy()
    batch_size: int = 32
    window_batch_size: int = 32
    part_size: int = 1024
    num_workers: int = 2
    seed: int = 0
    mixed_precision: str = "no"
    embedding_dtype: str = "float32"
    log_mel_on_device: bool = False
    on_bad_sample: str = "skip"
    overwrite_output_dir: bool = False

    def __post_init__(self) -> None:
        check_on_bad_sample(self.on_bad_sample)
        for name in ("batch_size", "window_batch_size", "part_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_workers < 0:
            raise ValueError(f"dataloader_num_workers must be >= 0, got {self.num_workers}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"mixed_precision must be one of {', '.join(MIXED_PRECISION)}")
        if self.embedding_dtype not in EMBEDDING_DTYPES:
            raise ValueError(f"embedding_dtype must be one of {', '.join(EMBEDDING_DTYPES)}")
        if not self.records:
            raise ValueError(f"{self.data.get('location')}: no clips to embed")

    @property
    def num_parts(self) -> int:
        return -(-len(self.records) // self.part_size)

    def part_ids(self, part: int) -> range:
        return range(part * self.part_size, min((part + 1) * self.part_size, len(self.records)))


def _key_and_path(record: AudioTextRecord, root: Path | None) -> tuple[str, str | None]:
    """The clip's key (its path relative to the corpus folder, else where it came from) and audio file."""
    audio = record.audio
    path = audio if isinstance(audio, str) else None
    if isinstance(audio, dict) and audio.get("path") and audio.get("byte_range") is None:
        path = audio["path"]
    if not path:
        return record.source, None
    absolute = os.path.abspath(path)
    if root is not None:
        relative = os.path.relpath(absolute, os.path.abspath(root))
        if not relative.startswith(".."):
            return Path(relative).as_posix(), absolute
    return str(path), absolute


class ClipDataset(torch.utils.data.Dataset):
    """Clip ``i`` decoded, resampled, cut into windows and made into model inputs (in DataLoader workers).

    An item is ``{"id", "inputs" (the windows' model inputs, or the waveforms that the device turns into
    log-mel), "num_windows", "duration"}``, or ``{"id", "error"}`` for a clip that cannot be decoded.
    ``random`` crops draw from a generator seeded by ``(seed, id)``: the same crop whoever computes it.
    """

    def __init__(
        self,
        records: Sequence[AudioTextRecord],
        processor: Any,
        long_audio: LongAudioPolicy,
        seed: int = 0,
        log_mel_on_device: bool = False,
    ) -> None:
        self.records, self.processor, self.long_audio = records, processor, long_audio
        self.seed, self.log_mel_on_device = seed, log_mel_on_device
        self.sampling_rate = int(processor.feature_extractor.sampling_rate)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, clip_id: int) -> dict[str, Any]:
        record = self.records[clip_id]
        try:
            audio = decode_audio(record.audio, self.sampling_rate, record.source)
        except BadSampleError as error:
            reason = str(error).removeprefix(f"{record.source}: ")
            return {"id": clip_id, "error": reason}
        windows = self.long_audio.windows(audio, self.processor.feature_extractor)
        state = np.random.get_state()
        np.random.seed(np.random.SeedSequence([self.seed, clip_id]).generate_state(1)[0])
        try:
            inputs = audio_model_inputs(self.processor, windows, log_mel_on_device=self.log_mel_on_device)
        finally:
            np.random.set_state(state)
        return {
            "id": clip_id,
            "inputs": inputs,
            "num_windows": len(windows),
            "duration": audio.shape[0] / self.sampling_rate,
        }


class PartBatches(torch.utils.data.Sampler[list[int]]):
    """Batches of clip ids, part after part; a batch never spans two parts."""

    def __init__(self, job: EmbeddingJob, parts: Sequence[int]) -> None:
        self.job, self.parts = job, list(parts)

    def __iter__(self) -> Iterator[list[int]]:
        for part in self.parts:
            ids = self.job.part_ids(part)
            for start in range(0, len(ids), self.job.batch_size):
                yield list(ids[start : start + self.job.batch_size])

    def __len__(self) -> int:
        return sum(-(-len(self.job.part_ids(part)) // self.job.batch_size) for part in self.parts)


def _items(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return batch


def index_settings(job: EmbeddingJob, model_identity: dict[str, Any], processor: Any) -> dict[str, Any]:
    """Everything that decides the index's content (a rerun must have the same to resume it)."""
    import hashlib

    keys = "\n".join(_key_and_path(record, job.data_root)[0] for record in job.records)
    extractor = processor.feature_extractor
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model_identity,
        "processor": {
            "feature_extractor": type(extractor).__name__,
            "sampling_rate": int(extractor.sampling_rate),
            "window_samples": audio_window_samples(extractor),
        },
        "long_audio": job.long_audio.describe(),
        "window_batch_size": job.window_batch_size,
        "seed": job.seed,
        "mixed_precision": job.mixed_precision,
        "embedding_dtype": job.embedding_dtype,
        "data": {
            **job.data,
            "num_clips": len(job.records),
            "keys_sha256": hashlib.sha256(keys.encode()).hexdigest(),
        },
        "part_size": job.part_size,
    }


def _differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    found = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            found.append(f"{prefix}{key}: {a!r} then, {b!r} now")
    return found


def _prepare_output_dir(job: EmbeddingJob, settings: dict[str, Any]) -> str:
    """Make ``output_dir`` ready on the main process: ``"new"``, ``"resume"`` or ``"complete"``."""
    folder = job.output_dir
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--output_dir {folder} is a file")
    if folder.exists() and job.overwrite_output_dir:
        shutil.rmtree(folder)
    settings = _json_normalised(settings)
    if folder.is_dir():
        previous = read_json(folder / SETTINGS)
        if previous is None:
            if any(folder.iterdir()):
                raise ValueError(
                    f"--output_dir {folder} exists and holds something other than an embedding index: choose "
                    "another folder, or pass --overwrite_output_dir to replace it"
                )
        elif previous != settings:
            differences = "; ".join(_differences(previous, settings))
            raise ValueError(
                f"--output_dir {folder} holds an index made with other settings ({differences}): rerun with "
                "the same ones to complete it, choose another folder, or pass --overwrite_output_dir"
            )
        else:
            for stale in (folder / PARTS).glob(".part-*.tmp-*"):  # a killed run's unfinished part
                stale.unlink()
            return "complete" if (folder / MANIFEST).is_file() else "resume"
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomically(folder / SETTINGS, settings)
    return "new"


def _json_normalised(payload: dict[str, Any]) -> dict[str, Any]:
    import json

    return json.loads(json.dumps(payload, sort_keys=True, default=str))


def _on_every_process(state: Any, compute: Any) -> Any:
    """``compute()`` on the main process, its result (or its error) handed to every process: an error on
    the main process then stops every process, instead of leaving the others waiting at a barrier."""
    outcome: list[Any] = [None]
    if state.is_main_process:
        try:
            outcome = [("ok", compute())]
        except (ValueError, OSError) as error:
            outcome = [("error", error)]
    if state.num_processes > 1:
        torch.distributed.broadcast_object_list(outcome, src=0)
    kind, value = outcome[0]
    if kind == "error":
        raise value
    return value


@torch.no_grad()
def build_index(
    job: EmbeddingJob, model: torch.nn.Module, processor: Any, model_identity: dict[str, Any], state: Any
) -> dict[str, Any] | None:
    """Embed ``job.records`` into ``job.output_dir`` with this process's share of the parts (``state``: an
    accelerate ``PartialState``); returns the manifest (on the main process; None elsewhere)."""
    settings = index_settings(job, model_identity, processor)
    status = _on_every_process(state, lambda: _prepare_output_dir(job, settings))
    done = {part for part in range(job.num_parts) if part_path(job.output_dir, part).is_file()}
    mine = [
        p for p in range(job.num_parts) if p % state.num_processes == state.process_index and p not in done
    ]
    if state.is_main_process:
        what = {"new": "new index", "resume": "resuming", "complete": "already complete"}[status]
        print(
            f"{job.output_dir}: {what}: {len(job.records)} clips in {job.num_parts} part(s) of "
            f"{job.part_size}, {len(done)} done; {state.num_processes} process(es)",
            flush=True,
        )
    started = time.perf_counter()
    embedded_here = _embed_parts(job, model, processor, mine, state) if mine else 0
    state.wait_for_everyone()
    if not state.is_main_process:
        return None
    manifest = _write_manifest(job, settings)
    seconds = time.perf_counter() - started
    if status != "complete":
        print(
            f"embedded {manifest['num_embedded']} clips ({manifest['num_skipped']} skipped) into "
            f"{job.output_dir}; this run: {embedded_here} clips on the main process in {seconds:.1f} s",
            flush=True,
        )
    return manifest


def _embed_parts(
    job: EmbeddingJob, model: torch.nn.Module, processor: Any, parts: list[int], state: Any
) -> int:
    """Embed and write ``parts``; returns the clips this process embedded."""
    model.eval()
    dataset = ClipDataset(job.records, processor, job.long_audio, job.seed, job.log_mel_on_device)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=PartBatches(job, parts),
        num_workers=job.num_workers,
        collate_fn=_items,
        worker_init_fn=ignore_stop_signals,
        persistent_workers=False,
    )
    fixed_shape = audio_window_samples(processor.feature_extractor) is not None
    dim = int(model.config.projection_dim)
    device = next(model.parameters()).device
    autocast = MIXED_PRECISION[job.mixed_precision]
    total = sum(len(job.part_ids(part)) for part in parts)
    bar = tqdm(
        total=total,
        unit="clip",
        desc=f"embedding (process {state.process_index})" if state.num_processes > 1 else "embedding",
        disable=not state.is_main_process,
        smoothing=0.1,
    )
    rows, part, count = IndexRows(), None, 0
    for items in loader:
        batch_part = items[0]["id"] // job.part_size
        if part is not None and batch_part != part:
            write_part(part_path(job.output_dir, part), rows, dim, job.embedding_dtype)
            rows = IndexRows()
        part = batch_part
        good = []
        for item in items:
            key, path = _key_and_path(job.records[item["id"]], job.data_root)
            if "error" in item:
                if job.on_bad_sample == "error":
                    raise BadSampleError(key, f"{item['error']} (--on_bad_sample skip skips it)")
                logger.warning("skipped a bad file: %s: %s", key, item["error"])
                rows.skip(item["id"], key, item["error"])
            else:
                good.append((item, key, path))
        if good:
            with torch.autocast(device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
                embeds = _embed_items(model, processor, [item for item, _, _ in good], job, fixed_shape)
            for (item, key, path), embedding in zip(good, embeds.numpy()):
                record = job.records[item["id"]]
                row = {
                    "id": item["id"],
                    "key": key,
                    "path": path,
                    "duration": item["duration"],
                    "num_windows": item["num_windows"],
                    "captions": list(record.captions),
                    "label": None if record.label is None else str(record.label),
                }
                rows.add(row, embedding)
        count += len(good)
        bar.update(len(items))
    if part is not None:
        write_part(part_path(job.output_dir, part), rows, dim, job.embedding_dtype)
    bar.close()
    return count


def _embed_items(
    model: torch.nn.Module, processor: Any, items: list[dict[str, Any]], job: EmbeddingJob, fixed_shape: bool
) -> torch.Tensor:
    """Pooled embeddings of ``items``: every window of the batch in fixed-shape chunks (one clip at a time
    where the extractor takes any length: its inputs vary in shape)."""
    counts = [item["num_windows"] for item in items]
    if fixed_shape:
        inputs = {name: torch.cat([item["inputs"][name] for item in items]) for name in items[0]["inputs"]}
        windows = embed_window_inputs(model, processor, inputs, job.window_batch_size)
    else:
        windows = torch.cat([embed_window_inputs(model, processor, item["inputs"], 1) for item in items])
    return pool_windows(windows, counts)


def _write_manifest(job: EmbeddingJob, settings: dict[str, Any]) -> dict[str, Any]:
    """Join the parts into ``manifest.json`` (written last: the folder is then an index)."""
    parts, skipped, embedded = [], [], 0
    for part in range(job.num_parts):
        path = part_path(job.output_dir, part)
        if not path.is_file():
            raise RuntimeError(f"{path} is missing after every process finished")
        table, part_skipped = read_part(path)
        parts.append(
            {
                "file": path.relative_to(job.output_dir).as_posix(),
                "num_rows": table.num_rows,
                "num_skipped": len(part_skipped),
                "sha256": file_sha256(path),
            }
        )
        skipped += part_skipped
        embedded += table.num_rows
    manifest = {
        **_json_normalised(settings),
        "num_parts": job.num_parts,
        "parts": parts,
        "num_embedded": embedded,
        "num_skipped": len(skipped),
        "skipped": skipped,
    }
    write_json_atomically(job.output_dir / MANIFEST, manifest)
    return manifest
