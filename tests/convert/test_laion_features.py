"""LaionClapFeatureExtractor against a float64 numpy reference of LAION-CLAP's preprocessing, written from its
description (laion_clap 1.1.7: training/data.py, torchlibrosa 0.1.0, torchaudio's MelSpectrogram), with
transformers' own filter banks. Bit-exactness against LAION's code itself is the slow parity test's job."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import ClapFeatureExtractor
from transformers.audio_utils import mel_filter_bank

from modeling_supclap import LaionClapFeatureExtractor
from modeling_supclap.model.feature_extraction_laion_clap import quantize_int16, slaney_mel_filter_bank

RATE, N_FFT, HOP, WINDOW = 48000, 1024, 480, 480000


def _bank(scale: str) -> np.ndarray:
    """(513, 64) float64: the Slaney bank (librosa; unfused) or the unnormed HTK bank (torchaudio; fused)."""
    norm = "slaney" if scale == "slaney" else None
    return mel_filter_bank(
        num_frequency_bins=N_FFT // 2 + 1,
        num_mel_filters=64,
        min_frequency=50,
        max_frequency=14000,
        sampling_rate=RATE,
        norm=norm,
        mel_scale=scale,
    )


def reference_log_mel(waveform: np.ndarray, scale: str) -> np.ndarray:
    """(frames, 64) float64: centred STFT (reflect), periodic Hann, power, mel, 10 log10(max(., 1e-10))."""
    padded = np.pad(np.asarray(waveform, np.float64), N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP]
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)
    power = np.abs(np.fft.rfft(frames * hann, axis=-1)) ** 2
    return 10 * np.log10(np.maximum(power @ _bank(scale), 1e-10))


def reference_shrink(mel: np.ndarray, frames: int) -> np.ndarray:
    """Bilinear resize of the time axis to ``frames`` (align_corners=False, no antialiasing)."""
    source = np.clip((np.arange(frames) + 0.5) * mel.shape[0] / frames - 0.5, 0, None)
    low = np.minimum(np.floor(source).astype(int), mel.shape[0] - 1)
    high = np.minimum(low + 1, mel.shape[0] - 1)
    weight = (source - low)[:, None]
    return (1 - weight) * mel[low] + weight * mel[high]


def _noise(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def test_the_int16_round_trip_clips_and_truncates_toward_zero():
    values = np.array([0.5, -0.5, 1.7, -3.0, 1e-5, -1e-5, 0.99999], dtype=np.float32)
    expected = np.array([16383, -16383, 32767, -32767, 0, 0, 32766]) / 32767.0
    assert np.array_equal(quantize_int16(values), expected.astype(np.float32))


def test_the_slaney_bank_is_librosas_bank():
    ours = slaney_mel_filter_bank(RATE, N_FFT, 64, 50, 14000)
    assert ours.dtype == np.float32 and ours.shape == (64, 513)
    np.testing.assert_allclose(ours, _bank("slaney").T, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("seconds", [2.0, 10.0, 13.0])
def test_unfused_log_mel_is_the_reference(seconds):
    """A short clip (repeated whole, then zero-padded), one filling the window, a long one (a random crop)."""
    clip = _noise(seconds)
    extractor = LaionClapFeatureExtractor(truncation="rand_trunc")
    np.random.seed(7)
    features = extractor(clip, sampling_rate=RATE, return_tensors="np")
    waveform = quantize_int16(clip).astype(np.float64)
    if waveform.size > WINDOW:
        np.random.seed(7)
        start = np.random.randint(0, waveform.size - WINDOW + 1)
        waveform = waveform[start : start + WINDOW]
    else:
        waveform = np.tile(waveform, WINDOW // waveform.size)
        waveform = np.pad(waveform, (0, WINDOW - waveform.size))
    reference = reference_log_mel(waveform, "slaney")
    assert (
        features["input_features"].shape == (1, 1, 1001, 64)
        and features["input_features"].dtype == np.float32
    )
    difference = np.abs(features["input_features"][0, 0] - reference)
    assert difference.max() < 0.01 and difference.mean() < 1e-3  # float32 (LAION's) against float64, in dB
    assert features["is_longer"].tolist() == [[seconds > 10]]


def test_fused_long_clip_is_the_shrunk_whole_and_three_random_chunks():
    clip = _noise(25.0, seed=1)
    extractor = LaionClapFeatureExtractor(truncation="fusion")
    np.random.seed(3)
    features = extractor([clip], sampling_rate=RATE, return_tensors="np")["input_features"][0]
    after = np.random.get_state()

    mel = reference_log_mel(quantize_int16(clip), "htk")
    chunk = WINDOW // HOP + 1
    ranges = np.array_split(np.arange(mel.shape[0] - chunk + 1), 3)
    np.random.seed(3)
    starts = [np.random.choice(part) for part in ranges]  # LAION's order: three choices, then the crop
    np.random.randint(0, clip.size - WINDOW + 1)
    assert str(np.random.get_state()) == str(after)
    expected = [reference_shrink(mel, chunk)] + [mel[start : start + chunk] for start in starts]
    for channel, reference in enumerate(expected):
        assert np.abs(features[channel] - reference).max() < 0.01, channel


def test_is_longer_says_whether_the_clip_is_longer_than_the_window():
    """Unlike ClapFeatureExtractor(truncation="fusion"), no short clip is flagged at random (that flag sends a
    short clip through the fusion layers), and a clip just over the window is one chunk, not fused."""
    extractor = LaionClapFeatureExtractor(truncation="fusion")
    clips = [_noise(2.0), _noise(3.0, 1), np.concatenate([_noise(10.0), _noise(0.002)])]
    features = extractor(clips, sampling_rate=RATE, return_tensors="pt")
    assert features["is_longer"].tolist() == [[False], [False], [False]]
    assert all(
        torch.equal(features["input_features"][i, 0], features["input_features"][i, 3]) for i in range(3)
    )
    hub = ClapFeatureExtractor(frequency_min=50, truncation="fusion")
    assert sum(x[0] for x in hub(clips[:2], sampling_rate=RATE)["is_longer"]) == 1


def test_seeded_features_repeat_and_the_extractor_round_trips(tmp_path):
    extractor = LaionClapFeatureExtractor(truncation="fusion", fusion_resize_antialias=False)
    clip = _noise(14.0)
    np.random.seed(0)
    first = extractor(clip, sampling_rate=RATE, return_tensors="pt")["input_features"]
    extractor.save_pretrained(tmp_path)
    loaded = LaionClapFeatureExtractor.from_pretrained(tmp_path)
    assert loaded.to_dict() == extractor.to_dict()
    np.random.seed(0)
    assert torch.equal(loaded(clip, sampling_rate=RATE, return_tensors="pt")["input_features"], first)


def test_wrong_inputs_get_one_message():
    extractor = LaionClapFeatureExtractor()
    with pytest.raises(
        ValueError, match="expects audio sampled at 48000 Hz, got 16000 Hz: resample it first"
    ):
        extractor(_noise(1.0), sampling_rate=16000)
    with pytest.raises(ValueError, match="only mono audio"):
        extractor(np.zeros((2, 2, 100), np.float32), sampling_rate=RATE)
    with pytest.raises(ValueError, match="has no samples"):
        extractor([np.zeros(0, np.float32)], sampling_rate=RATE)
    with pytest.raises(ValueError, match="truncation must be one of"):
        LaionClapFeatureExtractor(truncation="crop")
