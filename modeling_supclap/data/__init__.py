"""The data layer: corpora in, batches out. It imports nothing from training, evaluation or the CLI.

Where things are: ``records.py`` (what a clip is, how columns are read: ``ColumnSpec``), ``readers/``
(one file per format, ``load_records`` dispatches), ``rows.py`` (a table row to a record), ``captions.py``
(caption cells, languages, the caption draw), ``audio.py`` (decoding and resampling), ``dataset.py`` (the
torch dataset), ``collator.py`` (where a batch is made), ``features.py`` (log-mel), ``processor.py``
(processors made for a corpus), ``checks.py`` (up-front checks), ``sources/`` (what the training loop
consumes: ``build_training_data`` from a ``TrainingDataSpec``).
"""

from .audio import decode_audio
from .collator import SupClapCollator
from .dataset import AudioTextDataset, scan_records
from .processor import (
    build_processor,
    build_processor_for_audio_config,
    max_audio_frames,
    processor_for_corpus,
    train_caption_tokenizer,
)
from .readers import load_records
from .records import AudioTextRecord, BadSampleError, BadSamplesError, ColumnSpec, MissingSplitError
from .sources import (
    MapStyleSource,
    TrainingData,
    TrainingDataSpec,
    TrainingSource,
    build_training_data,
    load_splits,
)

__all__ = [
    "AudioTextDataset",
    "AudioTextRecord",
    "BadSampleError",
    "BadSamplesError",
    "ColumnSpec",
    "MapStyleSource",
    "MissingSplitError",
    "SupClapCollator",
    "TrainingData",
    "TrainingDataSpec",
    "TrainingSource",
    "build_processor",
    "build_processor_for_audio_config",
    "build_training_data",
    "decode_audio",
    "load_records",
    "load_splits",
    "max_audio_frames",
    "processor_for_corpus",
    "scan_records",
    "train_caption_tokenizer",
]
