"""Parity of the batched log-mel features (modeling_supclap.data.features) with ClapFeatureExtractor."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from transformers import ClapFeatureExtractor

import modeling_supclap.data.features as features_module
import modeling_supclap.evaluation.encode as evaluation_module
from modeling_supclap.data import SupClapCollator
from modeling_supclap.data.features import (
    clap_features,
    fast_clap_features,
    fast_path_unsupported_reason,
    prepare_clap_waveforms,
)

# Log-mel values are dB in about [-100, 60]; one float32 ulp there is <= 7.6e-6. The fast path is
# bitwise identical in practice; this leaves room for float64 rounding differences (mel sum order, log10).
ATOL_DB = 1e-4

CONFIGS: dict[str, dict[str, Any]] = {
    # the project's default 16 kHz processor (build_processor: fft = smallest power of two that fits)
    "16k-hop160-16mel-2s": dict(
        feature_size=16, sampling_rate=16000, hop_length=160, max_length_s=2, fft_window_size=512,
        frequency_max=8000.0,
    ),
    "16k-hop320-32mel-2s": dict(
        feature_size=32, sampling_rate=16000, hop_length=320, max_length_s=2, fft_window_size=1024,
        frequency_max=8000.0,
    ),
    # laion/clap-htsat-unfused's preprocessor_config.json, with truncation="rand_trunc"
    "48k-hop480-64mel-10s": dict(
        feature_size=64, sampling_rate=48000, hop_length=480, max_length_s=10, fft_window_size=1024,
        frequency_min=50, frequency_max=14000,
    ),
    # odd window / hop sizes exercise the framing and the reflect padding
    "8k-hop101-20mel-1s-fft401": dict(
        feature_size=20, sampling_rate=8000, hop_length=101, max_length_s=1, fft_window_size=401,
        frequency_max=4000.0,
    ),
}  # fmt: skip


def make_extractor(config: str, padding: str = "repeatpad", **overrides: Any) -> ClapFeatureExtractor:
    kwargs = {**CONFIGS[config], "truncation": "rand_trunc", "padding": padding, **overrides}
    return ClapFeatureExtractor(**kwargs)


def make_clips(n_max: int, fractions: list[float], seed: int = 0) -> list[np.ndarray]:
    """float32 noise + tone clips of ``round(f * n_max)`` samples (at least 1)."""
    rng = np.random.default_rng(seed)
    clips = []
    for f in fractions:
        n = max(1, round(f * n_max))
        t = np.arange(n)
        tone = 0.3 * np.sin(2 * np.pi * rng.uniform(0.005, 0.2) * t)
        clips.append((tone + 0.05 * rng.standard_normal(n)).astype(np.float32))
    return clips


def reference(fe: ClapFeatureExtractor, audios: list[np.ndarray], seed: int) -> tuple[dict, tuple]:
    np.random.seed(seed)
    out = fe(audios, sampling_rate=fe.sampling_rate, return_tensors="pt")
    return out, np.random.get_state()


def fast(fe: ClapFeatureExtractor, audios: list[np.ndarray], seed: int) -> tuple[dict, tuple]:
    np.random.seed(seed)
    out = fast_clap_features(fe, audios)
    return out, np.random.get_state()


def assert_same_rng_state(a: tuple, b: tuple) -> None:
    assert a[0] == b[0] and a[2:] == b[2:]
    np.testing.assert_array_equal(a[1], b[1])


def assert_parity(fe: ClapFeatureExtractor, audios: list[np.ndarray], seed: int = 0) -> float:
    """Fast path == extractor (features, is_longer, dtypes, RNG state after); returns the max |diff| dB."""
    ref, ref_state = reference(fe, audios, seed)
    out, out_state = fast(fe, audios, seed)
    expected_t = fe.nb_max_samples // fe.hop_length + 1
    assert out["input_features"].shape == (len(audios), 1, expected_t, fe.feature_size)
    assert out["input_features"].shape == ref["input_features"].shape
    assert out["input_features"].dtype == ref["input_features"].dtype == torch.float32
    assert out["is_longer"].dtype == ref["is_longer"].dtype == torch.bool
    assert torch.equal(out["is_longer"], ref["is_longer"])
    diff = (out["input_features"] - ref["input_features"]).abs().max().item()
    assert diff <= ATOL_DB, diff
    assert_same_rng_state(out_state, ref_state)
    return diff


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("padding", ["repeatpad", "repeat", "pad"])
def test_parity_mixed_batch(config: str, padding: str) -> None:
    """Shorter (repeat/zero padded), exactly max, one sample over, much longer (random crop), silence."""
    if config.startswith("48k") and padding == "repeat":
        pytest.skip("the 10 s extractor is slow; 'repeat' is covered by the other configurations")
    fe = make_extractor(config, padding)
    n_max = fe.nb_max_samples
    audios = make_clips(n_max, [0.3, 1.0, 1.0 + 1 / n_max, 2.7, 0.61, 1 - 1 / n_max, 1.5], seed=1)
    audios.insert(3, np.zeros(n_max // 2, dtype=np.float32))  # silence, padded
    audios.append(np.zeros(n_max * 2, dtype=np.float32))  # silence, cropped
    audios.append(np.full(7, 0.5, dtype=np.float32))  # a handful of samples, many repeats
    assert_parity(fe, audios, seed=123)


@pytest.mark.parametrize("config", ["16k-hop160-16mel-2s", "8k-hop101-20mel-1s-fft401"])
def test_random_crops_match_the_extractor(config: str) -> None:
    """Long clips: same crop offsets (same np.random.randint calls in the same order) for several seeds."""
    fe = make_extractor(config)
    n_max = fe.nb_max_samples
    # a ramp makes every crop offset visible in the waveform and in the features
    audios = [np.linspace(-1, 1, int(f * n_max), dtype=np.float32) for f in (1.9, 0.5, 3.3, 1.2)]
    seen = set()
    for seed in (0, 1, 2, 99):
        assert_parity(fe, audios, seed=seed)
        np.random.seed(seed)
        waveforms, is_longer = prepare_clap_waveforms(fe, audios)
        assert is_longer.flatten().tolist() == [True, False, True, True]
        np.random.seed(seed)
        for i, clip in enumerate(audios):
            if len(clip) > n_max:
                idx = np.random.randint(0, len(clip) - n_max + 1)
                np.testing.assert_array_equal(waveforms[i].numpy(), clip[idx : idx + n_max])
                seen.add((i, idx))
    assert len(seen) > 3  # the crops really vary with the seed


def test_different_seed_changes_crops() -> None:
    """Sanity check of the parity test: the features do depend on the crop."""
    fe = make_extractor("16k-hop160-16mel-2s")
    audios = make_clips(fe.nb_max_samples, [3.0], seed=2)
    a, _ = fast(fe, audios, seed=0)
    b, _ = fast(fe, audios, seed=1)
    assert (a["input_features"] - b["input_features"]).abs().max() > 1.0


def test_silence_is_the_floor() -> None:
    fe = make_extractor("16k-hop160-16mel-2s")
    audios = [np.zeros(fe.nb_max_samples, dtype=np.float32), np.zeros(100, dtype=np.float32)]
    assert_parity(fe, audios)
    out = fast_clap_features(fe, audios)["input_features"]
    assert torch.all(out == -100.0)


def test_exactly_max_length_and_ndarray_batch() -> None:
    """A (B, N) float64 array is a batch too; clips of exactly max length are used as is (no RNG draw)."""
    fe = make_extractor("16k-hop320-32mel-2s")
    batch = np.random.default_rng(3).standard_normal((4, fe.nb_max_samples))
    np.random.seed(0)
    before = np.random.get_state()
    out = clap_features(fe, batch)
    assert_same_rng_state(np.random.get_state(), before)
    ref = fe(batch, sampling_rate=fe.sampling_rate, return_tensors="pt")
    assert (out["input_features"] - ref["input_features"]).abs().max() <= ATOL_DB
    assert not out["is_longer"].any()


def test_input_dtypes_and_lists() -> None:
    """int16-valued, float64 and plain-list clips are converted to float64 like the extractor does."""
    fe = make_extractor("8k-hop101-20mel-1s-fft401")
    rng = np.random.default_rng(4)
    audios = [
        rng.integers(-3000, 3000, 5000).astype(np.int16),
        rng.standard_normal(9000),
        list(rng.standard_normal(3000)),
    ]
    assert_parity(fe, audios, seed=5)


def test_tolerance_is_met_with_margin() -> None:
    """Record the achieved difference: in practice the fast path is bitwise equal."""
    fe = make_extractor("16k-hop160-16mel-2s")
    audios = make_clips(fe.nb_max_samples, [0.2, 0.9, 1.0, 1.7, 4.0], seed=6)
    assert assert_parity(fe, audios, seed=7) <= 1e-5


def test_chunking_does_not_change_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    import modeling_supclap.data.features as features

    fe = make_extractor("16k-hop160-16mel-2s")
    audios = make_clips(fe.nb_max_samples, [0.5, 1.0, 1.5, 0.1, 2.0], seed=8)
    whole, _ = fast(fe, audios, seed=0)
    monkeypatch.setattr(features, "_CHUNK_ELEMENTS", 1)  # one clip per chunk
    chunked, _ = fast(fe, audios, seed=0)
    assert torch.equal(whole["input_features"], chunked["input_features"])


# ----------------------------------------------------------------------------- dispatcher / fallback


def test_fusion_falls_back_to_the_extractor() -> None:
    fe = make_extractor("48k-hop480-64mel-10s", truncation="fusion", max_length_s=1)
    assert fast_path_unsupported_reason(fe) is not None
    audios = make_clips(fe.nb_max_samples, [0.5, 2.5, 1.0], seed=9)
    with pytest.raises(ValueError, match="fusion"):
        fast_clap_features(fe, audios)
    ref, ref_state = reference(fe, audios, seed=11)
    np.random.seed(11)
    out = clap_features(fe, audios)
    assert_same_rng_state(np.random.get_state(), ref_state)
    assert out["input_features"].shape == (3, 4, fe.nb_max_samples // fe.hop_length + 1, 64)
    assert torch.equal(out["input_features"], ref["input_features"])
    assert torch.equal(out["is_longer"], ref["is_longer"])


def test_dispatcher_conditions() -> None:
    fe = make_extractor("16k-hop160-16mel-2s")
    audios = make_clips(fe.nb_max_samples, [0.5, 1.5], seed=10)
    assert fast_path_unsupported_reason(fe, audios) is None
    assert fast_path_unsupported_reason(fe, audios[0]) is not None  # one 1-D clip: not a batch
    assert fast_path_unsupported_reason(fe, []) is not None
    assert fast_path_unsupported_reason(fe, [np.zeros((2, 100))]) is not None  # stereo clip
    assert fast_path_unsupported_reason(make_extractor("16k-hop160-16mel-2s", top_db=80)) is not None
    assert "not a ClapFeatureExtractor" in fast_path_unsupported_reason(object())

    class Custom(ClapFeatureExtractor):
        def _np_extract_fbank_features(
            self, waveform: np.ndarray, mel_filters: np.ndarray | None = None
        ) -> np.ndarray:
            return super()._np_extract_fbank_features(waveform, mel_filters) + 1.0

    custom = Custom(**CONFIGS["16k-hop160-16mel-2s"], truncation="rand_trunc")
    assert "overrides" in fast_path_unsupported_reason(custom)
    ref, _ = reference(custom, audios, seed=0)
    np.random.seed(0)
    assert torch.equal(clap_features(custom, audios)["input_features"], ref["input_features"])

    # a single 1-D clip goes to the extractor, which treats it as a batch of one
    single = clap_features(fe, audios[0])
    assert single["input_features"].shape == (1, 1, fe.nb_max_samples // fe.hop_length + 1, 16)


# ----------------------------------------------------------------------------- call sites


class _FakeTokenizer:
    def __call__(self, texts: list[str], **kwargs: Any) -> dict[str, torch.Tensor]:
        ids = torch.tensor([[len(t), 2] for t in texts])
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _original(fe: ClapFeatureExtractor, audios: Any) -> Any:
    return fe(audios, sampling_rate=fe.sampling_rate, return_tensors="pt")


def test_collator_output_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    """SupClapCollator gives the same tensors as with the extractor, and restores np.random."""
    fe = make_extractor("16k-hop160-16mel-2s")
    processor = SimpleNamespace(tokenizer=_FakeTokenizer(), feature_extractor=fe)
    clips = make_clips(fe.nb_max_samples, [0.4, 2.2, 1.0, 3.1], seed=12)
    items = [{"audio": a, "captions": ["a b", "c d e"], "index": i, "epoch": 1} for i, a in enumerate(clips)]
    np.random.seed(42)
    state = np.random.get_state()
    new = SupClapCollator(processor, seed=3)(items)
    assert_same_rng_state(np.random.get_state(), state)
    monkeypatch.setattr(features_module, "clap_features", _original)
    old = SupClapCollator(processor, seed=3)(items)
    for key in ("input_ids", "attention_mask", "input_features", "is_longer"):
        assert torch.equal(new[key], old[key]), key
    assert new["is_longer"].tolist() == [[False], [True], [False], [True]]


class _FakeAudioModel(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def get_audio_features(self, input_features: torch.Tensor, is_longer: torch.Tensor) -> SimpleNamespace:
        pooled = input_features.flatten(1) * self.scale + is_longer.float()
        return SimpleNamespace(pooler_output=pooled)


def test_encode_audio_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    fe = make_extractor("16k-hop160-16mel-2s")
    processor = SimpleNamespace(feature_extractor=fe)
    clips = make_clips(fe.nb_max_samples, [0.7, 2.5, 1.3], seed=13)
    model = _FakeAudioModel()
    new = evaluation_module.encode_audio(model, processor, clips, seed=5)
    monkeypatch.setattr(features_module, "clap_features", _original)
    old = evaluation_module.encode_audio(model, processor, clips, seed=5)
    assert torch.equal(new, old)


def test_num_threads_is_restored_and_does_not_change_the_result() -> None:
    fe = make_extractor("16k-hop160-16mel-2s")
    audios = make_clips(fe.nb_max_samples, [0.5, 1.5], seed=14)
    before = torch.get_num_threads()
    single, _ = fast(fe, audios, seed=0)
    assert torch.get_num_threads() == before
    np.random.seed(0)
    threaded = fast_clap_features(fe, audios, num_threads=2)
    assert torch.get_num_threads() == before
    np.random.seed(0)
    unchanged = fast_clap_features(fe, audios, num_threads=None)
    assert torch.equal(single["input_features"], threaded["input_features"])
    assert torch.equal(single["input_features"], unchanged["input_features"])


@pytest.mark.parametrize("config", ["16k-hop160-16mel-2s", "8k-hop101-20mel-1s-fft401"])
def test_log_mel_left_for_the_device_is_the_same_features_and_crops(config: str) -> None:
    """Workers that stop before the log-mel (log_mel_on_device) and a device that finishes it (here the CPU)
    give the features of the whole path, bitwise, with the same crops and the same RNG state after."""
    fe = make_extractor(config)
    processor = SimpleNamespace(feature_extractor=fe)
    audios = make_clips(fe.nb_max_samples, [0.3, 1.0, 2.7, 1.6, 0.01], seed=21)
    audios.append(make_clips(fe.nb_max_samples, [1.4], seed=22)[0].astype(np.float64))  # not float32
    np.random.seed(7)
    whole = features_module.audio_model_inputs(processor, audios)
    whole_state = np.random.get_state()
    np.random.seed(7)
    left = features_module.audio_model_inputs(processor, audios, log_mel_on_device=True)
    assert_same_rng_state(np.random.get_state(), whole_state)
    assert "input_features" not in left and left[features_module.WAVEFORMS_KEY].dtype == torch.float64
    finished = features_module.finish_on_device(processor, left)
    assert set(finished) == {"input_features", "is_longer"}
    assert torch.equal(finished["input_features"], whole["input_features"])
    assert torch.equal(finished["is_longer"], whole["is_longer"])
    float32_only = features_module.audio_model_inputs(processor, audios[:-1], log_mel_on_device=True)
    assert float32_only[features_module.WAVEFORMS_KEY].dtype == torch.float32  # exact, and half the size


def test_only_clap_extractors_leave_the_log_mel_to_the_device() -> None:
    fusion = SimpleNamespace(feature_extractor=make_extractor("16k-hop160-16mel-2s", truncation="fusion"))
    assert "fusion" in features_module.device_log_mel_unsupported_reason(fusion)
    ast = SimpleNamespace(feature_extractor=transformers_ast_extractor())
    assert (
        "ASTFeatureExtractor has no torch feature path"
        in features_module.device_log_mel_unsupported_reason(ast)
    )
    clips = make_clips(16000, [0.5, 1.2], seed=3)
    inputs = features_module.audio_model_inputs(ast, clips, log_mel_on_device=True)  # computed here instead
    assert "input_values" in inputs and features_module.finish_on_device(ast, inputs) is inputs


def test_log_mel_on_device_is_the_gpus_default_and_off_where_the_processor_cannot(caplog) -> None:
    """One rule for training and supclap-embed: as given, by default on a GPU; a processor without the fast
    path turns it off, with a warning where it was asked for and a note where it was the default."""
    clap = SimpleNamespace(feature_extractor=make_extractor("16k-hop160-16mel-2s"))
    ast = SimpleNamespace(feature_extractor=transformers_ast_extractor())
    resolve = features_module.resolve_log_mel_on_device
    assert resolve(None, "cuda", clap) and not resolve(None, "cpu", clap)
    assert resolve(True, "cpu", clap) and not resolve(False, "cuda", clap)
    with caplog.at_level("INFO", logger=features_module.__name__):
        assert not resolve(None, "cuda", ast)
        assert not resolve(True, "cuda", ast)
    assert [r.levelname for r in caplog.records] == ["INFO", "WARNING"]
    assert "ASTFeatureExtractor has no torch feature path" in caplog.records[1].getMessage()


def transformers_ast_extractor():
    from transformers import ASTFeatureExtractor

    return ASTFeatureExtractor(num_mel_bins=16, max_length=100, sampling_rate=16000)


def test_collator_leaves_the_log_mel_for_the_device_and_gives_the_same_batch() -> None:
    fe = make_extractor("16k-hop160-16mel-2s")
    processor = SimpleNamespace(tokenizer=_FakeTokenizer(), feature_extractor=fe)
    clips = make_clips(fe.nb_max_samples, [0.4, 2.2, 1.0, 3.1], seed=12)
    items = [{"audio": a, "captions": ["a b", "c d e"], "index": i, "epoch": 1} for i, a in enumerate(clips)]
    in_workers = SupClapCollator(processor, seed=3)(items)
    collator = SupClapCollator(processor, seed=3, log_mel_on_device=True)
    left = collator(items)
    assert features_module.WAVEFORMS_KEY in left and "input_features" not in left
    on_device = collator.on_device(left)
    assert set(on_device) == set(in_workers)
    for key in ("input_ids", "attention_mask", "input_features", "is_longer"):
        assert torch.equal(on_device[key], in_workers[key]), key
