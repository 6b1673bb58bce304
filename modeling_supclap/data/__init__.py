"""Data layer: synthetic demo corpus, corpus loading and audio decoding, processors, collation."""

from .collator import AudioTextDataset, SupClapCollator, scan_records
from .demo_corpus import build_demo_corpus, demo_class_labels
from .loading import AudioTextRecord, BadSampleError, decode_audio, load_records
from .processor import (
    build_demo_processor,
    build_processor,
    build_processor_for_audio_config,
    max_audio_frames,
    train_caption_tokenizer,
)

__all__ = [
    "AudioTextDataset",
    "AudioTextRecord",
    "BadSampleError",
    "SupClapCollator",
    "build_demo_corpus",
    "build_demo_processor",
    "build_processor",
    "build_processor_for_audio_config",
    "decode_audio",
    "demo_class_labels",
    "load_records",
    "max_audio_frames",
    "scan_records",
    "train_caption_tokenizer",
]
