"""Top-k search over an embedding matrix: exact by chunked matrix products (the default), or approximate
with FAISS (an inverted file over k-means cells) for indexes too large to scan per query.

Scores are cosine similarities (embeddings are L2-normalised). Both return ``(scores, rows)`` of shape
``(num_queries, k)``, best first; exact search breaks ties by the lower row, as a stable sort of all
scores would (tests/inference/test_search.py checks it against one).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

__all__ = ["SEARCH_BACKENDS", "ExactSearch", "FaissSearch", "exact_top_k"]

SEARCH_BACKENDS = ("exact", "faiss")
# Index rows scored per matrix product: 65,536 x 512 float32 is 128 MiB, and the (queries x rows) scores
# of a chunk stay small; larger chunks were not faster on the CPU.
DEFAULT_CHUNK_ROWS = 1 << 16


def _top_k_rows(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top ``k`` of each row of ``scores``, ties at the k-th score resolved to the lowest columns.

    ``torch.topk`` picks among equal scores as its kernel likes; where a row has more candidates tied at
    its k-th score than it picked, that row is stably sorted instead (rare: duplicate clips).
    """
    values, columns = torch.topk(scores, k, dim=1)
    kth = values[:, -1:]
    ambiguous = ((scores >= kth).sum(dim=1) > k).nonzero().flatten()
    for row in ambiguous.tolist():
        ordered, order = torch.sort(scores[row], descending=True, stable=True)
        values[row], columns[row] = ordered[:k], order[:k]
    return values, columns


def _best_first(scores: torch.Tensor, rows: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best candidates per query, by score, then by lower row."""
    by_row = torch.argsort(rows, dim=1, stable=True)
    scores, rows = scores.gather(1, by_row), rows.gather(1, by_row)
    by_score = torch.argsort(scores, dim=1, descending=True, stable=True)[:, :k]
    return scores.gather(1, by_score), rows.gather(1, by_score)


@torch.no_grad()
def exact_top_k(
    queries: torch.Tensor, embeddings: torch.Tensor, k: int, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-``k`` inner products of ``queries`` (Q, d) against ``embeddings`` (N, d): ``(scores, rows)``
    (Q, min(k, N)), computed ``chunk_rows`` index rows at a time on the queries' device (memory O(Q x
    chunk)); float16 embeddings are scored in float32."""
    queries = queries.to(torch.float32)
    k = min(int(k), embeddings.shape[0])
    best_scores = torch.zeros(queries.shape[0], 0, device=queries.device)
    best_rows = torch.zeros(queries.shape[0], 0, dtype=torch.long, device=queries.device)
    for start in range(0, embeddings.shape[0], chunk_rows):
        chunk = embeddings[start : start + chunk_rows].to(queries.device, torch.float32)
        scores, columns = _top_k_rows(queries @ chunk.T, min(k, chunk.shape[0]))
        best_scores = torch.cat([best_scores, scores], dim=1)
        best_rows = torch.cat([best_rows, columns + start], dim=1)
        best_scores, best_rows = _best_first(best_scores, best_rows, k)
    return best_scores, best_rows


class ExactSearch:
    """Exact search: every query scored against every row, in chunks (:func:`exact_top_k`)."""

    name = "exact"

    def __init__(self, embeddings: torch.Tensor, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> None:
        self.embeddings, self.chunk_rows = embeddings, chunk_rows

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        return exact_top_k(queries.to(self.embeddings.device), self.embeddings, k, self.chunk_rows)


def _import_faiss():
    try:
        import faiss
    except ImportError as error:
        raise ImportError(
            "--search_backend faiss needs the faiss-cpu package: pip install 'supclap[ann]' (or faiss-cpu)"
        ) from error
    return faiss


class FaissSearch:
    """Approximate search with a FAISS inverted file (``IndexIVFFlat``, inner product).

    The rows are clustered into ``nlist`` k-means cells (about 4 sqrt(N), at least 39 training rows each);
    a query scores the rows of its ``nprobe`` nearest cells only (default nlist / 8, at least 8), so its
    cost is about ``nprobe / nlist`` of an exact scan; results can miss a true neighbour in an unvisited
    cell (recall against exact search: tests/inference/test_search.py, docs/BENCHMARKS.md). The scores of
    the rows returned are exact. Built once per index content and kept in ``cache_file`` (written
    atomically), where given.
    """

    name = "faiss"

    def __init__(
        self, embeddings: torch.Tensor, cache_file: str | os.PathLike | None = None, nprobe: int | None = None
    ) -> None:
        faiss = _import_faiss()
        matrix = np.ascontiguousarray(embeddings.to("cpu", torch.float32).numpy())
        num_rows, dim = matrix.shape
        self.nlist = max(1, min(int(4 * math.sqrt(num_rows)), num_rows // 39))
        cache = Path(cache_file) if cache_file is not None else None
        if cache is not None and cache.is_file():
            self.index = faiss.read_index(str(cache))
        else:
            quantizer = faiss.IndexFlatIP(dim)
            self.index = faiss.IndexIVFFlat(quantizer, dim, self.nlist, faiss.METRIC_INNER_PRODUCT)
            self.index.train(matrix)
            self.index.add(matrix)
            if cache is not None:
                tmp = cache.with_name(f".{cache.name}.tmp-{os.getpid()}")
                faiss.write_index(self.index, str(tmp))
                os.replace(tmp, cache)
        self.index.nprobe = int(nprobe) if nprobe else min(self.nlist, max(8, self.nlist // 8))

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        k = min(int(k), self.index.ntotal)
        scores, rows = self.index.search(np.ascontiguousarray(queries.to("cpu", torch.float32).numpy()), k)
        return torch.from_numpy(scores), torch.from_numpy(rows).long()
