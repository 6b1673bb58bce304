"""Data layer: demo corpus, corpus loading and decoding, processors, collation, and the training source.

``sources.py`` is the seam the training loop consumes (``build_training_data`` -> ``TrainingData``).
"""

from .collator import AudioTextDataset, SupClapCollator, scan_records
from .demo_corpus import build_demo_corpus, demo_class_labels
from .loading import AudioTextRecord, BadSampleError, BadSamplesError, decode_audio, load_records
from .processor import (
    build_demo_processor,
    build_processor,
    build_processor_for_audio_config,
    max_audio_frames,
    train_caption_tokenizer,
)
from .sources import MapStyleSource, TrainingData, TrainingSource, build_training_data

__all__ = [
    "AudioTextDataset",
    "AudioTextRecord",
    "BadSampleError",
    "BadSamplesError",
    "MapStyleSource",
    "SupClapCollator",
    "TrainingData",
    "TrainingSource",
    "build_demo_corpus",
    "build_demo_processor",
    "build_processor",
    "build_processor_for_audio_config",
    "build_training_data",
    "decode_audio",
    "demo_class_labels",
    "load_records",
    "max_audio_frames",
    "scan_records",
    "train_caption_tokenizer",
]
