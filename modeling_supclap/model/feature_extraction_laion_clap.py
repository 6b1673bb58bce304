"""LAION-CLAP's own audio preprocessing, as a transformers feature extractor.

``LaionClapFeatureExtractor`` produces the ``input_features`` / ``is_longer`` a ``ClapModel`` takes, computed
the way ``laion_clap`` (1.1.x) computes them for ``CLAP_Module.get_audio_embedding_from_data``, so a model
converted from a LAION-CLAP checkpoint (``supclap-convert``) sees exactly the inputs it was trained on.
Where ``transformers.ClapFeatureExtractor`` differs (measured in docs/CONVERSION.md):

* the int16 round trip: LAION clips the waveform to [-1, 1] and quantises it (``(x * 32767).astype(int16)``,
  truncated toward zero, then ``/ 32767``) before anything else; ``ClapFeatureExtractor`` does not;
* unfused models: the log-mel of torchlibrosa inside the HTS-AT forward: a float32 ``Conv1d`` STFT whose
  kernels are the DFT matrix times a periodic Hann window, the librosa (Slaney) mel bank, ``fmin`` 50 Hz;
* fused models: torchaudio's ``MelSpectrogram`` (``torch.stft``, HTK mel bank without norm) and
  torchvision's ``Resize`` of the whole spectrogram (bilinear, no antialiasing: torchvision < 0.17, as
  LAION trained) for the global channel;
* ``is_longer`` is whether the clip is longer than the window; ``ClapFeatureExtractor`` (``fusion``) also
  flags one random clip when none is, which sends a short clip through the fusion layers.

Random crops of long clips draw from the global ``np.random`` in LAION's order (``rand_trunc``: one
``randint``; ``fusion``: three ``choice`` then one ``randint``), like ``ClapFeatureExtractor``: seed it for
repeatable features (the project's evaluation does).

Part of the model's load-time files: imports numpy, torch and transformers only, so a folder holding it
loads with ``trust_remote_code=True`` where this package is not installed.

Example::

    >>> import numpy as np
    >>> extractor = LaionClapFeatureExtractor(truncation="rand_trunc")
    >>> one_second = 0.1 * np.random.default_rng(0).standard_normal(48000).astype(np.float32)
    >>> features = extractor([one_second], sampling_rate=48000, return_tensors="pt")
    >>> tuple(features["input_features"].shape), features["is_longer"].tolist()
    ((1, 1, 1001, 64), [[False]])
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers.feature_extraction_sequence_utils import SequenceFeatureExtractor
from transformers.feature_extraction_utils import BatchFeature

__all__ = [
    "LaionClapFeatureExtractor",
    "quantize_int16",
    "slaney_mel_filter_bank",
    "torchlibrosa_stft_kernels",
]

TRUNCATIONS = ("rand_trunc", "fusion")
PADDINGS = ("repeatpad", "repeat", "pad")
# 10 * log10(max(x, AMIN)) - 10 * log10(max(AMIN, REFERENCE)): torchlibrosa's and torchaudio's power_to_db
# as LAION configures them (top_db None).
_AMIN, _REFERENCE = 1e-10, 1.0


def quantize_int16(waveform: np.ndarray) -> np.ndarray:
    """``int16_to_float32(float32_to_int16(x))`` of laion_clap: clip to [-1, 1], scale by 32767, truncate
    toward zero, scale back; float32. Computed in the input's dtype, as LAION does."""
    clipped = np.clip(waveform, a_min=-1.0, a_max=1.0)
    return ((clipped * 32767.0).astype(np.int16) / 32767.0).astype(np.float32)


def _hz_to_mel_slaney(frequency: float) -> np.ndarray:
    # numpy's log, not math's: the bank must match librosa's bit for bit
    frequency = np.asarray(frequency, dtype=np.float64)
    linear_step, log_start_hz = 200.0 / 3, 1000.0
    if frequency < log_start_hz:
        return frequency / linear_step
    return log_start_hz / linear_step + np.log(frequency / log_start_hz) / (np.log(6.4) / 27.0)


def _mel_to_hz_slaney(mels: np.ndarray) -> np.ndarray:
    linear_step, log_start_hz = 200.0 / 3, 1000.0
    log_start_mel, log_step = log_start_hz / linear_step, np.log(6.4) / 27.0
    frequencies = linear_step * mels
    logarithmic = mels >= log_start_mel
    frequencies[logarithmic] = log_start_hz * np.exp(log_step * (mels[logarithmic] - log_start_mel))
    return frequencies


def slaney_mel_filter_bank(
    sampling_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float
) -> np.ndarray:
    """``librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax)`` (Slaney scale and norm, float32), computed in
    librosa's order of operations so that it is bit-identical; shape ``(n_mels, n_fft // 2 + 1)``.
    torchlibrosa's ``melW`` (stored in LAION checkpoints) is its transpose."""
    weights = np.zeros((n_mels, 1 + n_fft // 2), dtype=np.float32)
    fft_frequencies = np.fft.rfftfreq(n=n_fft, d=1.0 / sampling_rate)
    mel_edges = np.linspace(_hz_to_mel_slaney(float(fmin)), _hz_to_mel_slaney(float(fmax)), n_mels + 2)
    edges_hz = _mel_to_hz_slaney(mel_edges)
    widths = np.diff(edges_hz)
    ramps = np.subtract.outer(edges_hz, fft_frequencies)
    for i in range(n_mels):
        lower = -ramps[i] / widths[i]
        upper = ramps[i + 2] / widths[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (edges_hz[2 : n_mels + 2] - edges_hz[:n_mels]))[:, np.newaxis]
    return weights


@functools.lru_cache(maxsize=4)
def torchlibrosa_stft_kernels(n_fft: int) -> tuple[torch.Tensor, torch.Tensor]:
    """torchlibrosa's STFT ``Conv1d`` kernels, ``(n_fft // 2 + 1, 1, n_fft)`` each: real and imaginary parts
    of ``omega ** (x * y)`` (complex128) times the periodic Hann window, cast to float32 (bit-identical to the
    ``spectrogram_extractor.stft.conv_{real,imag}.weight`` of LAION checkpoints). Cached: read-only."""
    x, y = np.meshgrid(np.arange(n_fft), np.arange(n_fft))
    dft = np.power(np.exp(-2j * np.pi / n_fft), x * y)
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)
    kept = dft[:, : n_fft // 2 + 1] * window[:, None]
    real = torch.tensor(np.real(kept).T, dtype=torch.float32)[:, None, :]
    imaginary = torch.tensor(np.imag(kept).T, dtype=torch.float32)[:, None, :]
    return real, imaginary


@functools.lru_cache(maxsize=4)
def _slaney_bank(sampling_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> torch.Tensor:
    return torch.from_numpy(slaney_mel_filter_bank(sampling_rate, n_fft, n_mels, fmin, fmax).T.copy())


@functools.lru_cache(maxsize=4)
def _htk_bank(sampling_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> torch.Tensor:
    """``torchaudio.functional.melscale_fbanks(n_fft // 2 + 1, fmin, fmax, n_mels, sampling_rate, norm=None,
    mel_scale="htk")`` in the same float32 torch operations; shape ``(n_fft // 2 + 1, n_mels)``."""
    all_frequencies = torch.linspace(0, sampling_rate // 2, n_fft // 2 + 1)
    mel_min = 2595.0 * math.log10(1.0 + fmin / 700.0)
    mel_max = 2595.0 * math.log10(1.0 + fmax / 700.0)
    edges = 700.0 * (10.0 ** (torch.linspace(mel_min, mel_max, n_mels + 2) / 2595.0) - 1.0)
    widths = edges[1:] - edges[:-1]
    slopes = edges.unsqueeze(0) - all_frequencies.unsqueeze(1)
    down = (-1.0 * slopes[:, :-2]) / widths[:-1]
    up = slopes[:, 2:] / widths[1:]
    return torch.max(torch.zeros(1), torch.min(down, up))


def _power_to_db(power: torch.Tensor) -> torch.Tensor:
    return 10.0 * torch.log10(torch.clamp(power, min=_AMIN)) - 10.0 * math.log10(max(_AMIN, _REFERENCE))


class LaionClapFeatureExtractor(SequenceFeatureExtractor):
    r"""Log-mel features exactly as LAION-CLAP computes them (see the module docstring for what differs from
    ``ClapFeatureExtractor``). Same inputs, outputs and argument names as ``ClapFeatureExtractor``, so
    ``ClapProcessor``, the zero-shot pipeline and this project's training and evaluation use it unchanged.

    Args:
        feature_size: mel bins (64 in every LAION-CLAP model).
        sampling_rate: the rate the clips must have (48000).
        hop_length, fft_window_size: STFT hop and window (480, 1024).
        max_length_s: window in seconds (10): longer clips are cropped (or fused), shorter ones padded.
        frequency_min, frequency_max: mel bank range (LAION: 50 and 14000 Hz).
        truncation: ``"rand_trunc"`` (unfused checkpoints: one random 10 s crop, torchlibrosa log-mel) or
            ``"fusion"`` (fused ones: 4 channels, whole-clip shrink and three random chunks).
        padding: ``"repeatpad"`` (LAION's default: repeat whole copies, then zeros), ``"repeat"``, ``"pad"``.
        quantize_int16: the int16 round trip of ``get_audio_embedding_from_data`` (on by default; LAION's
            ``use_tensor=True`` path skips it).
        fusion_resize_antialias: antialias the fused global channel's shrink (torchvision >= 0.17 does by
            default; LAION's models were trained without).
    """

    model_input_names = ["input_features", "is_longer"]

    def __init__(
        self,
        feature_size: int = 64,
        sampling_rate: int = 48_000,
        hop_length: int = 480,
        max_length_s: int = 10,
        fft_window_size: int = 1024,
        padding_value: float = 0.0,
        return_attention_mask: bool = False,
        frequency_min: float = 50,
        frequency_max: float = 14_000,
        truncation: str = "rand_trunc",
        padding: str = "repeatpad",
        quantize_int16: bool = True,
        fusion_resize_antialias: bool = False,
        **kwargs: Any,
    ):
        super().__init__(
            feature_size=feature_size,
            sampling_rate=sampling_rate,
            padding_value=padding_value,
            return_attention_mask=return_attention_mask,
            **kwargs,
        )
        if truncation not in TRUNCATIONS:
            raise ValueError(f"truncation must be one of {TRUNCATIONS}, got {truncation!r}")
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
        if not 0 <= frequency_min < frequency_max <= sampling_rate / 2:
            raise ValueError(
                f"need 0 <= frequency_min < frequency_max <= sampling_rate / 2, got {frequency_min}, "
                f"{frequency_max}, {sampling_rate}"
            )
        self.hop_length = hop_length
        self.max_length_s = max_length_s
        self.nb_max_samples = int(max_length_s * sampling_rate)
        self.fft_window_size = fft_window_size
        self.frequency_min = frequency_min
        self.frequency_max = frequency_max
        self.truncation = truncation
        self.padding = padding
        self.quantize_int16 = quantize_int16
        self.fusion_resize_antialias = fusion_resize_antialias
        self.top_db = None  # as ClapFeatureExtractor's attribute: LAION applies no dB floor

    # -- the two log-mels ------------------------------------------------------------------------------------
    def unfused_log_mel(self, waveforms: torch.Tensor) -> torch.Tensor:
        """``(B, L)`` float32 -> ``(B, 1, frames, n_mels)``: torchlibrosa's ``Spectrogram`` and
        ``LogmelFilterBank`` as LAION's HTS-AT configures them (reflect padding, power 2)."""
        real_kernel, imaginary_kernel = torchlibrosa_stft_kernels(self.fft_window_size)
        half = self.fft_window_size // 2
        padded = F.pad(waveforms[:, None, :], (half, half), mode="reflect")
        real = F.conv1d(padded, real_kernel, stride=self.hop_length)[:, None].transpose(2, 3)
        imaginary = F.conv1d(padded, imaginary_kernel, stride=self.hop_length)[:, None].transpose(2, 3)
        bank = _slaney_bank(*self._bank_parameters())
        return _power_to_db(torch.matmul(real**2 + imaginary**2, bank))

    def fusion_log_mel(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(L,)`` float32 -> ``(frames, n_mels)``: LAION's ``get_mel`` (torchaudio ``MelSpectrogram``, HTK
        bank without norm, ``AmplitudeToDB(top_db=None)``)."""
        spectrum = torch.stft(
            waveform[None],
            n_fft=self.fft_window_size,
            hop_length=self.hop_length,
            win_length=self.fft_window_size,
            window=torch.hann_window(self.fft_window_size),
            center=True,
            pad_mode="reflect",
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        power = spectrum.abs().pow(2.0)  # (1, freq, frames)
        bank = _htk_bank(*self._bank_parameters())
        mel = torch.matmul(power.transpose(-1, -2), bank).transpose(-1, -2)
        return _power_to_db(mel)[0].T

    def _bank_parameters(self) -> tuple[int, int, int, float, float]:
        return (
            int(self.sampling_rate),
            int(self.fft_window_size),
            int(self.feature_size),
            float(self.frequency_min),
            float(self.frequency_max),
        )

    # -- one clip, as laion_clap's training/data.py: get_audio_features --------------------------------------
    def _pad(self, waveform: torch.Tensor, max_length: int, padding: str) -> torch.Tensor:
        if padding == "repeatpad":
            waveform = waveform.repeat(int(max_length / waveform.shape[0]))
            return F.pad(waveform, (0, max_length - waveform.shape[0]), mode="constant", value=0)
        if padding == "repeat":
            return waveform.repeat(int(max_length / waveform.shape[0]) + 1)[:max_length]
        return F.pad(waveform, (0, max_length - waveform.shape[0]), mode="constant", value=0)

    def _fused_long(self, mel: torch.Tensor, chunk_frames: int) -> tuple[torch.Tensor, bool]:
        total_frames = mel.shape[0]
        if total_frames == chunk_frames:  # a clip just over the window: one chunk, not fused
            return torch.stack([mel, mel, mel, mel]), False
        ranges = np.array_split(list(range(0, total_frames - chunk_frames + 1)), 3)
        ranges = [part if len(part) else [0] for part in ranges]
        starts = [np.random.choice(part) for part in ranges]
        shrunk = F.interpolate(
            mel[None, None],
            size=[chunk_frames, self.feature_size],
            mode="bilinear",
            align_corners=False,
            antialias=self.fusion_resize_antialias,
        )[0, 0]
        chunks = [mel[start : start + chunk_frames] for start in starts]
        return torch.stack([shrunk, *chunks]), True

    def _one_clip(
        self, waveform: np.ndarray, max_length: int, truncation: str, padding: str
    ) -> tuple[torch.Tensor, bool]:
        if waveform.dtype not in (np.float32, np.float64):
            waveform = waveform.astype(np.float32)
        if self.quantize_int16:
            waveform = quantize_int16(waveform)
        samples = torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32))
        if samples.shape[0] == 0:
            raise ValueError("an audio clip has no samples")
        fused = None
        if samples.shape[0] > max_length:
            longer = True
            if truncation == "fusion":
                fused, longer = self._fused_long(
                    self.fusion_log_mel(samples), max_length // self.hop_length + 1
                )
            start = np.random.randint(0, samples.shape[0] - max_length + 1)  # LAION draws it in fusion too
            samples = samples[start : start + max_length]
        else:
            longer = False
            if samples.shape[0] < max_length:
                samples = self._pad(samples, max_length, padding)
            if truncation == "fusion":
                mel = self.fusion_log_mel(samples)
                fused = torch.stack([mel, mel, mel, mel])
        if truncation == "fusion":
            return fused, longer
        return self.unfused_log_mel(samples[None])[0], longer

    def __call__(
        self,
        raw_speech: np.ndarray | list[float] | list[np.ndarray] | list[list[float]],
        truncation: str | None = None,
        padding: bool | str | None = None,
        max_length: int | None = None,
        sampling_rate: int | None = None,
        return_tensors: str | None = None,
        **kwargs: Any,
    ) -> BatchFeature:
        """Features of one clip or a batch of mono clips (arrays or lists of floats at ``sampling_rate``).

        Returns ``input_features`` (``(B, 1, frames, n_mels)``, or ``(B, 4, frames, n_mels)`` with
        ``fusion``) and ``is_longer`` (``(B, 1)``), float32 / bool, as ``ClapFeatureExtractor`` does.
        """
        truncation = self.truncation if truncation is None else truncation
        padding = self.padding if padding is None or padding is True else padding
        if truncation not in TRUNCATIONS:
            raise ValueError(f"truncation must be one of {TRUNCATIONS}, got {truncation!r}")
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
        if sampling_rate is not None and sampling_rate != self.sampling_rate:
            raise ValueError(
                f"{type(self).__name__} expects audio sampled at {self.sampling_rate} Hz, got "
                f"{sampling_rate} Hz: resample it first"
            )
        is_batched_numpy = isinstance(raw_speech, np.ndarray) and raw_speech.ndim > 1
        if is_batched_numpy and raw_speech.ndim > 2:
            raise ValueError(f"only mono audio is supported, got an array of shape {raw_speech.shape}")
        is_batched = is_batched_numpy or (
            isinstance(raw_speech, (list, tuple))
            and len(raw_speech) > 0
            and isinstance(raw_speech[0], (np.ndarray, tuple, list))
        )
        clips = [np.asarray(clip) for clip in raw_speech] if is_batched else [np.asarray(raw_speech)]
        if any(clip.ndim != 1 for clip in clips):
            raise ValueError("every clip must be mono: a 1-D array of samples")
        max_length = int(max_length or self.nb_max_samples)
        features, is_longer = [], []
        with torch.no_grad():
            for clip in clips:
                mel, longer = self._one_clip(clip, max_length, truncation, padding)
                features.append(mel.numpy())
                is_longer.append([longer])
        batch = BatchFeature({"input_features": features, "is_longer": is_longer})
        return batch.convert_to_tensors(return_tensors) if return_tensors is not None else batch
