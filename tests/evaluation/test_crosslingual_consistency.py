"""Cross-lingual consistency metric on hand-built cases: top-1 clip agreement and Spearman of scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modeling_supclap.evaluation.metrics import compute_crosslingual_consistency, metric_function


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def embeddings() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return _unit(rng.normal(size=(40, 16))), _unit(rng.normal(size=(25, 16)))


def test_identical_languages_are_perfectly_consistent(embeddings):
    text, audio = embeddings
    result = compute_crosslingual_consistency({"en": text, "fr": text.copy(), "zh": text.copy()}, audio)
    assert result["top1_agreement"] == 100.0
    assert result["rank_correlation"] == pytest.approx(1.0)
    assert set(result["per_pair"]) == {"en-fr", "en-zh", "fr-zh"}
    assert (result["num_captions"], result["num_audio"], result["languages"]) == (40, 25, ["en", "fr", "zh"])


def test_one_shuffled_language_is_strictly_less_consistent(embeddings):
    text, audio = embeddings
    shuffled = text[np.random.default_rng(1).permutation(len(text))]
    result = compute_crosslingual_consistency({"en": text, "fr": text.copy(), "de": shuffled}, audio)
    pairs = result["per_pair"]
    assert pairs["en-fr"] == {"top1_agreement": 100.0, "rank_correlation": pytest.approx(1.0)}
    for pair in ("en-de", "fr-de"):
        assert pairs[pair]["top1_agreement"] < 100.0 and pairs[pair]["rank_correlation"] < 0.5, pairs[pair]
    assert result["top1_agreement"] < 100.0 and result["rank_correlation"] < 1.0
    # The mean over pairs: one perfect pair and two shuffled ones.
    expected = (100.0 + pairs["en-de"]["top1_agreement"] + pairs["fr-de"]["top1_agreement"]) / 3
    assert result["top1_agreement"] == pytest.approx(expected)


def test_spearman_by_hand_with_ties_and_constant_rows():
    spearman = metric_function("crosslingual_consistency", "_spearman_rows")
    a = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [5.0, 5.0, 5.0], [1.0, 1.0, 2.0]])
    b = np.array([[3.0, 2.0, 1.0], [10.0, 20.0, 30.0], [1.0, 2.0, 3.0], [0.0, 0.0, 7.0]])
    # reversed: -1; same order: 1; a constant row has no ranking: 0; tied ranks (1.5, 1.5, 3) on both: 1.
    np.testing.assert_allclose(spearman(a, b), [-1.0, 1.0, 0.0, 1.0])


def test_torch_inputs_and_clear_errors(embeddings):
    text, audio = (torch.from_numpy(x) for x in embeddings)
    assert compute_crosslingual_consistency({"en": text, "ja": text}, audio)["top1_agreement"] == 100.0
    with pytest.raises(ValueError, match="at least 2 languages"):
        compute_crosslingual_consistency({"en": text}, audio)
    with pytest.raises(ValueError, match="same captions"):
        compute_crosslingual_consistency({"en": text, "fr": text[:-1]}, audio)
    with pytest.raises(ValueError, match=r"text_embeds\['fr'\] has shape"):
        compute_crosslingual_consistency({"en": text, "fr": text[:, :8]}, audio)
