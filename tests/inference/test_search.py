"""Search over an index: exact chunked top-k equals a brute-force sort of every score (ties to the lower
row), FAISS agrees with it, and the Python API (EmbeddingIndex) finds a clip by its own audio, refuses
another model's queries, and returns documented rows."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from accelerate import PartialState
from helpers.embedding import clips, tiny_clap

from modeling_supclap.data.records import AudioTextRecord
from modeling_supclap.inference import EmbeddingIndex, SearchHit, embed_audio, exact_top_k
from modeling_supclap.inference.build import EmbeddingJob, build_index
from modeling_supclap.inference.search import FaissSearch
from modeling_supclap.inference.store import model_identity


def brute_force(queries: torch.Tensor, embeddings: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every score, stably sorted: equal scores keep the lower row first."""
    scores = queries.float() @ embeddings.float().T
    ordered, rows = torch.sort(scores, dim=1, descending=True, stable=True)
    return ordered[:, :k], rows[:, :k]


def _unit(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.nn.functional.normalize(
        torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=-1
    )


@pytest.mark.parametrize("chunk_rows", [3, 64, 1000, 4096])
@pytest.mark.parametrize("k", [1, 10, 1005])
def test_exact_search_is_brute_force(chunk_rows, k):
    embeddings, queries = _unit(1000, 16, 0), _unit(7, 16, 1)
    scores, rows = exact_top_k(queries, embeddings, k, chunk_rows)
    expected_scores, expected_rows = brute_force(queries, embeddings, min(k, 1000))
    assert torch.equal(rows, expected_rows)
    torch.testing.assert_close(scores, expected_scores, atol=1e-6, rtol=0)


@pytest.mark.parametrize("chunk_rows", [16, 100, 4096])
def test_ties_go_to_the_lower_row_even_across_chunk_boundaries(chunk_rows):
    """Fifty copies of one clip (a folder with duplicates): the top 10 are the first ten copies."""
    embeddings = _unit(300, 8, 2)
    copies = torch.arange(37, 300, 5)[:50]
    embeddings[copies] = embeddings[0].clone()
    scores, rows = exact_top_k(embeddings[:1], embeddings, 10, chunk_rows)
    assert torch.equal(rows, brute_force(embeddings[:1], embeddings, 10)[1])
    assert rows[0].tolist() == [0, *copies[:9].tolist()]


def test_float16_embeddings_are_scored_in_float32():
    embeddings, queries = _unit(500, 32, 3).half(), _unit(4, 32, 4)
    scores, rows = exact_top_k(queries, embeddings, 20, chunk_rows=64)
    expected_scores, expected_rows = brute_force(queries, embeddings, 20)
    assert scores.dtype == torch.float32 and torch.equal(rows, expected_rows)


def _clustered(n: int, d: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(64, d, generator=generator)
    points = centres[torch.randint(0, 64, (n,), generator=generator)] + 0.5 * torch.randn(
        n, d, generator=generator
    )
    return torch.nn.functional.normalize(points, dim=-1)


def test_faiss_agrees_with_exact_search(tmp_path):
    pytest.importorskip("faiss")
    embeddings, queries = _clustered(20000, 32, 5), _clustered(50, 32, 6)
    exact_scores, exact_rows = exact_top_k(queries, embeddings, 10)
    approximate = FaissSearch(embeddings, tmp_path / "ivf.index")
    scores, rows = approximate.search(queries, 10)
    recall = (
        sum(len(set(a) & set(b)) for a, b in zip(rows.tolist(), exact_rows.tolist())) / exact_rows.numel()
    )
    assert recall >= 0.9, recall  # the default nprobe visits nlist / 8 cells
    found = rows >= 0
    assert found.all()
    true_scores = (queries[:, None, :] * embeddings[rows]).sum(-1)
    torch.testing.assert_close(scores, true_scores, atol=1e-5, rtol=0)  # the scores of its rows are exact
    everywhere = FaissSearch(embeddings, tmp_path / "ivf.index", nprobe=approximate.nlist)  # read back
    all_scores, all_rows = everywhere.search(queries, 10)
    assert (tmp_path / "ivf.index").is_file()
    torch.testing.assert_close(all_scores, exact_scores, atol=1e-5, rtol=0)  # every cell visited: exact
    assert (all_rows == exact_rows).float().mean() > 0.99  # (a near-tie may swap two neighbours)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """An index of 11 in-memory clips (3 longer than the model's 2 s window) made by build_index."""
    model, processor = tiny_clap()
    sounds = clips([0.5, 4.2, 1.3, 1.9, 6.5, 0.8, 2.0, 3.1, 1.2, 0.6, 1.7], seed=7)
    records = [
        AudioTextRecord(
            audio={"array": s, "sampling_rate": 16000},
            captions=[f"sound {i}"],
            label=f"kind{i % 3}",
            source=f"row {i}",
        )
        for i, s in enumerate(sounds)
    ]
    folder = Path(tmp_path_factory.mktemp("index")) / "index"
    job = EmbeddingJob(
        records=records, output_dir=folder, data={"location": "memory"}, part_size=4, num_workers=0
    )
    manifest = build_index(job, model, processor, model_identity(model, "tiny"), PartialState(cpu=True))
    return model, processor, sounds, folder, manifest


def test_an_index_reads_back_with_every_clip_and_its_row(built):
    model, processor, sounds, folder, manifest = built
    index = EmbeddingIndex.load(folder)
    assert len(index) == manifest["num_embedded"] == 11 and manifest["num_parts"] == 3
    assert [index.row(i)["num_windows"] for i in range(11)] == [1, 3, 1, 1, 4, 1, 1, 2, 1, 1, 1]
    assert index.row(4) == {
        "id": 4, "key": "row 4", "path": None, "duration": 6.5, "num_windows": 4, "captions": ["sound 4"],
        "label": "kind1",
    }  # fmt: skip
    expected = embed_audio(model, processor, sounds, sampling_rate=16000)
    assert torch.equal(index.embeddings, expected)  # what the index holds is what embed_audio gives
    hits = index.search_embeddings(expected[[4, 9]], top_k=3)
    assert [hit.id for hit in hits[0]][0] == 4 and [hit.id for hit in hits[1]][0] == 9
    assert all(isinstance(hit, SearchHit) and hit.rank == rank for rank, hit in enumerate(hits[0], 1))


def test_a_clip_finds_itself_first_and_text_search_ranks_every_score(built):
    model, processor, sounds, folder, _ = built
    index = EmbeddingIndex.load(folder)
    (hit, *rest) = index.search_audio(model, processor, sounds[4], top_k=11, sampling_rate=16000)
    assert hit.id == 4 and hit.score == pytest.approx(1.0, abs=1e-6) and len(rest) == 10
    hits = index.search_text(model, processor, "sound 2", top_k=5)
    text = torch.nn.functional.normalize(
        model.get_text_features(**processor.tokenizer(["sound 2"], return_tensors="pt")).pooler_output, dim=-1
    )
    scores, rows = brute_force(text.detach(), index.embeddings, 5)
    assert [hit.id for hit in hits] == rows[0].tolist()
    torch.testing.assert_close(torch.tensor([hit.score for hit in hits]), scores[0], atol=1e-6, rtol=0)
    assert hits[0].to_dict()["captions"] == [f"sound {hits[0].id}"]


def test_a_query_by_another_model_is_refused_naming_both(built):
    _, processor, _, folder, _ = built
    other, _ = tiny_clap(seed=1)
    index = EmbeddingIndex.load(folder)
    with pytest.raises(
        ValueError, match=r"was made by the model tiny \(weights sha256:.*not by the model given"
    ):
        index.search_text(other, processor, "sound 2")
