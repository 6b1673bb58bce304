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

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from transformers import ClapFeatureExtractor
from transformers.audio_utils import window_function

logger = logging.getLogger(__name__)

__all__ = [
    "WAVEFORMS_KEY",
    "audio_model_inputs",
    "clap_features",
    "clap_log_mel",
    "device_log_mel_unsupported_reason",
    "fast_clap_features",
    "fast_path_unsupported_reason",
    "finish_on_device",
    "prepare_clap_waveforms",
    "resolve_log_mel_on_device",
]

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


def prepare_clap_waveforms(
    feature_extractor: ClapFeatureExtractor, audios: Sequence[Any] | np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop / repeat / pad every clip to ``nb_max_samples`` as ``ClapFeatureExtractor._get_input_mel`` does.

    Returns ``(waveforms (B, nb_max_samples), is_longer (B, 1) bool)``: the CPU half of
    :func:`fast_clap_features`, cheap enough for a DataLoader worker; :func:`clap_log_mel` is the other
    half, on any device. The waveforms are float32 where every clip is a float32 array (the extractor's
    float64 copy of them holds the same values, so nothing is rounded and they travel at half the size),
    else float64. Consumes the global numpy RNG exactly like the extractor (one ``randint`` per clip longer
    than ``nb_max_samples``, in batch order).
    """
    max_length = int(feature_extractor.nb_max_samples)
    padding = feature_extractor.padding
    exact_in_float32 = all(isinstance(a, np.ndarray) and a.dtype == np.float32 for a in audios)
    out = np.zeros((len(audios), max_length), dtype=np.float32 if exact_in_float32 else np.float64)
    is_longer: list[bool] = []
    for i, speech in enumerate(audios):
        waveform = np.asarray(speech, dtype=out.dtype)
        if waveform.ndim != 1:
            raise ValueError(f"clip {i} must be mono 1-D, got shape {waveform.shape}")
        if waveform.shape[0] > max_length:
            overflow = len(waveform) - max_length
            idx = np.random.randint(0, overflow + 1)
            out[i] = waveform[idx : idx + max_length]
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
        out[i, : waveform.shape[0]] = waveform
    return torch.from_numpy(out), torch.tensor([[x] for x in is_longer], dtype=torch.bool)


def _center(waveforms: torch.Tensor, half: int) -> torch.Tensor:
    """``np.pad(waveform, half, mode="reflect")`` of each row in float64: mirror without repeating the edge
    sample (copies only, so exact)."""
    waveforms = waveforms.to(torch.float64)
    if half == 0:
        return waveforms
    return torch.nn.functional.pad(waveforms[:, None], (half, half), mode="reflect")[:, 0]


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


def clap_log_mel(
    feature_extractor: ClapFeatureExtractor, waveforms: torch.Tensor, num_threads: int | None = 1
) -> torch.Tensor:
    """Log-mel features ``(B, 1, T, n_mels)`` float32 of :func:`prepare_clap_waveforms`'s waveforms, computed
    on their device (a GPU: the input pipeline's heaviest stage leaves the CPU workers).

    On the CPU the result is the extractor's, bitwise in practice (module docstring); on a GPU the same
    float64 computation differs from it by float64 rounding (cuFFT), far below a float32 ulp of the output.
    ``num_threads`` as in :func:`fast_clap_features` (it only matters on the CPU).
    """
    n_fft = int(feature_extractor.fft_window_size)
    hop_length = int(feature_extractor.hop_length)
    device = waveforms.device
    window = torch.from_numpy(np.asarray(window_function(n_fft, "hann"), dtype=np.float64)).to(device)
    filters = np.asarray(feature_extractor.mel_filters_slaney, dtype=np.float64)  # (F, n_mels)
    used = np.flatnonzero(np.any(filters != 0, axis=1))
    bins = (int(used[0]), int(used[-1]) + 1) if used.size else (0, 1)
    mel_filters = torch.from_numpy(np.ascontiguousarray(filters[bins[0] : bins[1]])).to(device)

    batch, half = waveforms.shape[0], n_fft // 2
    num_frames = 1 + (waveforms.shape[1] + 2 * half - n_fft) // hop_length
    features = torch.empty((batch, 1, num_frames, filters.shape[1]), dtype=torch.float32, device=device)
    chunk = max(1, _CHUNK_ELEMENTS // (num_frames * n_fft))
    with _torch_threads(num_threads if device.type == "cpu" else None):
        for start in range(0, batch, chunk):
            stop = min(batch, start + chunk)
            padded = _center(waveforms[start:stop], half)
            features[start:stop, 0] = _log_mel(padded, window, mel_filters, bins, n_fft, hop_length)
    return features


def fast_clap_features(
    feature_extractor: ClapFeatureExtractor,
    audios: Sequence[np.ndarray],
    num_threads: int | None = 1,
    device: torch.device | str | None = None,
) -> dict:
    """Batched equivalent of ``feature_extractor(audios, sampling_rate=sr, return_tensors="pt")``.

    For ``truncation="rand_trunc"``, any ``padding`` (``"repeatpad"``, ``"repeat"``, anything else = zero
    padding) and clips sampled at ``feature_extractor.sampling_rate``. Returns ``{"input_features": float32
    (B, 1, T, n_mels), "is_longer": bool (B, 1)}`` with ``T = nb_max_samples // hop_length + 1``, on
    ``device`` (default: the CPU), where the log-mel is computed (:func:`clap_log_mel`).

    Clips longer than ``nb_max_samples`` are cropped with the same ``np.random.randint`` calls, in the same
    order, as the extractor: seed ``np.random`` the same way to get the same crops and the same RNG state
    afterwards. Raises ``ValueError`` where :func:`fast_path_unsupported_reason` gives a reason; use
    :func:`clap_features` to fall back automatically.

    ``num_threads``: torch intra-op threads for the computation on the CPU, set for the duration of the
    call and then restored (``torch.set_num_threads`` is process-wide); ``None`` keeps the current setting.
    The default 1 matches DataLoader workers (already single-threaded) and the original extractor
    (single-threaded numpy). Each op here works on a few MB only: on a busy 2-core machine every
    multi-threaded op waited for a descheduled thread, and the fast path with 2 threads was up to 10x slower
    than with 1 (see ``benchmarks/bench_features.py``). The result does not depend on it.
    """
    reason = fast_path_unsupported_reason(feature_extractor, audios)
    if reason is not None:
        raise ValueError(f"fast_clap_features cannot reproduce this extractor call: {reason}")
    waveforms, is_longer = prepare_clap_waveforms(feature_extractor, audios)
    if device is not None:
        waveforms, is_longer = waveforms.to(device), is_longer.to(device)
    return {"input_features": clap_log_mel(feature_extractor, waveforms, num_threads), "is_longer": is_longer}


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


# The key under which a batch carries CLAP waveforms whose log-mel is still to be computed on the device.
WAVEFORMS_KEY = "clap_waveforms"


def device_log_mel_unsupported_reason(processor: Any) -> str | None:
    """Why ``processor``'s features cannot be left to the model's device (:func:`finish_on_device`), or
    ``None`` if they can: only a ``ClapFeatureExtractor`` on the exact fast path has a torch log-mel."""
    extractor = processor.feature_extractor
    if not isinstance(extractor, ClapFeatureExtractor):
        return f"{type(extractor).__name__} has no torch feature path (only ClapFeatureExtractor has)"
    return fast_path_unsupported_reason(extractor)


def resolve_log_mel_on_device(requested: bool | None, device_type: str, processor: Any) -> bool:
    """``--log_mel_on_device`` of a run whose model is on ``device_type``: as given, by default on a GPU
    (on the CPU the DataLoader workers compute it beside the model's work), and off where ``processor``'s
    features cannot be finished on the device (:func:`device_log_mel_unsupported_reason`): a warning where
    it was asked for, a note where it was the default."""
    wanted = device_type != "cpu" if requested is None else requested
    reason = device_log_mel_unsupported_reason(processor) if wanted else None
    if reason is not None:
        level = logging.WARNING if requested else logging.INFO
        logger.log(level, "--log_mel_on_device: not for this processor (%s); the workers compute it", reason)
    return wanted and reason is None


def audio_model_inputs(
    processor: Any, audios: Sequence[np.ndarray], log_mel_on_device: bool = False
) -> dict[str, torch.Tensor]:
    """The audio keyword arguments of a model's forward for a batch of mono clips at the processor's rate.

    One function for every model family: a ``ClapFeatureExtractor`` goes through :func:`clap_features`
    (``input_features``, ``is_longer``; the fast path where it is exact); a processor with its own
    ``audio_inputs`` (the dual encoder's: ``input_values`` or ``input_features`` and the padding mask as
    ``audio_attention_mask``) through that; any other extractor through its ``__call__``, its padding mask
    renamed ``audio_attention_mask`` (``attention_mask`` is the text tower's). Callers seed and restore
    ``np.random`` around it: CLAP's extractor crops long clips with it.

    ``log_mel_on_device``: where CLAP's fast path applies, stop before the log-mel and return the prepared
    waveforms under :data:`WAVEFORMS_KEY` (with ``is_longer``), for :func:`finish_on_device` to finish once
    the batch is on the model's device: DataLoader workers then only decode, resample and crop. Elsewhere
    (:func:`device_log_mel_unsupported_reason`) the features are computed here as without it.
    """
    extractor = processor.feature_extractor
    if isinstance(extractor, ClapFeatureExtractor):
        if log_mel_on_device and fast_path_unsupported_reason(extractor, audios) is None:
            waveforms, is_longer = prepare_clap_waveforms(extractor, list(audios))
            return {WAVEFORMS_KEY: waveforms, "is_longer": is_longer}
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


def finish_on_device(processor: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    """``inputs`` with the waveforms left by ``audio_model_inputs(..., log_mel_on_device=True)`` replaced by
    their log-mel ``input_features``, computed on the waveforms' device; other inputs are returned as they
    are (so calling it on any batch is safe)."""
    if WAVEFORMS_KEY not in inputs:
        return inputs
    finished = {key: value for key, value in inputs.items() if key != WAVEFORMS_KEY}
    finished["input_features"] = clap_log_mel(processor.feature_extractor, inputs[WAVEFORMS_KEY])
    return finished
