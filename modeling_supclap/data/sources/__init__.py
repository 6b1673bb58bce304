"""Training sources: what the training loop iterates, and the one function that makes them.

``training_data.py`` turns a :class:`TrainingDataSpec` into :class:`TrainingData` (``build_training_data``);
``base.py`` is the interface the loop consumes; ``map_style.py`` serves corpora listed in full,
``streaming.py`` streams tar shards or a Hub dataset, ``shards.py`` writes and finds tar shards.
"""

from .base import TrainingSource
from .map_style import EpochPermutationSampler, MapStyleSource
from .shards import find_shards, looks_like_shards, read_manifest, write_shards
from .streaming import OpenedStream, ShardedAudioStream, StreamingSource, open_stream, stream_records
from .training_data import TrainingData, TrainingDataSpec, build_training_data, load_splits

__all__ = [
    "EpochPermutationSampler",
    "MapStyleSource",
    "OpenedStream",
    "ShardedAudioStream",
    "StreamingSource",
    "TrainingData",
    "TrainingDataSpec",
    "TrainingSource",
    "build_training_data",
    "find_shards",
    "load_splits",
    "looks_like_shards",
    "open_stream",
    "read_manifest",
    "stream_records",
    "write_shards",
]
