"""Batched torch log-mel features that reproduce ``transformers.ClapFeatureExtractor`` (``rand_trunc``).

``ClapFeatureExtractor.__call__`` computes each clip's spectrogram with
``transformers.audio_utils.spectrogram``, a Python loop over STFT frames in numpy (about 10-20 ms per
2-second 16 kHz clip), which makes the data collator slower than a training step of a small model.
:func:`fast_clap_features` computes the same features for the whole batch at once with ``torch.fft.rfft``:

* waveform preparation is the extractor's own code path, clip by clip and in the same order: clips longer
  than ``nb_max_samples`` are cropped at ``np.random.randint(0, overflow + 1)`` (the same global numpy RNG
  calls, so the same seed gives the same crops and leaves the same RNG state), shorter clips are repeated
  (``"repeat"`` / ``"repeatpad"``) and zero-padded;
* the STFT uses the same periodic Hann window (``window_function(fft_window_size, "hann")``), the same
  centering (reflect padding of ``fft_window_size // 2`` samples on both sides) and framing, in float64;
* like ``spectrogram``, which stores the float64 FFT in a ``complex64`` buffer, the real and imaginary parts
  are rounded to float32 before the float64 power ``|X|^2``;
* the slaney mel filter bank ``feature_extractor.mel_filters_slaney``, ``max(1e-10, .)`` (``mel_floor``),
  ``10 * log10(.)`` (``power_to_db`` with ``reference=1.0``, ``min_value=1e-10``, no ``db_range``) in
  float64, then a cast to float32.

Measured against transformers 5.x (see ``tests/data/test_features.py``) the features are bitwise identical in
practice; the tests assert ``atol=1e-4`` dB (a few float32 ulps of values up to ~100 dB), which leaves room
for float64 rounding differences between torch and numpy (summation order of the mel product, ``log10``).

:func:`clap_features` is the function to call: it takes the fast path only where it reproduces the
extractor exactly and falls back to ``feature_extractor(...)`` otherwise (see its docstring).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from transformers import ClapFeatureExtractor
from transformers.audio_utils import window_function

__all__ = ["audio_model_inputs", "clap_features", "fast_clap_features", "fast_path_unsupported_reason"]

# Frame samples (float64) per chunk of clips: keeps the (clips, frames, fft) temporaries around 8 MB, which
# was faster than one big batch (cache) and bounds memory for long clips (32 x 10 s at 48 kHz would need
# ~0.8 GB of temporaries at once).
_CHUNK_ELEMENTS = 1 << 20
# transformers.audio_utils.spectrogram defaults used by ClapFeatureExtractor._np_extract_fbank_features.
_MEL_FLOOR = 1e-10
_MIN_VALUE = 1e-10
_REFERENCE = 1.0


def _is_batch_of_clips(audios: Any) -> bool:
    """True for the inputs that ``ClapFeatureExtractor`` treats as a batch of mono clips."""
    if isinstance(audios, np.ndarray):
        return audios.ndim == 2 and audios.shape[0] > 0
    if isinstance(audios, (list, tuple)) and len(audios) > 0:
        try:
            return all(isinstance(a, (np.ndarray, list, tuple)) and np.ndim(a) == 1 for a in audios)
        except ValueError:  # ragged nested lists
            return False
    return False


def fast_path_unsupported_reason(feature_extractor: Any, audios: Any = None) -> str | None:
    """Why :func:`fast_clap_features` cannot reproduce ``feature_extractor(audios)``, or ``None`` if it can.

    ``audios=None`` checks the extractor only.
    """
    if not isinstance(feature_extractor, ClapFeatureExtractor):
        return f"not a ClapFeatureExtractor ({type(feature_extractor).__name__})"
    cls = type(feature_extractor)
    for name in ("__call__", "_get_input_mel", "_np_extract_fbank_features"):
        if getattr(cls, name) is not getattr(ClapFeatureExtractor, name):
            return f"{cls.__name__} overrides ClapFeatureExtractor.{name}"
    if feature_extractor.truncation != "rand_trunc":
        return f"truncation={feature_extractor.truncation!r} (only 'rand_trunc' is reproduced)"
    if feature_extractor.top_db is not None:
        return "top_db is set (transformers 5 ignores it, but a later version may not)"
    max_length = feature_extractor.nb_max_samples
    if not isinstance(max_length, (int, np.integer)) or isinstance(max_length, bool):
        return f"nb_max_samples={max_length!r} is not an integer"
    if int(max_length) <= feature_extractor.fft_window_size // 2:
        return "nb_max_samples <= fft_window_size // 2 (numpy's multi-fold reflect padding)"
    if feature_extractor.hop_length <= 0 or feature_extractor.fft_window_size <= 1:
        return "hop_length / fft_window_size out of range"
    if audios is not None and not _is_batch_of_clips(audios):
        return "audios is not a non-empty batch of 1-D clips"
    return None


def _prepared_waveforms(
    feature_extractor: ClapFeatureExtractor, audios: Sequence[Any] | np.ndarray
) -> tuple[np.ndarray, list[bool]]:
    """Crop / repeat / pad every clip as ``ClapFeatureExtractor._get_input_mel`` does, then center-pad.

    Returns the reflect-padded float64 batch ``(B, max_length + 2 * (fft_window_size // 2))`` and
    ``is_longer``. Consumes the global numpy RNG exactly like the extractor (one ``randint`` per clip longer
    than ``max_length``, in batch order).
    """
    max_length = int(feature_extractor.nb_max_samples)
    half = feature_extractor.fft_window_size // 2
    padding = feature_extractor.padding
    out = np.zeros((len(audios), max_length + 2 * half), dtype=np.float64)
    center = out[:, half : half + max_length]
    is_longer: list[bool] = []
    for i, speech in enumerate(audios):
        waveform = np.asarray(speech, dtype=np.float64)
        if waveform.ndim != 1:
            raise ValueError(f"clip {i} must be mono 1-D, got shape {waveform.shape}")
        if waveform.shape[0] > max_length:
            overflow = len(waveform) - max_length
            idx = np.random.randint(0, overflow + 1)
            center[i] = waveform[idx : idx + max_length]
            is_longer.append(True)
            continue
        is_longer.append(False)
        if waveform.shape[0] < max_length:
            # Same expressions as the extractor (including its ZeroDivisionError on empty clips).
            if padding == "repeat":
                n_repeat = int(max_length / len(waveform))
                waveform = np.tile(waveform, n_repeat + 1)[:max_length]
            if padding == "repeatpad":
                n_repeat = int(max_length / len(waveform))
                waveform = np.tile(waveform, n_repeat)
        # The rest of the row stays zero: np.pad(..., mode="constant", constant_values=0).
        center[i, : waveform.shape[0]] = waveform
    # np.pad(waveform, half, mode="reflect"): mirror without repeating the edge sample.
    if half > 0:
        out[:, :half] = out[:, 2 * half : half : -1]
        out[:, half + max_length :] = out[:, half + max_length - 2 : max_length - 2 : -1]
    return out, is_longer


def _log_mel(
    padded: torch.Tensor,
    window: torch.Tensor,
    mel_filters: torch.Tensor,
    bins: tuple[int, int],
    n_fft: int,
    hop_length: int,
) -> torch.Tensor:
    """``(B, L)`` reflect-padded float64 waveforms -> ``(B, T, n_mels)`` float32 log-mel dB.

    ``mel_filters`` holds the filter-bank rows ``bins[0]:bins[1]``, the only frequency bins with a non-zero
    weight (the others add exact zeros to the mel sums in the original).
    """
    frames = padded.unfold(-1, n_fft, hop_length)  # (B, T, n_fft), a view
    spectrum = torch.fft.rfft(frames * window, dim=-1)[..., bins[0] : bins[1]]  # complex128 (B, T, F')
    # spectrogram() stores the FFT in a complex64 buffer: round re/im to float32, then square in float64.
    parts = torch.view_as_real(spectrum).to(torch.float32).to(torch.float64).square_()  # (B, T, F', 2)
    mel = (parts[..., 0] + parts[..., 1]) @ mel_filters  # (B, T, n_mels)
    mel.clamp_(min=max(_MEL_FLOOR, _MIN_VALUE))
    db = torch.log10(mel).sub_(float(np.log10(max(_MIN_VALUE, _REFERENCE)))).mul_(10.0)
    return db.to(torch.float32)


@contextmanager
def _torch_threads(num_threads: int | None) -> Iterator[None]:
    """Temporarily ``torch.set_num_threads(num_threads)`` (process-wide); ``None`` changes nothing."""
    previous = torch.get_num_threads()
    if num_threads is None or num_threads == previous:
        yield
        return
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def fast_clap_features(
    feature_extractor: ClapFeatureExtractor, audios: Sequence[np.ndarray], num_threads: int | None = 1
) -> dict:
    """Batched equivalent of ``feature_extractor(audios, sampling_rate=sr, return_tensors="pt")``.

    For ``truncation="rand_trunc"``, any ``padding`` (``"repeatpad"``, ``"repeat"``, anything else = zero
    padding) and clips sampled at ``feature_extractor.sampling_rate``. Returns ``{"input_features": float32
    (B, 1, T, n_mels), "is_longer": bool (B, 1)}`` with ``T = nb_max_samples // hop_length + 1``.

    Clips longer than ``nb_max_samples`` are cropped with the same ``np.random.randint`` calls, in the same
    order, as the extractor: seed ``np.random`` the same way to get the same crops and the same RNG state
    afterwards. Raises ``ValueError`` where :func:`fast_path_unsupported_reason` gives a reason; use
    :func:`clap_features` to fall back automatically.

    ``num_threads``: torch intra-op threads for the computation, set for the duration of the call and then
    restored (``torch.set_num_threads`` is process-wide); ``None`` keeps the current setting. The default 1
    matches DataLoader workers (already single-threaded) and the original extractor (single-threaded
    numpy). Each op here works on a few MB only: on a busy 2-core machine every multi-threaded op waited
    for a descheduled thread, and the fast path with 2 threads was up to 10x slower than with 1 (see
    ``benchmarks/bench_features.py``). The result does not depend on it.
    """
    reason = fast_path_unsupported_reason(feature_extractor, audios)
    if reason is not None:
        raise ValueError(f"fast_clap_features cannot reproduce this extractor call: {reason}")
    n_fft = int(feature_extractor.fft_window_size)
    hop_length = int(feature_extractor.hop_length)
    padded, is_longer = _prepared_waveforms(feature_extractor, audios)
    window = torch.from_numpy(np.asarray(window_function(n_fft, "hann"), dtype=np.float64))
    filters = np.asarray(feature_extractor.mel_filters_slaney, dtype=np.float64)  # (F, n_mels)
    used = np.flatnonzero(np.any(filters != 0, axis=1))
    bins = (int(used[0]), int(used[-1]) + 1) if used.size else (0, 1)
    mel_filters = torch.from_numpy(np.ascontiguousarray(filters[bins[0] : bins[1]]))

    batch = padded.shape[0]
    num_frames = 1 + (padded.shape[1] - n_fft) // hop_length
    features = torch.empty((batch, 1, num_frames, filters.shape[1]), dtype=torch.float32)
    chunk = max(1, _CHUNK_ELEMENTS // (num_frames * n_fft))
    waves = torch.from_numpy(padded)
    with _torch_threads(num_threads):
        for start in range(0, batch, chunk):
            stop = min(batch, start + chunk)
            features[start:stop, 0] = _log_mel(
                waves[start:stop], window, mel_filters, bins, n_fft, hop_length
            )
    return {"input_features": features, "is_longer": torch.tensor([[x] for x in is_longer], dtype=torch.bool)}


def clap_features(feature_extractor: Any, audios: Sequence[np.ndarray]) -> dict:
    """Audio features for a batch of clips: the fast path where it is exact, else the extractor itself.

    The fast path (:func:`fast_clap_features`) is taken for a plain ``ClapFeatureExtractor`` (no subclass
    overriding its feature methods) with ``truncation="rand_trunc"``, ``top_db=None``, an integer
    ``nb_max_samples`` and a non-empty batch of 1-D clips. Everything else calls
    ``feature_extractor(audios, sampling_rate=feature_extractor.sampling_rate, return_tensors="pt")``:

    * ``truncation="fusion"`` uses the htk filter bank, 4 channels, a bilinear downsampling of the whole
      spectrogram and ``np.random.choice`` / ``randint`` draws (including one for the whole batch when no
      clip is long) that are not reproduced here;
    * ``top_db`` is ignored by transformers 5's extractor, but a later version could start using it;
    * other extractor types or unusual inputs keep their own semantics (and error messages).

    The fast path runs single-threaded (``num_threads=1``, see :func:`fast_clap_features`). Both paths
    return ``input_features`` and ``is_longer`` tensors and consume the global numpy RNG the same way, so
    callers seed / restore ``np.random`` around this call as they did around the extractor.
    """
    if fast_path_unsupported_reason(feature_extractor, audios) is None:
        return fast_clap_features(feature_extractor, audios)
    return feature_extractor(audios, sampling_rate=feature_extractor.sampling_rate, return_tensors="pt")


def audio_model_inputs(processor: Any, audios: Sequence[np.ndarray]) -> dict[str, torch.Tensor]:
    """The audio keyword arguments of a model's forward for a batch of mono clips at the processor's rate.

    One function for every model family: a ``ClapFeatureExtractor`` goes through :func:`clap_features`
    (``input_features``, ``is_longer``; the fast path where it is exact); a processor with its own
    ``audio_inputs`` (the dual encoder's: ``input_values`` or ``input_features`` and the padding mask as
    ``audio_attention_mask``) through that; any other extractor through its ``__call__``, its padding mask
    renamed ``audio_attention_mask`` (``attention_mask`` is the text tower's). Callers seed and restore
    ``np.random`` around it: CLAP's extractor crops long clips with it.
    """
    extractor = processor.feature_extractor
    if isinstance(extractor, ClapFeatureExtractor):
        features = clap_features(extractor, list(audios))
        return {
            "input_features": features["input_features"].to(torch.float32),
            "is_longer": features["is_longer"].to(torch.bool),
        }
    if hasattr(processor, "audio_inputs"):
        return dict(processor.audio_inputs(list(audios), extractor.sampling_rate))
    features = dict(extractor(list(audios), sampling_rate=extractor.sampling_rate, return_tensors="pt"))
    if "attention_mask" in features:
        features["audio_attention_mask"] = features.pop("attention_mask")
    return features
