"""What a run trains: the model and its processor, from the model arguments and the corpus.

Four ways in, in this order:

1. ``--model_name_or_path``: a SupClap checkpoint of either family, or a plain CLAP one (loss flags given
   on the command line override its settings); its own processor.
2. The dual encoder (``SupClapDualEncoderModel``, any audio tower with any text tower) when a tower family
   is named (``--audio_tower``, ``--text_tower``: random towers of the ``--preset`` size) or a pretrained
   tower is not CLAP-shaped (an audio checkpoint that is not CLAP, a text checkpoint that is not
   RoBERTa-shaped); a pretrained tower brings its feature extractor or tokenizer, a random one gets one
   made for the corpus.
3. ``SupClapModel`` with a CLAP checkpoint's audio tower and/or a RoBERTa-family text tower (``towers.py``).
4. ``SupClapModel`` of ``--preset`` from scratch, with a processor made for the corpus.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoConfig, AutoFeatureExtractor, AutoProcessor, AutoTokenizer, ProcessorMixin
from transformers.feature_extraction_utils import FeatureExtractionMixin

from ..data.audio import MAX_SAMPLING_RATE, MIN_SAMPLING_RATE
from ..data.processor import (
    choose_audio_settings,
    feature_extractor_for_tower,
    processor_for_corpus,
    train_caption_tokenizer,
)
from ..data.readers import load_records
from ..data.records import AudioTextRecord
from ..data.sources import TrainingDataSpec, load_splits
from ..data.sources.streaming import open_stream, stream_records
from ..demo import build_demo_processor
from ..demo.processor import demo_audio_settings
from ..model.configuration_supclap import PRESETS, SupClapConfig
from ..model.configuration_supclap_dual_encoder import (
    audio_tower_config,
    register_remote_towers,
    text_tower_config,
)
from ..model.losses import SupClapLoss
from ..model.modeling_supclap import SupClapModel
from ..model.modeling_supclap_dual_encoder import SupClapDualEncoderModel, build_tower, load_tower
from ..model.processing_supclap_dual_encoder import SupClapDualEncoderProcessor
from ..towers import PretrainedTowers, model_with_pretrained_towers
from .arguments import MULTILINGUAL_DEMO_VOCAB_SIZE, DataArguments, ModelArguments

logger = logging.getLogger(__name__)

# Text towers whose weights map one to one onto CLAP's RoBERTa-shaped text tower (towers.py).
ROBERTA_SHAPED = ("roberta", "xlm-roberta", "clap_text_model")
CLAP_TYPES = ("clap", "supclap")
# Mel bins of a random audio tower of each preset size (the CLAP presets' own).
_PRESET_MEL_BINS = {"tiny": 16, "small": 32}


@dataclass(frozen=True)
class Corpus:
    """Where the training data is: a path or Hub id, and whether it is the built-in demo corpus."""

    location: str
    is_demo: bool = False


@dataclass
class ModelSetup:
    """The model and processor of a run, and the splits read on the way (not to be read again)."""

    model: torch.nn.Module
    processor: ProcessorMixin
    splits: dict[str, list[AudioTextRecord] | None] | None = None


def build_model_and_processor(
    model_args: ModelArguments, data_args: DataArguments, corpus: Corpus, data_spec: TrainingDataSpec
) -> ModelSetup:
    """The model and processor a run trains (see the module docstring for the four ways in)."""
    towers_given = any(
        (model_args.audio_model_name_or_path, model_args.text_model_name_or_path, model_args.audio_tower,
         model_args.text_tower)
    )  # fmt: skip
    if model_args.model_name_or_path:
        if towers_given:
            raise ValueError(
                "--audio_model_name_or_path, --text_model_name_or_path, --audio_tower and --text_tower start "
                "a new model; they cannot be combined with --model_name_or_path (which continues a whole one)"
            )
        if model_args.text_vocab_size:
            raise ValueError("--text_vocab_size sets a new model's vocabulary; a checkpoint keeps its own")
        for name in ("max_audio_seconds", "sampling_rate"):
            if getattr(data_args, name) is not None:
                logger.warning("--%s is ignored: a checkpoint keeps its processor's audio settings", name)
        processor = AutoProcessor.from_pretrained(
            model_args.model_name_or_path, trust_remote_code=model_args.trust_remote_code
        )
        return ModelSetup(load_model(model_args), processor)
    splits, train_records = None, None
    if not corpus.is_demo:  # from scratch on your own data: the processor learns from the training split
        splits, train_records = training_records(data_args, data_spec)
    if wants_dual_encoder(model_args):
        model, processor = _dual_encoder(model_args, data_args, corpus, train_records)
        return ModelSetup(model, processor, splits)
    towers = None
    if model_args.text_model_name_or_path or model_args.audio_model_name_or_path:
        towers = model_with_pretrained_towers(
            model_args.preset,
            model_args.text_model_name_or_path,
            model_args.audio_model_name_or_path,
            model_args.trust_remote_code,
            **model_args.loss_overrides(),
        )
        model = towers.model
    else:
        default_vocab = PRESETS[model_args.preset]()["text_config"]["vocab_size"]
        model = build_model(model_args, _text_vocab_size(model_args, data_args, corpus, default_vocab))
    return ModelSetup(model, _clap_processor(data_args, model, corpus, train_records, towers), splits)


def build_model(model_args: ModelArguments, text_vocab_size: int | None = None) -> torch.nn.Module:
    """``--model_name_or_path`` (:func:`load_model`), or a ``SupClapModel`` of ``--preset`` from scratch (its
    text tower of ``text_vocab_size`` tokens, default the preset's), the loss flags given applied."""
    if model_args.model_name_or_path:
        return load_model(model_args)
    config = SupClapConfig.from_preset(model_args.preset, **model_args.loss_overrides())
    if text_vocab_size:
        config.text_config.vocab_size = int(text_vocab_size)
    return SupClapModel(config)


def load_model(model_args: ModelArguments) -> torch.nn.Module:
    """``--model_name_or_path``: a SupClap checkpoint of either family (its own class) or a plain CLAP one
    (into ``SupClapModel``). Loss flags given change its settings, each change logged; the others keep the
    checkpoint's (its loss, radius, SigLIP bias...)."""
    path, trust = model_args.model_name_or_path, model_args.trust_remote_code
    if trust:  # a dual encoder's remote-code towers (transformers does not pass the flag on)
        register_remote_towers(path)
    saved = AutoConfig.from_pretrained(path, trust_remote_code=trust)
    overrides = model_args.loss_overrides()
    if hasattr(saved, "loss_settings"):
        logger.info("%s: loss %s", path, SupClapLoss.settings_only(saved).describe())
    for name, value in overrides.items():
        if getattr(saved, name, None) != value:
            logger.warning(
                "--%s changes the checkpoint's %s: %r -> %r", name, name, getattr(saved, name, None), value
            )
    family = (
        SupClapDualEncoderModel
        if saved.model_type == SupClapDualEncoderModel.config_class.model_type
        else SupClapModel
    )
    if family is SupClapModel and saved.model_type not in CLAP_TYPES:
        raise ValueError(
            f"--model_name_or_path {path} is a {saved.model_type!r} checkpoint, not a CLAP or SupClap model; "
            "to start from one tower of it, give it as --audio_model_name_or_path or "
            "--text_model_name_or_path"
        )
    return family.from_pretrained(path, trust_remote_code=trust, **overrides)


def wants_dual_encoder(model_args: ModelArguments) -> bool:
    """Whether the towers asked for need the dual encoder (module docstring, way 2)."""
    if model_args.audio_tower or model_args.text_tower:
        return True
    audio, text, trust = (
        model_args.audio_model_name_or_path, model_args.text_model_name_or_path, model_args.trust_remote_code
    )  # fmt: skip
    if audio and AutoConfig.from_pretrained(audio, trust_remote_code=trust).model_type not in CLAP_TYPES:
        return True
    return (
        bool(text)
        and AutoConfig.from_pretrained(text, trust_remote_code=trust).model_type not in ROBERTA_SHAPED
    )


def training_records(
    data_args: DataArguments, spec: TrainingDataSpec
) -> tuple[dict | None, list[AudioTextRecord]]:
    """(the loaded splits, or None for a stream; the training records a new processor learns from)."""
    if spec.streaming:  # a stream is not listed: learn from its first samples
        stream = open_stream(spec.location, spec.train_split, spec.columns)
        return None, stream_records(stream, limit=data_args.processor_sample_size)
    splits = load_splits(spec)
    return splits, splits["train"]


def _text_vocab_size(
    model_args: ModelArguments, data_args: DataArguments, corpus: Corpus, default: int
) -> int:
    """A new text tower's vocabulary (and its tokenizer's): ``--text_vocab_size``, else the preset's (larger
    for a multilingual demo corpus, whose captions a 1,000-token BPE cuts short)."""
    if model_args.text_vocab_size:
        return int(model_args.text_vocab_size)
    if corpus.is_demo and len(data_args.demo_languages or ()) > 1:
        return MULTILINGUAL_DEMO_VOCAB_SIZE
    return default


def _clap_processor(
    data_args: DataArguments,
    model: SupClapModel,
    corpus: Corpus,
    train_records: list[AudioTextRecord] | None,
    towers: PretrainedTowers | None,
) -> ProcessorMixin:
    """From scratch: a processor made for the corpus (what was chosen logged); pretrained towers bring their
    tokenizer or feature extractor, and only the missing part is made."""
    from transformers import ClapProcessor

    if towers is not None and towers.tokenizer is not None and towers.feature_extractor is not None:
        return ClapProcessor(feature_extractor=towers.feature_extractor, tokenizer=towers.tokenizer)
    if corpus.is_demo:
        made = build_demo_processor(
            corpus.location,
            model.config.audio_config,
            cache_dir=Path(data_args.cache_dir) / "processors",
            vocab_size=model.config.text_config.vocab_size,
            model_max_length=data_args.max_text_length,
            max_length_s=data_args.max_audio_seconds,
        )
    else:
        made, chosen = processor_for_corpus(
            train_records or [],
            model.config.audio_config,
            vocab_size=model.config.text_config.vocab_size,
            max_text_length=data_args.max_text_length,
            sampling_rate=data_args.sampling_rate,
            max_length_s=data_args.max_audio_seconds,
        )
        logger.info("processor for %s (saved with the model): %s", corpus.location, chosen)
    if towers is None:
        return made
    return ClapProcessor(
        feature_extractor=towers.feature_extractor or made.feature_extractor,
        tokenizer=towers.tokenizer or made.tokenizer,
    )


def _dual_encoder(
    model_args: ModelArguments,
    data_args: DataArguments,
    corpus: Corpus,
    train_records: list[AudioTextRecord] | None,
) -> tuple[SupClapDualEncoderModel, SupClapDualEncoderProcessor]:
    """The dual encoder of the towers asked for, and its processor (module docstring, way 2)."""
    trust, size = model_args.trust_remote_code, model_args.preset
    if model_args.audio_model_name_or_path:
        path = model_args.audio_model_name_or_path
        audio_model = _checked_tower(load_tower(path, trust_remote_code=trust), path, "audio")
        extractor = _checked_extractor(path, trust)
        logger.info(
            "audio tower from %s (%s), its feature extractor at %d Hz",
            path,
            type(audio_model).__name__,
            extractor.sampling_rate,
        )
    else:
        rate, seconds, chosen = _audio_settings(data_args, corpus, train_records)
        family = model_args.audio_tower or "htsat"
        audio_model, extractor = random_audio_tower(family, size, rate, seconds)
        logger.info("a new %s %s audio tower, audio at %s", size, family, ", ".join(chosen))
    if model_args.text_model_name_or_path:
        path = model_args.text_model_name_or_path
        text_model = _checked_tower(load_tower(path, trust_remote_code=trust), path, "text")
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust)
        logger.info("text tower from %s (%s) with its tokenizer", path, type(text_model).__name__)
    else:
        vocab_size = _text_vocab_size(model_args, data_args, corpus, 1000)
        captions = [c for r in (train_records or load_records(corpus.location, "train")) for c in r.captions]
        tokenizer = train_caption_tokenizer(
            captions, vocab_size=vocab_size, model_max_length=data_args.max_text_length
        )
        family = model_args.text_tower or "roberta"
        text_model = random_text_tower(family, size, vocab_size, data_args.max_text_length)
        logger.info(
            "a new %s %s text tower, a byte-level BPE tokenizer of %d captions", size, family, len(captions)
        )
    settings = {"projection_dim": model_args.projection_dim or PRESETS[size]()["projection_dim"]}
    if model_args.audio_pooling:
        settings["audio_pooling"] = model_args.audio_pooling
    model = SupClapDualEncoderModel.from_towers(
        audio_model, text_model, **settings, **model_args.loss_overrides()
    )
    processor = SupClapDualEncoderProcessor(extractor, tokenizer)
    _probe(model, processor)
    return model, processor


def random_audio_tower(
    family: str, size: str, sampling_rate: int, seconds: int
) -> tuple[torch.nn.Module, FeatureExtractionMixin]:
    """A new audio tower of ``family`` and ``size`` (the ``--preset`` names) for ``seconds``-long windows of
    audio at ``sampling_rate``, and the feature extractor that feeds it."""
    config = audio_tower_config(family, size, seconds, _PRESET_MEL_BINS[size])
    return build_tower(config), feature_extractor_for_tower(config, sampling_rate, seconds)


def random_text_tower(family: str, size: str, vocab_size: int, max_text_length: int) -> torch.nn.Module:
    """A new text tower of ``family`` and ``size`` over ``vocab_size`` tokens, for captions of up to
    ``max_text_length`` tokens (positions for two more: a tokenizer's own special tokens)."""
    return build_tower(text_tower_config(family, size, vocab_size, max_text_length + 2))


def _audio_settings(
    data_args: DataArguments, corpus: Corpus, train_records: list[AudioTextRecord] | None
) -> tuple[int, int, list[str]]:
    """(rate, window in seconds, in words) a random audio tower is made for."""
    if corpus.is_demo:
        rate, seconds = demo_audio_settings(corpus.location)
        seconds = int(data_args.max_audio_seconds or seconds)
        return rate, seconds, [f"{rate} Hz", f"{seconds} s windows (the demo corpus's clips)"]
    return choose_audio_settings(train_records or [], data_args.sampling_rate, data_args.max_audio_seconds)


def _checked_tower(tower: torch.nn.Module, path: str, wanted: str) -> torch.nn.Module:
    """``tower`` if its inputs are those of a ``wanted`` ("audio" or "text") encoder, else a clear error."""
    audio = getattr(tower, "main_input_name", None) in ("input_values", "input_features")
    if (wanted == "audio") != audio:
        other = "audio" if audio else "text"
        article = {"audio": "an audio", "text": "a text"}
        raise ValueError(
            f"{path} is {article[other]} model ({type(tower).__name__}, input {tower.main_input_name!r}), "
            f"not {article[wanted]} encoder: give it as --{other}_model_name_or_path"
        )
    return tower


def _checked_extractor(path: str, trust_remote_code: bool) -> Any:
    """The audio checkpoint's feature extractor, at a rate the corpus can be resampled to."""
    try:
        extractor = AutoFeatureExtractor.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        raise ValueError(
            f"{path} has no feature extractor (preprocessor_config.json): save the tower's extractor with it"
        ) from error
    rate = getattr(extractor, "sampling_rate", None)
    if (
        isinstance(rate, bool)
        or not isinstance(rate, int)
        or not MIN_SAMPLING_RATE <= rate <= MAX_SAMPLING_RATE
    ):
        raise ValueError(
            f"the feature extractor of {path} expects audio at {rate!r} Hz, which the corpus cannot be "
            f"resampled to (accepted: whole rates in {MIN_SAMPLING_RATE}..{MAX_SAMPLING_RATE} Hz)"
        )
    return extractor


def _probe(model: SupClapDualEncoderModel, processor: SupClapDualEncoderProcessor) -> None:
    """Both towers once on a second of silence and one caption, so a tower that cannot be pooled (no
    ``last_hidden_state``) or an extractor that does not fit its tower fails now, naming itself."""
    rate = processor.feature_extractor.sampling_rate
    inputs = processor(text=["a probe"], audio=[np.zeros(rate, dtype=np.float32)], sampling_rate=rate)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(**inputs, return_loss=False)
    except (ValueError, RuntimeError, TypeError) as error:
        raise ValueError(
            f"the towers {type(model.audio_model).__name__} and {type(model.text_model).__name__} do not run "
            f"together with their processor: {error}"
        ) from error
    finally:
        model.train(was_training)


__all__ = [
    "Corpus",
    "build_model",
    "ModelSetup",
    "build_model_and_processor",
    "load_model",
    "random_audio_tower",
    "random_text_tower",
    "training_records",
    "wants_dual_encoder",
]
