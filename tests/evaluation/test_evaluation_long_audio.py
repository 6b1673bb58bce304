"""Whole-clip embeddings (--long_audio): the same bits for the same clip whatever its batch, its workers
or the run, the mean of its windows under ``windows``, and evaluation's old seeded crops under ``random``;
for both model families."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.embedding import clips, tiny_clap, tiny_dual_encoder

from modeling_supclap.data.features import audio_model_inputs
from modeling_supclap.data.long_audio import audio_window_samples, window_starts
from modeling_supclap.data.records import AudioTextRecord
from modeling_supclap.evaluation.encode import encode_audio, encode_audio_windows, encode_records

FAMILIES = ("clap", "dual_encoder")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    return {"clap": tiny_clap(), "dual_encoder": tiny_dual_encoder(tmp_path_factory.mktemp("towers"))}


def _window(processor) -> int:
    return audio_window_samples(processor.feature_extractor)


@pytest.mark.parametrize("family", FAMILIES)
def test_windows_is_the_renormalised_mean_of_its_windows_embeddings(models, family):
    model, processor = models[family]
    window = _window(processor)
    (clip,) = clips([3.4 * window / 16000], seed=1)
    starts = window_starts(len(clip), window, window)
    assert len(starts) == 4 and starts[-1] + window == len(clip)
    with torch.no_grad():  # by hand: slice, embed the windows in one forward, average, renormalise
        inputs = audio_model_inputs(processor, [clip[s : s + window] for s in starts])
        windows = torch.nn.functional.normalize(model.get_audio_features(**inputs).pooler_output, dim=-1)
    by_hand = torch.nn.functional.normalize(windows.mean(dim=0), dim=-1)
    encoded = encode_audio_windows(model, processor, [clip], "windows", window_batch_size=len(starts))
    assert encoded.num_windows == [4]
    assert torch.equal(encoded.embeds[0], by_hand)


@pytest.mark.parametrize("family", FAMILIES)
def test_first_is_the_first_window(models, family):
    model, processor = models[family]
    (clip,) = clips([2.5 * _window(processor) / 16000], seed=2)
    first = encode_audio_windows(model, processor, [clip], "first")
    assert first.num_windows == [1]
    assert torch.equal(first.embeds, encode_audio(model, processor, [clip[: _window(processor)]]))


def _records(seconds: list[float]) -> list[AudioTextRecord]:
    return [
        AudioTextRecord(
            audio={"array": clip, "sampling_rate": 16000}, captions=[f"a sound {i}"], source=f"clip {i}"
        )
        for i, clip in enumerate(clips(seconds, seed=3))
    ]


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_a_clip_embeds_to_the_same_bits_whatever_its_batch_its_workers_and_the_run(models, family):
    model, processor = models[family]
    records = _records([0.4, 7.3, 1.1, 2.0, 5.6, 0.9, 3.3, 4.4, 1.9, 6.2, 0.7, 2.8])
    runs = [
        encode_records(model, processor, records, batch_size=batch, num_workers=workers).audio_embeds
        for batch, workers in ((1, 0), (32, 2), (32, 2), (5, 0))
    ]
    for other in runs[1:]:
        assert torch.equal(other, runs[0])
    assert (runs[0].norm(dim=-1) - 1).abs().max() < 1e-6


def test_random_is_evaluations_seeded_crop_as_before(models):
    """``random``: the whole clip to the extractor, which crops it with np.random seeded by ``seed``."""
    model, processor = models["clap"]
    batch = clips([4.5, 1.0, 6.1], seed=4)
    with torch.no_grad():
        np.random.seed(11)
        inputs = processor.feature_extractor(batch, sampling_rate=16000, return_tensors="pt")
        before = torch.nn.functional.normalize(model.get_audio_features(**inputs).pooler_output, dim=-1)
    state = np.random.get_state()
    now = encode_audio(model, processor, batch, seed=11, long_audio="random")
    torch.testing.assert_close(now, before, atol=1e-6, rtol=0)  # a forward of another shape: last bits
    assert np.array_equal(np.random.get_state()[1], state[1])  # the global RNG is left as it was
    other_seed = encode_audio(model, processor, batch, seed=12, long_audio="random")
    assert not torch.allclose(other_seed[0], now[0])  # the long clips' crops moved
    assert torch.equal(other_seed[1], now[1])  # the short one is never cropped


def test_log_mel_on_the_device_gives_the_same_embeddings(models):
    model, processor = models["clap"]
    batch = clips([4.5, 1.0, 6.1, 0.3], seed=5)
    workers = encode_audio_windows(model, processor, batch)
    device = encode_audio_windows(model, processor, batch, log_mel_on_device=True)
    assert torch.equal(device.embeds, workers.embeds) and device.num_windows == workers.num_windows == [
        3,
        1,
        4,
        1,
    ]
