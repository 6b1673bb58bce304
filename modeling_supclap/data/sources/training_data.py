"""The data seam: a :class:`TrainingDataSpec` in, what the training loop consumes out.

:func:`build_training_data` is the one place that turns a spec (where the corpus is, how its columns are
read, how batches are made: built from the command line's arguments where a run is built) into a
:class:`TrainingData`: a :class:`~.base.TrainingSource` for the training split plus the (small,
map-style) validation and test records and the report of the up-front data checks. A corpus listed in
full becomes a :class:`~.map_style.MapStyleSource`; ``streaming=True`` (tar shards or a Hub dataset) a
:class:`~.streaming.StreamingSource`. Another kind of corpus is a source class and a branch here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..captions import parse_language_weights
from ..checks import check_splits, format_data_report
from ..collator import SupClapCollator
from ..dataset import AudioTextDataset
from ..readers import load_records
from ..records import AudioTextRecord, ColumnSpec, MissingSplitError, check_on_bad_sample, language_counts
from .base import TrainingSource
from .map_style import MapStyleSource

if TYPE_CHECKING:
    from transformers import ProcessorMixin

logger = logging.getLogger(__name__)

__all__ = ["TrainingData", "TrainingDataSpec", "build_training_data", "load_splits"]


@dataclass(frozen=True)
class TrainingDataSpec:
    """Where the training data is and how its batches are made.

    ``location``: the training corpus (anything ``load_records`` reads; with ``streaming``, tar shards or
    a Hub dataset); ``validation_data`` / ``test_data``: other corpora for those splits (default: the
    corpus's own ``validation`` / ``test`` splits, where it has them); ``columns``: how every corpus's
    columns are read; ``on_bad_sample``: ``"error"`` (stop, naming it) or ``"skip"`` (drop and count);
    the rest says how batches are made: ``batch_size`` pairs per process, ``seed`` of the order, captions
    and crops, ``num_workers`` DataLoader processes, ``max_text_length`` tokens per caption,
    ``caption_language_weights`` ``{language: weight}`` of the caption draw, ``shuffle_buffer_size`` of a
    stream, ``log_mel_on_device``: CLAP's log-mel computed on the model's device rather than in the workers.
    """

    location: str
    columns: ColumnSpec = field(default_factory=ColumnSpec)
    train_split: str = "train"
    validation_data: str | None = None
    test_data: str | None = None
    streaming: bool = False
    on_bad_sample: str = "error"
    batch_size: int = 32
    seed: int = 0
    num_workers: int = 0
    max_text_length: int = 64
    caption_language_weights: Mapping[str, float] | None = None
    shuffle_buffer_size: int = 1000
    log_mel_on_device: bool = False

    def __post_init__(self) -> None:
        check_on_bad_sample(self.on_bad_sample)
        object.__setattr__(
            self, "caption_language_weights", parse_language_weights(self.caption_language_weights)
        )

    def collator(self, processor: ProcessorMixin) -> SupClapCollator:
        """The collator of the training batches."""
        return SupClapCollator(
            processor,
            max_text_length=self.max_text_length,
            seed=self.seed,
            language_weights=self.caption_language_weights,
            log_mel_on_device=self.log_mel_on_device,
        )


@dataclass
class TrainingData:
    """What a run trains and evaluates on (see :func:`build_training_data`)."""

    location: str  # the training corpus
    train: TrainingSource
    validation: list[AudioTextRecord] | None
    test: list[AudioTextRecord] | None
    report: dict[str, Any] | None = None  # the up-front checks' report (``check_splits``)


def load_splits(spec: TrainingDataSpec) -> dict[str, list[AudioTextRecord] | None]:
    """Train records, and validation/test records where they exist."""
    splits: dict[str, list[AudioTextRecord] | None] = {
        "train": load_records(spec.location, spec.train_split, spec.columns)
    }
    for split, explicit in (("validation", spec.validation_data), ("test", spec.test_data)):
        if explicit is not None:
            splits[split] = load_records(explicit, split, spec.columns)
            continue
        if Path(spec.location).is_file():
            # A single .csv/.jsonl has no splits: load_records would return the training rows again.
            logger.info("no %s split: %s is one table, its rows are the training set", split, spec.location)
            splits[split] = None
            continue
        try:
            splits[split] = load_records(spec.location, split, spec.columns)
        except (MissingSplitError, FileNotFoundError) as error:
            logger.info("no %s split in %s (%s)", split, spec.location, error)
            splits[split] = None
    return splits


def build_training_data(
    spec: TrainingDataSpec,
    processor: ProcessorMixin,
    *,
    log_report: bool = True,
    splits: dict[str, list[AudioTextRecord] | None] | None = None,
) -> TrainingData:
    """Load the splits, check them up front, and make the training source.

    Every clip of every split is decoded once here, before the first step (``checks.check_splits``):
    with ``on_bad_sample="error"`` a bad sample stops the run naming it; with ``"skip"`` it is dropped,
    counted and reported at the end (counts taken in DataLoader workers would be lost). Duplicate
    clips and train/test leakage are reported too. ``log_report``: log the report (main process);
    ``splits``: already loaded (``load_splits``), not to be read again.
    """
    if spec.streaming:
        return _streaming_data(spec, processor, log_report=log_report)
    sampling_rate = processor.feature_extractor.sampling_rate
    splits, report = check_splits(
        splits if splits is not None else load_splits(spec), sampling_rate, spec.on_bad_sample
    )
    if log_report and (summary := format_data_report(report)):
        logger.warning("data checks:\n%s", summary)
    train = splits["train"]
    if log_report and train and len(counts := language_counts(train)) > 1:
        logger.info("training captions per language: %s", ", ".join(f"{k} {n}" for k, n in counts.items()))
    if train is None:
        raise ValueError(f"every sample of the training set {spec.location} is bad: nothing to train on")
    if len(train) < 2:
        raise ValueError(
            f"the training set {spec.location} has {len(train)} usable clip(s) "
            f"({report['skipped_samples']['by_split'].get('train', 0)} bad skipped); "
            "contrastive training needs >= 2"
        )
    dataset = AudioTextDataset(train, sampling_rate, on_bad_sample=spec.on_bad_sample)
    source = MapStyleSource(
        dataset, spec.collator(processor), spec.batch_size, spec.seed, num_workers=spec.num_workers
    )
    return TrainingData(
        spec.location, source, _or_none(splits.get("validation")), _or_none(splits.get("test")), report
    )


def _or_none(records: Sequence[AudioTextRecord] | None) -> list[AudioTextRecord] | None:
    return list(records) if records else None


def _streaming_data(spec: TrainingDataSpec, processor: ProcessorMixin, *, log_report: bool) -> TrainingData:
    """A stream: the training split read as a stream, nothing decoded up front; validation and test
    (``validation_data``, ``test_data``: small corpora or shards) checked as usual."""
    from .shards import looks_like_shards
    from .streaming import ShardedAudioStream, StreamingSource, open_stream, stream_records

    sampling_rate = processor.feature_extractor.sampling_rate
    stream = open_stream(spec.location, spec.train_split, spec.columns)
    dataset = ShardedAudioStream(
        stream,
        sampling_rate,
        seed=spec.seed,
        shuffle_buffer_size=spec.shuffle_buffer_size,
        on_bad_sample=spec.on_bad_sample,
    )
    source = StreamingSource(dataset, spec.collator(processor), spec.batch_size, num_workers=spec.num_workers)

    splits: dict[str, list[AudioTextRecord] | None] = {}
    for split, location in (("validation", spec.validation_data), ("test", spec.test_data)):
        if location is None:
            logger.info("streaming: no %s corpus given (--%s_data), no %s split", split, split, split)
            splits[split] = None
        elif looks_like_shards(location):
            splits[split] = stream_records(open_stream(location, split, spec.columns))
        else:
            splits[split] = load_records(location, split, spec.columns)
    checked, report = check_splits(splits, sampling_rate, spec.on_bad_sample)
    if log_report and (summary := format_data_report(report)):
        logger.warning("data checks (validation/test):\n%s", summary)
    return TrainingData(spec.location, source, checked.get("validation"), checked.get("test"), report)
