"""Offline CLAP processors: a caption-trained byte-level BPE tokenizer plus a small-mel feature extractor.

Nothing here downloads anything: the tokenizer is trained with ``tokenizers`` on the captions at hand and
wrapped as a transformers ``RobertaTokenizer`` (the tokenizer class CLAP uses), and the
``ClapFeatureExtractor`` is configured from the audio tower's config so that its output fits the tower.
"""

from __future__ import annotations

import json
import math
import shutil
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import ClapAudioConfig, ClapFeatureExtractor, ClapProcessor, RobertaTokenizerFast
from transformers.audio_utils import mel_filter_bank

from ..files import publish_folder, temporary_sibling

if TYPE_CHECKING:
    from .records import AudioTextRecord

__all__ = [
    "choose_audio_settings",
    "clap_feature_extractor",
    "clap_feature_extractor_for_audio_config",
    "feature_extractor_for_tower",
    "SPECIAL_TOKENS",
    "build_processor",
    "build_processor_for_audio_config",
    "max_audio_frames",
    "processor_for_corpus",
    "train_caption_tokenizer",
]

# Order fixes the ids: <s>=0, <pad>=1, </s>=2, <unk>=3, <mask>=4, matching ClapTextConfig's
# bos/pad/eos defaults (0/1/2).
SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
# Bump when build_demo_processor's output changes, to invalidate cached processors.
PROCESSOR_CACHE_VERSION = 1


def train_caption_tokenizer(
    captions: Iterable[str], vocab_size: int = 1000, model_max_length: int = 64
) -> RobertaTokenizerFast:
    """Train a byte-level BPE on ``captions`` and wrap it as a (fast) ``RobertaTokenizer``.

    Special tokens get ids ``<s>=0, <pad>=1, </s>=2, <unk>=3, <mask>=4``. The vocabulary holds the
    256 byte symbols, so any text (even unseen characters) is encodable, and has at most
    ``vocab_size`` entries, so it fits a text tower with ``vocab_size`` embeddings.
    """
    min_size = 256 + len(SPECIAL_TOKENS)
    if vocab_size < min_size:
        raise ValueError(f"vocab_size must be >= {min_size} (256 byte symbols + specials), got {vocab_size}")
    captions = [c for c in captions if isinstance(c, str) and c.strip()]
    if not captions:
        raise ValueError("train_caption_tokenizer needs at least one non-empty caption")

    bpe = Tokenizer(models.BPE())
    # add_prefix_space=False matches RobertaTokenizer's default, so training and use split alike.
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(captions, trainer=trainer)

    vocab = bpe.get_vocab()
    merges_raw = json.loads(bpe.to_str())["model"]["merges"]
    # tokenizers stores merges as [a, b] pairs (older versions: "a b" strings); transformers wants tuples.
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in merges_raw]

    tokenizer = RobertaTokenizerFast(vocab=vocab, merges=merges, model_max_length=model_max_length)
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in SPECIAL_TOKENS}
    if list(ids.values()) != list(range(len(SPECIAL_TOKENS))):
        raise RuntimeError(f"unexpected special-token ids {ids}")
    if len(tokenizer) > vocab_size:
        raise RuntimeError(f"tokenizer has {len(tokenizer)} tokens, more than vocab_size={vocab_size}")
    return tokenizer


def _whole_seconds(max_length_s: float) -> int:
    # ClapFeatureExtractor computes nb_max_samples = max_length_s * sampling_rate and feeds it to np.pad;
    # a float there (even 2.0) raises "pad_width must be of integral type", also after from_pretrained.
    if float(max_length_s) != int(max_length_s) or max_length_s <= 0:
        raise ValueError(
            "max_length_s must be a positive whole number of seconds for ClapFeatureExtractor, "
            f"got {max_length_s}"
        )
    return int(max_length_s)


def _fft_size(hop_length: int, num_mel_bins: int, sampling_rate: int, fmin: float, fmax: float) -> int:
    """Smallest power of two >= 2 * hop whose mel filter banks have no empty (all-zero) filter."""
    n_fft = 1 << max(8, math.ceil(math.log2(2 * hop_length)))
    while n_fft < 8192:
        ok = True
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for norm, scale in ((None, "htk"), ("slaney", "slaney")):
                fb = mel_filter_bank(
                    num_frequency_bins=n_fft // 2 + 1,
                    num_mel_filters=num_mel_bins,
                    min_frequency=fmin,
                    max_frequency=fmax,
                    sampling_rate=sampling_rate,
                    norm=norm,
                    mel_scale=scale,
                )
                ok = ok and bool(np.all(fb.max(axis=0) > 0))
        if ok:
            return n_fft
        n_fft *= 2
    return n_fft


def build_processor(tokenizer: RobertaTokenizerFast, **extractor_settings: Any) -> ClapProcessor:
    """A ``ClapProcessor``: ``tokenizer`` and :func:`clap_feature_extractor` of ``extractor_settings``."""
    return ClapProcessor(feature_extractor=clap_feature_extractor(**extractor_settings), tokenizer=tokenizer)


def clap_feature_extractor(
    sampling_rate: int = 16000,
    num_mel_bins: int = 16,
    hop_length: int = 160,
    max_length_s: float = 2.0,
    fft_window_size: int | None = None,
    frequency_min: float = 0.0,
    frequency_max: float | None = None,
    truncation: str = "rand_trunc",
    padding: str = "repeatpad",
) -> ClapFeatureExtractor:
    """A ``ClapFeatureExtractor`` of ``num_mel_bins`` mel bins.

    ``truncation="rand_trunc"`` gives 1-channel features ``(B, 1, T, num_mel_bins)`` for unfused audio
    towers (the default "fusion" emits 4 channels), with ``T = max_length_s * sampling_rate // hop_length
    + 1``. Shorter audio is repeated then zero-padded ("repeatpad"); longer audio is randomly cropped
    (the crop uses ``np.random``: seed it for reproducible evaluation). ``fft_window_size`` defaults to
    the smallest power of two >= 2 * hop_length that leaves no mel filter empty; ``frequency_max``
    defaults to the Nyquist frequency.
    """
    seconds = _whole_seconds(max_length_s)
    fmax = float(frequency_max) if frequency_max is not None else sampling_rate / 2
    if not 0 <= frequency_min < fmax <= sampling_rate / 2:
        raise ValueError(
            f"need 0 <= frequency_min < frequency_max <= {sampling_rate / 2}, got {frequency_min}, {fmax}"
        )
    if fft_window_size is None:
        fft_window_size = _fft_size(hop_length, num_mel_bins, sampling_rate, frequency_min, fmax)
    return ClapFeatureExtractor(
        feature_size=num_mel_bins,
        sampling_rate=sampling_rate,
        hop_length=hop_length,
        max_length_s=seconds,
        fft_window_size=fft_window_size,
        frequency_min=frequency_min,
        frequency_max=fmax,
        truncation=truncation,
        padding=padding,
    )


def max_audio_frames(audio_config: ClapAudioConfig) -> int:
    """Most spectrogram frames the audio tower accepts: ``spec_size * (spec_size // num_mel_bins)``."""
    freq_ratio = audio_config.spec_size // audio_config.num_mel_bins
    if freq_ratio < 1:
        raise ValueError(
            f"audio config has num_mel_bins={audio_config.num_mel_bins} > spec_size={audio_config.spec_size}"
        )
    return audio_config.spec_size * freq_ratio


def build_processor_for_audio_config(
    tokenizer: RobertaTokenizerFast,
    audio_config: ClapAudioConfig,
    sampling_rate: int = 16000,
    max_length_s: float = 2.0,
) -> ClapProcessor:
    """A ``ClapProcessor``: ``tokenizer`` and :func:`clap_feature_extractor_for_audio_config`."""
    extractor = clap_feature_extractor_for_audio_config(audio_config, sampling_rate, max_length_s)
    return ClapProcessor(feature_extractor=extractor, tokenizer=tokenizer)


def clap_feature_extractor_for_audio_config(
    audio_config: ClapAudioConfig, sampling_rate: int = 16000, max_length_s: float = 2.0
) -> ClapFeatureExtractor:
    """:func:`clap_feature_extractor` with mel bins, hop length and truncation chosen to fit ``audio_config``.

    The hop starts at 10 ms (as in CLAP) and grows only if the frames of ``max_length_s`` seconds would
    exceed :func:`max_audio_frames`. Fused towers (``enable_fusion=True``) get ``truncation="fusion"``
    (4 channels), which transformers only implements for 64 mel bins.
    """
    seconds = _whole_seconds(max_length_s)
    num_mel_bins = audio_config.num_mel_bins
    max_frames = max_audio_frames(audio_config)
    if max_frames < 2:
        raise ValueError(f"audio config accepts only {max_frames} frame(s)")
    n_samples = seconds * sampling_rate
    hop_length = max(1, sampling_rate // 100)
    if n_samples // hop_length + 1 > max_frames:
        hop_length = math.ceil(n_samples / (max_frames - 1))
    assert n_samples // hop_length + 1 <= max_frames
    truncation = "rand_trunc"
    if getattr(audio_config, "enable_fusion", False):
        if num_mel_bins != 64:
            raise ValueError(
                "transformers' fusion truncation hard-codes 64 mel bins; use enable_fusion=False"
            )
        truncation = "fusion"
    return clap_feature_extractor(
        sampling_rate=sampling_rate,
        num_mel_bins=num_mel_bins,
        hop_length=hop_length,
        max_length_s=seconds,
        truncation=truncation,
    )


def is_saved_processor(folder: Path) -> bool:
    return any((folder / name).is_file() for name in ("processor_config.json", "preprocessor_config.json"))


def save_processor_atomically(processor: ClapProcessor, target: Path) -> None:
    """save_pretrained into a temporary sibling, then rename: readers never see a half-written folder."""
    tmp = temporary_sibling(target)
    try:
        processor.save_pretrained(tmp)
        # Another process may have finished the same cache entry first: theirs is equivalent.
        publish_folder(tmp, target, keep_existing=is_saved_processor(target))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _clip_info(audio: Any) -> tuple[int, float] | None:
    """(sampling rate, seconds) of a record's audio without decoding it; None if unreadable."""
    import io

    import soundfile as sf

    try:
        if isinstance(audio, dict) and audio.get("array") is not None:
            rate = int(audio["sampling_rate"])
            return rate, len(audio["array"]) / rate
        data = audio.get("bytes") if isinstance(audio, dict) else audio if isinstance(audio, bytes) else None
        path = audio.get("path") if isinstance(audio, dict) else audio if isinstance(audio, str) else None
        info = sf.info(io.BytesIO(bytes(data))) if data is not None else sf.info(path)
        return int(info.samplerate), float(info.duration)
    except Exception:  # a bad sample: the data checks name it later
        return None


def choose_audio_settings(
    records: Sequence[AudioTextRecord],
    sampling_rate: int | None = None,
    max_length_s: float | None = None,
    sample_size: int = 200,
) -> tuple[int, int, list[str]]:
    """(sampling rate, window in whole seconds, what was chosen in words) for training from scratch on
    ``records``: the given values, else the most common rate of ``sample_size`` evenly spaced clips and their
    95th-percentile duration rounded up."""
    step = max(1, len(records) // sample_size)
    infos = [info for r in records[::step][:sample_size] if (info := _clip_info(r.audio)) is not None]
    if not infos and (sampling_rate is None or max_length_s is None):
        raise ValueError(
            "cannot read any training clip to choose the audio settings; pass --sampling_rate and "
            "--max_audio_seconds, or fix the audio files"
        )
    chosen = []
    if sampling_rate is None:
        rates = [rate for rate, _ in infos]
        sampling_rate = max(set(rates), key=rates.count)
        chosen.append(
            f"{sampling_rate} Hz (the most common rate of {len(infos)} sampled clips; --sampling_rate)"
        )
    else:
        chosen.append(f"{sampling_rate} Hz (--sampling_rate)")
    if max_length_s is None:
        durations = sorted(seconds for _, seconds in infos)
        p95 = durations[min(len(durations) - 1, int(0.95 * len(durations)))]
        max_length_s = max(1, math.ceil(p95))
        chosen.append(f"{max_length_s} s windows (95th percentile clip: {p95:.2f} s; --max_audio_seconds)")
    else:
        chosen.append(f"{max_length_s:g} s windows (--max_audio_seconds)")
    return int(sampling_rate), _whole_seconds(max_length_s), chosen


def processor_for_corpus(
    records: Sequence[AudioTextRecord],
    audio_config: ClapAudioConfig,
    vocab_size: int,
    max_text_length: int = 64,
    sampling_rate: int | None = None,
    max_length_s: float | None = None,
    sample_size: int = 200,
) -> tuple[ClapProcessor, str]:
    """A processor for training from scratch on ``records`` (the training split), and what was chosen.

    The tokenizer is a byte-level BPE trained on every caption of ``records`` (``vocab_size``: the text
    tower's). The feature extractor fits ``audio_config``, at the rate and window of
    :func:`choose_audio_settings`.
    """
    if not records:
        raise ValueError("cannot build a processor: the training split has no records")
    sampling_rate, max_length_s, chosen = choose_audio_settings(
        records, sampling_rate, max_length_s, sample_size
    )
    captions = [caption for record in records for caption in record.captions]
    tokenizer = train_caption_tokenizer(captions, vocab_size=vocab_size, model_max_length=max_text_length)
    processor = build_processor_for_audio_config(
        tokenizer, audio_config, sampling_rate=sampling_rate, max_length_s=max_length_s
    )
    description = (
        f"a byte-level BPE tokenizer trained on {len(captions)} training captions ({len(tokenizer)} tokens); "
        f"audio at {', '.join(chosen)}"
    )
    return processor, description


def feature_extractor_for_tower(audio_config: Any, sampling_rate: int, max_length_s: int) -> Any:
    """A feature extractor for a randomly initialised audio tower of ``audio_config``'s family, at
    ``sampling_rate`` with windows of ``max_length_s`` seconds (a 10 ms hop; the tower's input length must
    match: ``model/configuration_supclap_dual_encoder.audio_tower_config`` builds it so)."""
    family = audio_config.model_type
    hop = max(1, sampling_rate // 100)
    if family == "audio-spectrogram-transformer":
        from transformers import ASTFeatureExtractor

        return ASTFeatureExtractor(
            num_mel_bins=audio_config.num_mel_bins,
            max_length=audio_config.max_length,
            sampling_rate=sampling_rate,
        )
    if family == "whisper":
        from transformers import WhisperFeatureExtractor

        return WhisperFeatureExtractor(
            feature_size=audio_config.num_mel_bins,
            sampling_rate=sampling_rate,
            hop_length=hop,
            chunk_length=int(max_length_s),
            n_fft=1 << math.ceil(math.log2(2.5 * hop)),
        )
    if family == "clap_audio_model":
        return clap_feature_extractor_for_audio_config(audio_config, sampling_rate, max_length_s)
    if hasattr(audio_config, "conv_stride"):  # the wav2vec2 family reads the waveform itself
        from transformers import Wav2Vec2FeatureExtractor

        return Wav2Vec2FeatureExtractor(
            feature_size=1, sampling_rate=sampling_rate, do_normalize=True, return_attention_mask=True
        )
    raise ValueError(
        f"no feature extractor is made for a new {family!r} audio tower; start it from a checkpoint"
    )
