"""Streaming training data: tar shards or a Hub dataset read with ``datasets`` streaming, never listed.

:func:`open_stream` opens ``--train_data`` with ``datasets.load_dataset(..., streaming=True)``: tar
shards (local or remote) through its ``webdataset`` loader, anything else (a Hub dataset id, data
files) through its own builder; audio stays undecoded bytes. :class:`ShardedAudioStream` (a torch
``IterableDataset``) turns it into decoded items, and :class:`StreamingSource` is the training source
the loop consumes (``training_data.py`` builds it).

What each process and DataLoader worker reads, per epoch: the shards in a permutation seeded by
``seed + epoch``, dealt round-robin to the ``num_processes x num_workers`` streams (process ``r``,
worker ``w`` is stream ``r + num_processes * w``), so every sample is read exactly once per epoch by
exactly one stream, also when the shard count does not divide evenly; then a shuffle buffer over the
raw rows with a generator seeded by ``(seed, epoch, stream)``. The order is a pure function of those,
which is what makes resuming exact (below).

Bad samples are skipped in the stream, never decoded up front: a member that does not decode is
counted with its shard and key; a shard that breaks off (truncated tar) stops the run naming the shard,
or with ``--on_bad_sample skip`` is counted and the next shard is read. The counts travel with the
batches to the main process and end up in ``metrics.json``.

Resuming mid-epoch: the DataLoader is torchdata's ``StatefulDataLoader``, which snapshots every
worker's dataset state with each batch it hands out and restores the worker order; a worker's state
here is just ``(epoch, rows taken from its shuffle buffer)``. A resumed worker regenerates the same
sequence and fast-forwards through those rows without decoding them (the shuffle buffer refills
exactly as before), so the samples before and after a restart are one epoch with no repeats and no
losses. ``IterableDataset.state_dict`` of ``datasets`` alone would drop the shuffle buffer's
contents on resume, and Accelerate's dataloader wrappers would dispatch batches from the main
process instead of letting every process read its own shards.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..audio import decode_audio
from ..captions import detect_caption_columns
from ..collator import SupClapCollator
from ..records import AudioTextRecord, BadSampleError, ColumnSpec, check_on_bad_sample
from ..rows import AUDIO_COLUMN_NAMES, row_to_record
from ..workers import ignore_stop_signals
from .base import TrainingSource
from .shards import AUDIO_EXTENSIONS, find_shards, looks_like_shards, read_manifest

if TYPE_CHECKING:
    from accelerate import Accelerator

logger = logging.getLogger(__name__)

__all__ = ["OpenedStream", "ShardedAudioStream", "StreamingSource", "open_stream", "stream_records"]


@dataclass
class OpenedStream:
    """A streaming ``datasets.IterableDataset`` and how to read its rows as records."""

    dataset: Any  # datasets.IterableDataset, audio undecoded
    name: str
    shard_names: list[str]
    num_samples: int | None
    columns: ColumnSpec  # caption columns known (detected or given)
    webdataset: bool

    @property
    def num_shards(self) -> int:
        return len(self.shard_names)

    def record(self, row: dict[str, Any], where: str) -> AudioTextRecord:
        if self.webdataset:
            meta = row.get("json") or {}
            audio = next((row[ext] for ext in AUDIO_EXTENSIONS if row.get(ext) is not None), None)
            if audio is None:
                raise BadSampleError(where, "no audio member (." + ", .".join(AUDIO_EXTENSIONS) + ")")
            captions = meta.get("captions")
            if isinstance(captions, list) and isinstance(meta.get("caption_languages"), list):
                # Shards keep each caption's language (write_shards): as {language: caption} mappings.
                captions = [{lang: text} for lang, text in zip(meta["caption_languages"], captions)]
            row = {"audio": audio, "captions": captions, "label": meta.get("label")}
        return row_to_record(row, where, self.columns)


def open_stream(
    spec: str, split: str = "train", columns: ColumnSpec | None = None, **column_settings: Any
) -> OpenedStream:
    """``spec`` (tar shards: a folder, a pattern, remote URLs; or a Hub dataset id) as a stream.

    ``columns`` (or its fields as keywords) as ``load_records`` reads them; shards written by
    ``write_shards`` have their own layout (``audio``, ``captions``, ``label``) and only the caption
    languages apply. A streamed row lacking every selected language is a bad sample (skipped and counted
    as met).
    """
    from datasets import Audio, Features, Value, load_dataset

    if columns is None:
        columns = ColumnSpec(**column_settings)
    elif column_settings:
        raise TypeError("open_stream takes a ColumnSpec or column keywords, not both")
    if looks_like_shards(spec) or "://" in spec:
        files = find_shards(spec)
        probe = load_dataset("webdataset", data_files={split: files}, split=split, streaming=True)
        # Audio members as raw bytes: datasets' Audio feature would need torchcodec and FFmpeg.
        features = Features(
            {name: Value("binary") if isinstance(f, Audio) else f for name, f in probe.features.items()}
        )
        dataset = load_dataset(
            "webdataset", data_files={split: files}, split=split, streaming=True, features=features
        )
        manifest = read_manifest(spec) if not ("*" in spec or "://" in spec) else None
        shard_columns = dataclasses.replace(
            columns,
            audio_column="audio",
            caption_columns=("captions",),
            label_column="label",
            keep_columns=(),
        )
        num_samples = manifest["num_samples"] if manifest else None
        return OpenedStream(dataset, spec, files, num_samples, shard_columns, webdataset=True)
    dataset = load_dataset(spec, split=split, streaming=True)
    features = dataset.features or {}
    audio = next(
        (c for c in (columns.audio_column, *AUDIO_COLUMN_NAMES) if c in features), columns.audio_column
    )
    if isinstance(features.get(audio), Audio):
        dataset = dataset.cast_column(audio, Audio(decode=False))
    names = [f"{spec} [{split}] shard {i}" for i in range(dataset.n_shards)]
    caption_columns = columns.caption_columns or detect_caption_columns(features.keys(), spec)
    columns = dataclasses.replace(columns, audio_column=audio, caption_columns=tuple(caption_columns))
    return OpenedStream(dataset, spec, names, None, columns, webdataset=False)


def _rows_of(dataset: Any) -> Iterator[dict[str, Any]]:
    """The rows of a streaming ``datasets.IterableDataset``, whoever iterates it.

    Iterated in a DataLoader worker, ``datasets`` would deal the dataset's shards among the workers
    itself; here each worker has already been given its own shards, so iterate the prepared example
    iterable directly (the features, undecoded audio included, are applied there).
    """
    prepare = getattr(dataset, "_prepare_ex_iterable_for_iteration", None)
    if prepare is None:  # another datasets version: fine outside workers
        yield from dataset
        return
    for _, example in prepare():
        yield example


def _shuffled(rows: Iterator[Any], buffer_size: int, rng: np.random.Generator) -> Iterator[Any]:
    """A shuffle buffer: keep ``buffer_size`` rows, emit a random one as each new row arrives."""
    buffer: list[Any] = []
    for row in rows:
        if len(buffer) < buffer_size:
            buffer.append(row)
            continue
        index = int(rng.integers(buffer_size))
        yield buffer[index]
        buffer[index] = row
    rng.shuffle(buffer)
    yield from buffer


class ShardedAudioStream(torch.utils.data.IterableDataset):
    """Decoded items of one process's share of an :class:`OpenedStream` (see the module docstring).

    Items are :class:`~modeling_supclap.data.collator.AudioTextDataset`-like dicts (``audio`` at
    ``target_sr``, ``captions``, ``label``, ``index``: a stable id of the sample, ``epoch``,
    ``source``: shard and key) plus ``_bad``: bad samples met since the previous item.
    """

    def __init__(
        self,
        stream: OpenedStream,
        target_sr: int,
        seed: int = 0,
        shuffle_buffer_size: int = 1000,
        on_bad_sample: str = "error",
    ) -> None:
        super().__init__()
        self.stream, self.target_sr, self.seed = stream, int(target_sr), int(seed)
        self.shuffle_buffer_size = max(1, int(shuffle_buffer_size))
        self.on_bad_sample = check_on_bad_sample(on_bad_sample)
        self.rank, self.world_size = 0, 1
        self.epoch = 0
        self._resume: dict[str, int] | None = None  # a worker's restored position
        self._taken = 0  # rows taken from the shuffle buffer in this epoch (this worker)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def set_process(self, rank: int, world_size: int) -> None:
        if self.stream.num_shards < world_size:
            raise ValueError(
                f"{self.stream.name} has {self.stream.num_shards} shard(s) for {world_size} processes: each "
                "process reads whole shards, so write more, smaller ones "
                "(python -m modeling_supclap.data.sources.shards ... --shard_size N)"
            )
        self.rank, self.world_size = rank, world_size

    def shards_for(self, stream_id: int, num_streams: int, epoch: int) -> list[int]:
        """Shard indices of one stream in ``epoch`` (a seeded permutation dealt round-robin)."""
        order = np.random.default_rng([self.seed, epoch]).permutation(self.stream.num_shards)
        return order[stream_id::num_streams].tolist()

    def _rows(self, shards: list[int]) -> Iterator[tuple[str, dict[str, Any]]]:
        """(where, raw row) of ``shards`` in order; a shard that breaks off is an error or a skip."""
        dataset, names = self.stream.dataset, self.stream.shard_names
        for shard in shards:
            position = 0
            try:
                for row in _rows_of(dataset.shard(num_shards=self.stream.num_shards, index=shard)):
                    key = row.get("__key__", f"row {position}")
                    position += 1
                    yield f"{names[shard]}:{key}", row
            except Exception as error:  # tarfile.ReadError, OSError, ... from the reader
                message = (
                    f"shard {names[shard]} breaks off after {position} sample(s) "
                    f"({type(error).__name__}: {error})"
                )
                if self.on_bad_sample == "error":
                    raise BadSampleError(
                        names[shard], message + "; pass --on_bad_sample skip to skip it"
                    ) from error
                yield f"{names[shard]}:<rest of shard>", {"_broken": message}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        worker = torch.utils.data.get_worker_info()
        worker_id, num_workers = (worker.id, worker.num_workers) if worker else (0, 1)
        stream_id, num_streams = self.rank + self.world_size * worker_id, self.world_size * num_workers
        resume = self._resume if self._resume and self._resume.get("epoch") == self.epoch else None
        skip = resume["taken"] if resume else 0
        rng = np.random.default_rng([self.seed, self.epoch, stream_id])
        rows = _shuffled(
            self._rows(self.shards_for(stream_id, num_streams, self.epoch)), self.shuffle_buffer_size, rng
        )
        bad: list[dict[str, str]] = []
        self._taken = 0
        for where, row in rows:
            self._taken += 1
            if self._taken <= skip:  # resumed: fast-forward without decoding
                continue
            item = self._item(where, row, bad)
            if item is not None:
                item["_bad"], bad = bad, []
                yield item
        if bad:  # bad samples after the last good one still reach the count
            yield {"_bad": bad}

    def _item(self, where: str, row: dict[str, Any], bad: list[dict[str, str]]) -> dict[str, Any] | None:
        if "_broken" in row:
            bad.append({"source": where, "error": row["_broken"]})
            return None
        try:
            record = self.stream.record(row, where)
            audio = decode_audio(record.audio, self.target_sr, where)
        except (BadSampleError, ValueError) as error:
            bad.append({"source": where, "error": str(error)})
            return None
        return {
            "audio": audio,
            "captions": record.captions,
            "languages": record.languages,
            "label": record.label,
            "index": zlib.crc32(where.encode()),  # stable per sample: seeds its caption choice and crop
            "epoch": self.epoch,
            "source": where,
        }

    # StatefulDataLoader calls these in each worker (and hands the states back on resume).
    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "taken": self._taken}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume = dict(state)
        self.epoch = int(state["epoch"])


class _StreamCollator:
    """The SupClapCollator, plus the bad samples the items carried (``_bad_samples``) and the
    batch's sample names (``_sources``), both taken off again by :class:`StreamingSource`."""

    def __init__(self, collator: SupClapCollator) -> None:
        self.collator = collator

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        bad = [entry for item in items for entry in item.pop("_bad", [])]
        good = [item for item in items if "audio" in item]
        batch = self.collator(good) if good else {}
        batch["_bad_samples"] = bad
        batch["_sources"] = [item["source"] for item in good]
        return batch


class StreamingSource(TrainingSource):
    """The training source of a stream (see the module docstring): each process reads its own shards."""

    def __init__(
        self, dataset: ShardedAudioStream, collator: SupClapCollator, batch_size: int, num_workers: int = 0
    ) -> None:
        self.dataset, self.collator = dataset, collator
        self.batch_size, self.num_workers = batch_size, num_workers
        self.num_samples = dataset.stream.num_samples
        self.epoch = 0
        self.bad_samples: list[dict[str, str]] = []
        # Set to a list to record (epoch, sample names) of every batch handed out (tests, debugging).
        self.sample_log: list[tuple[int, list[str]]] | None = None
        self._loader: Any = None
        self._device: torch.device | None = None

    def prepare(self, accelerator: Accelerator) -> None:
        from torchdata.stateful_dataloader import StatefulDataLoader

        self.dataset.set_process(accelerator.process_index, accelerator.num_processes)
        self._loader = StatefulDataLoader(
            self.dataset,
            batch_size=self.batch_size,
            collate_fn=_StreamCollator(self.collator),
            num_workers=self.num_workers,
            # Its own generator: starting an iterator must not draw from the global RNG (dropout).
            generator=torch.Generator().manual_seed(self.dataset.seed),
            worker_init_fn=ignore_stop_signals,
        )
        self._device = accelerator.device

    def batches(self, epoch: int, skip: int = 0) -> Iterator[dict[str, Any]]:
        """This process's next epoch (it keeps its own position: ``epoch`` and ``skip`` are ignored;
        processes may reach the end of an epoch a step apart, each reading its own shards)."""
        from accelerate.utils import send_to_device

        if self._loader is None:
            raise RuntimeError("StreamingSource.prepare(accelerator) must be called before batches()")
        self.dataset.set_epoch(self.epoch)
        for batch in self._loader:
            self.bad_samples.extend(batch.pop("_bad_samples"))
            sources = batch.pop("_sources")
            if self.sample_log is not None and sources:
                self.sample_log.append((self.epoch, sources))
            if batch:
                yield self.collator.on_device(send_to_device(batch, self._device))
        self.epoch += 1

    def probe_batch(self, size: int) -> dict[str, Any]:
        stream = copy.copy(self.dataset)  # this process's stream of epoch 0, read in the main process
        stream.set_epoch(0)
        stream._resume = None
        items = []
        for item in stream:
            if "audio" in item:
                items.append(item)
            if len(items) == size:
                break
        return self.collator.on_device(self.collator(items))

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "loader": self._loader.state_dict(),
            "bad_samples": list(self.bad_samples),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.epoch, self.bad_samples = int(state["epoch"]), list(state["bad_samples"])
        self._loader.load_state_dict(state["loader"])

    def skipped_samples(self) -> list[dict[str, str]]:
        return list(self.bad_samples)


def stream_records(stream: OpenedStream, limit: int | None = None) -> list[AudioTextRecord]:
    """Every record of a (small) stream, e.g. a validation set given as shards, or its first ``limit``
    ones; audio undecoded."""
    records: list[AudioTextRecord] = []
    for shard in range(stream.num_shards):
        if limit is not None and len(records) >= limit:
            break
        for position, row in enumerate(
            _rows_of(stream.dataset.shard(num_shards=stream.num_shards, index=shard))
        ):
            if limit is not None and len(records) >= limit:
                break
            where = f"{stream.shard_names[shard]}:{row.get('__key__', f'row {position}')}"
            records.append(stream.record(row, where))
    if not records:
        raise ValueError(f"{stream.name}: no samples")
    return records
