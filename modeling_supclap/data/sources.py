"""The data seam: from the data arguments to what the training loop consumes.

:func:`build_training_data` is the one place that turns ``--train_data`` (and friends) into a
:class:`TrainingData`: a :class:`TrainingSource` for the training split plus the (small, map-style)
validation and test records and the report of the up-front data checks. The loop only ever calls
the :class:`TrainingSource` interface, so another kind of corpus is a subclass and a branch in
:func:`build_training_data`, with no edit to the loop: ``streaming.py``'s :class:`StreamingSource`
(tar shards or a Hub dataset, ``--streaming``) is one.

:class:`MapStyleSource` is the source for corpora that are listed in full (audiofolders, CSV/JSONL,
``save_to_disk`` folders, the demo corpus): every clip is decoded once before the first step (the
up-front checks of ``checks.py``), the order is a fresh permutation per epoch seeded by
``seed + epoch``, and a resumed run skips the batches of the current epoch it already trained on.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .checks import check_splits
from .collator import AudioTextDataset, SupClapCollator
from .demo_corpus import build_demo_corpus
from .loading import AudioTextRecord, MissingSplitError, language_counts, load_records
from .workers import ignore_stop_signals

if TYPE_CHECKING:
    from accelerate import Accelerator
    from transformers import ClapProcessor

    from ..training.arguments import DataArguments

logger = logging.getLogger(__name__)

__all__ = [
    "Corpus",
    "EpochPermutationSampler",
    "MapStyleSource",
    "TrainingData",
    "TrainingSource",
    "build_training_data",
    "load_splits",
    "resolve_corpus",
]


@dataclass(frozen=True)
class Corpus:
    """Where the training data is: a path or Hub id, and whether it is the built-in demo corpus."""

    location: str
    is_demo: bool = False


def resolve_corpus(data_args: DataArguments, accelerator: Accelerator) -> Corpus:
    """``--train_data``, or the demo corpus (built once, by the main process first, and cached)."""
    if data_args.train_data is not None:
        return Corpus(data_args.train_data)
    languages = tuple(data_args.demo_languages or ("en",))
    name = f"demo_corpus_{data_args.demo_num_clips}"
    if languages != ("en",):
        name += "_" + "-".join(languages)
    corpus_dir = Path(data_args.cache_dir) / name
    with accelerator.main_process_first():
        build_demo_corpus(corpus_dir, num_clips=data_args.demo_num_clips, languages=languages)
    return Corpus(str(corpus_dir), is_demo=True)


class TrainingSource(ABC):
    """What the training loop iterates: collated batches, epoch by epoch, resumable mid-epoch.

    ``num_samples`` is the number of training pairs, or ``None`` where it is not known up front
    (a stream): the loop never needs it, ``--max_steps`` defines the run. A source whose position
    cannot be derived from ``(epoch, batches already consumed)`` keeps it in :meth:`state_dict`:
    every process's is saved in each checkpoint (``data_state_<rank>.pt``) and handed back to
    :meth:`load_state_dict` on resume.
    """

    num_samples: int | None = None

    @abstractmethod
    def prepare(self, accelerator: Accelerator) -> None:
        """Build the loader(s) for this process (called once, before the first batch)."""

    @abstractmethod
    def batches(self, epoch: int, skip: int = 0) -> Iterator[dict[str, Any]]:
        """This process's batches of ``epoch``, after the first ``skip`` (already trained on)."""

    @abstractmethod
    def probe_batch(self, size: int) -> dict[str, Any]:
        """A fixed collated batch of up to ``size`` pairs (the drift probe's)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"{type(self).__name__} keeps no state, got {sorted(state)}")

    def skipped_samples(self) -> list[dict[str, str]]:
        """Bad samples this process skipped while reading (``source``, ``error``); up-front checks
        report theirs in ``TrainingData.report`` instead."""
        return []


class EpochPermutationSampler(torch.utils.data.Sampler[int]):
    """A fresh permutation each epoch, seeded by ``seed + epoch`` (reproducible across resumes)."""

    def __init__(self, num_samples: int, seed: int) -> None:
        self.num_samples, self.seed, self.epoch = num_samples, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.num_samples, generator=generator).tolist())

    def __len__(self) -> int:
        return self.num_samples


class MapStyleSource(TrainingSource):
    """Records listed in full, decoded in DataLoader workers, in a seeded permutation per epoch.

    Determinism: data order comes from ``seed + epoch``, captions and crops from ``(seed, epoch,
    clip indices)`` (the collator), and the DataLoader has its own generator so that starting an
    iterator never draws from the global RNG: with the RNG states restored from a checkpoint, a
    resumed run sees exactly the batches an uninterrupted one would.
    """

    def __init__(
        self,
        dataset: AudioTextDataset,
        collator: SupClapCollator,
        batch_size: int,
        seed: int,
        num_workers: int = 0,
    ) -> None:
        self.dataset, self.collator = dataset, collator
        self.batch_size, self.seed, self.num_workers = batch_size, seed, num_workers
        self.num_samples = len(dataset)
        self.sampler = EpochPermutationSampler(len(dataset), seed)
        self._loader: torch.utils.data.DataLoader | None = None
        self._accelerator: Accelerator | None = None

    def prepare(self, accelerator: Accelerator) -> None:
        loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            sampler=self.sampler,
            collate_fn=self.collator,
            num_workers=self.num_workers,
            # Drop a ragged last batch only when a full one exists on every process.
            drop_last=len(self.dataset) >= self.batch_size * accelerator.num_processes,
            generator=torch.Generator().manual_seed(self.seed),
            worker_init_fn=ignore_stop_signals,
        )
        self._loader, self._accelerator = accelerator.prepare(loader), accelerator

    def batches(self, epoch: int, skip: int = 0) -> Iterator[dict[str, Any]]:
        if self._loader is None or self._accelerator is None:
            raise RuntimeError("MapStyleSource.prepare(accelerator) must be called before batches()")
        self.sampler.set_epoch(epoch)
        self.dataset.set_epoch(epoch)
        loader = self._accelerator.skip_first_batches(self._loader, skip) if skip else self._loader
        # Accelerate's loaders set their sampler's epoch to their own iteration count at every
        # __iter__; after a resumed (skipped) epoch that count would be behind: make it ours.
        loader.set_epoch(epoch)
        return iter(loader)

    def probe_batch(self, size: int) -> dict[str, Any]:
        return self.collator([self.dataset[i] for i in range(min(size, len(self.dataset)))])


@dataclass
class TrainingData:
    """What a run trains and evaluates on (see :func:`build_training_data`)."""

    corpus: Corpus
    train: TrainingSource
    validation: list[AudioTextRecord] | None
    test: list[AudioTextRecord] | None
    report: dict[str, Any] | None = None  # the up-front checks' report (``check_splits``)


def _records(data_args: DataArguments, data: str, split: str) -> list[AudioTextRecord]:
    return load_records(data, split=split, **data_args.column_kwargs())


def load_splits(data_args: DataArguments, train_data: str) -> dict[str, list[AudioTextRecord] | None]:
    """Train records, and validation/test records where they exist."""
    splits: dict[str, list[AudioTextRecord] | None] = {
        "train": _records(data_args, train_data, data_args.train_split)
    }
    for split, explicit in (("validation", data_args.validation_data), ("test", data_args.test_data)):
        if explicit is not None:
            splits[split] = _records(data_args, explicit, split)
            continue
        if Path(train_data).is_file():
            # A single .csv/.jsonl has no splits: load_records would return the training rows again.
            logger.info("no %s split: %s is one table, its rows are the training set", split, train_data)
            splits[split] = None
            continue
        try:
            splits[split] = _records(data_args, train_data, split)
        except (MissingSplitError, FileNotFoundError) as error:
            logger.info("no %s split in %s (%s)", split, train_data, error)
            splits[split] = None
    return splits


def build_training_data(
    data_args: DataArguments,
    corpus: Corpus,
    processor: ClapProcessor,
    *,
    batch_size: int,
    seed: int,
    log_report: bool = True,
    splits: dict[str, list[AudioTextRecord] | None] | None = None,
) -> TrainingData:
    """Load the splits, check them up front, and make the training source.

    Every clip of every split is decoded once here, before the first step (``checks.check_splits``):
    with ``--on_bad_sample error`` a bad sample stops the run naming it; with ``skip`` it is dropped,
    counted and reported at the end (counts taken in DataLoader workers would be lost). Duplicate
    clips and train/test leakage are reported too. ``log_report``: log the report (main process);
    ``splits``: already loaded (``load_splits``), not to be read again.
    """
    from .checks import format_data_report

    if data_args.streaming:
        return _streaming_data(
            data_args, corpus, processor, batch_size=batch_size, seed=seed, log_report=log_report
        )
    splits, report = check_splits(
        splits if splits is not None else load_splits(data_args, corpus.location),
        processor.feature_extractor.sampling_rate,
        data_args.on_bad_sample,
    )
    if log_report and (summary := format_data_report(report)):
        logger.warning("data checks:\n%s", summary)
    train = splits["train"]
    if log_report and train and len(counts := language_counts(train)) > 1:
        logger.info("training captions per language: %s", ", ".join(f"{k} {n}" for k, n in counts.items()))
    if train is None:
        raise ValueError(f"every sample of the training set {corpus.location} is bad: nothing to train on")
    if len(train) < 2:
        raise ValueError(
            f"the training set {corpus.location} has {len(train)} usable clip(s) "
            f"({report['skipped_samples']['by_split'].get('train', 0)} bad skipped); "
            "contrastive training needs >= 2"
        )
    dataset = AudioTextDataset(
        train, processor.feature_extractor.sampling_rate, on_bad_sample=data_args.on_bad_sample
    )
    collator = SupClapCollator(
        processor,
        max_text_length=data_args.max_text_length,
        seed=seed,
        language_weights=data_args.caption_language_weights,
    )
    source = MapStyleSource(dataset, collator, batch_size, seed, num_workers=data_args.dataloader_num_workers)
    return TrainingData(
        corpus, source, _or_none(splits.get("validation")), _or_none(splits.get("test")), report
    )


def _or_none(records: Sequence[AudioTextRecord] | None) -> list[AudioTextRecord] | None:
    return list(records) if records else None


def _streaming_data(
    data_args: DataArguments,
    corpus: Corpus,
    processor: ClapProcessor,
    *,
    batch_size: int,
    seed: int,
    log_report: bool,
) -> TrainingData:
    """``--streaming``: the training split read as a stream, nothing decoded up front; validation and
    test (``--validation_data``, ``--test_data``: small corpora or shards) checked as usual."""
    from .checks import format_data_report
    from .shards import looks_like_shards
    from .streaming import ShardedAudioStream, StreamingSource, open_stream, stream_records

    columns = data_args.column_kwargs()
    stream = open_stream(corpus.location, data_args.train_split, **columns)
    dataset = ShardedAudioStream(
        stream,
        processor.feature_extractor.sampling_rate,
        seed=seed,
        shuffle_buffer_size=data_args.shuffle_buffer_size,
        on_bad_sample=data_args.on_bad_sample,
    )
    collator = SupClapCollator(
        processor,
        max_text_length=data_args.max_text_length,
        seed=seed,
        language_weights=data_args.caption_language_weights,
    )
    source = StreamingSource(dataset, collator, batch_size, num_workers=data_args.dataloader_num_workers)

    splits: dict[str, list[AudioTextRecord] | None] = {}
    for split, location in (("validation", data_args.validation_data), ("test", data_args.test_data)):
        if location is None:
            logger.info("--streaming: no --%s_data given, no %s split", split, split)
            splits[split] = None
        elif looks_like_shards(location):
            splits[split] = stream_records(open_stream(location, split, **columns))
        else:
            splits[split] = _records(data_args, location, split)
    checked, report = check_splits(splits, processor.feature_extractor.sampling_rate, data_args.on_bad_sample)
    if log_report and (summary := format_data_report(report)):
        logger.warning("data checks (validation/test):\n%s", summary)
    return TrainingData(corpus, source, checked.get("validation"), checked.get("test"), report)
