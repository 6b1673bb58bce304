"""The long-audio policy's windows: they cover the whole clip, in order, at the hop asked, and every
extractor family says how long its window is."""

from __future__ import annotations

import numpy as np
import pytest
import transformers
from hypothesis import given, settings
from hypothesis import strategies as st

from modeling_supclap.data.long_audio import LongAudioPolicy, audio_window_samples, window_starts
from modeling_supclap.model.processing_supclap_dual_encoder import fbank_frames


@settings(max_examples=300, deadline=None)
@given(num_samples=st.integers(1, 5000), window=st.integers(1, 700), hop_fraction=st.floats(0.05, 1.0))
def test_windows_cover_the_clip_in_order_at_the_hop(num_samples, window, hop_fraction):
    hop = max(1, int(window * hop_fraction))
    starts = window_starts(num_samples, window, hop)
    assert starts[0] == 0 and starts == sorted(set(starts))
    if num_samples <= window:
        assert starts == [0]
        return
    covered = np.zeros(num_samples, dtype=bool)
    for start in starts:
        assert 0 <= start and start + window <= num_samples  # every window is whole
        covered[start : start + window] = True
    assert covered.all()
    assert starts[-1] + window == num_samples  # the last one ends with the clip
    assert all(b - a == hop for a, b in zip(starts[:-2], starts[1:-1]))  # the hop, but for the last step
    assert 0 < starts[-1] - starts[-2] <= hop


def test_policies_cut_a_long_clip_as_documented():
    extractor = transformers.ClapFeatureExtractor(
        feature_size=16, sampling_rate=16000, hop_length=160, max_length_s=2, truncation="rand_trunc"
    )
    clip = np.arange(int(16000 * 5.5), dtype=np.float32)
    windows = LongAudioPolicy("windows").windows(clip, extractor)
    assert [int(w[0]) for w in windows] == [0, 32000, 56000] and {len(w) for w in windows} == {32000}
    overlapping = LongAudioPolicy("windows", window_hop_seconds=0.5).windows(clip, extractor)
    assert [int(w[0]) for w in overlapping] == list(range(0, 56000, 8000)) + [56000]
    (first,) = LongAudioPolicy("first").windows(clip, extractor)
    np.testing.assert_array_equal(first, clip[:32000])
    (whole,) = LongAudioPolicy("random").windows(clip, extractor)  # the extractor crops it
    assert whole is clip
    short = clip[:1000]
    for policy in ("windows", "first", "random"):
        assert [len(w) for w in LongAudioPolicy(policy).windows(short, extractor)] == [1000]


def test_every_extractor_family_has_its_window():
    assert (
        audio_window_samples(transformers.ClapFeatureExtractor(max_length_s=10, sampling_rate=48000))
        == 480000
    )
    whisper = transformers.WhisperFeatureExtractor(feature_size=16, sampling_rate=16000, chunk_length=1)
    assert audio_window_samples(whisper) == 16000
    ast = transformers.ASTFeatureExtractor(num_mel_bins=16, max_length=100, sampling_rate=16000)
    samples = audio_window_samples(ast)
    assert fbank_frames(samples, 16000) == 100 and fbank_frames(samples - 1, 16000) == 99  # the shortest
    assert audio_window_samples(transformers.Wav2Vec2FeatureExtractor()) is None  # takes any length


@pytest.mark.parametrize(
    ("policy", "hop", "message"),
    [
        ("sliding", None, "long_audio must be one of windows, first, random, got 'sliding'"),
        ("windows", 0, "window_hop_seconds must be a positive number of seconds, got 0"),
        ("windows", float("nan"), "window_hop_seconds must be a positive number of seconds"),
    ],
)
def test_a_bad_policy_is_one_clear_error(policy, hop, message):
    with pytest.raises(ValueError, match=message):
        LongAudioPolicy(policy, hop)


def test_a_hop_that_skips_audio_or_makes_thousands_of_windows_is_refused():
    extractor = transformers.ClapFeatureExtractor(
        sampling_rate=16000, max_length_s=2, truncation="rand_trunc"
    )
    clip = np.zeros(160000, np.float32)
    with pytest.raises(ValueError, match="under 1 % of the model's 2 s window: use a hop of at least 0.02 s"):
        LongAudioPolicy("windows", 0.001).windows(clip, extractor)
    with pytest.raises(ValueError, match="longer than the model's 2 s window: the windows would skip audio"):
        LongAudioPolicy("windows", 2.5).windows(clip, extractor)
