"""The public search API over an index ``supclap-embed`` wrote: text -> clips, audio -> similar clips.

::

    import modeling_supclap
    from transformers import AutoModel, AutoProcessor
    from modeling_supclap.inference import EmbeddingIndex

    index = EmbeddingIndex.load("my_index")                     # the folder supclap-embed wrote
    model = AutoModel.from_pretrained(index.model_name_or_path)  # the model that made it
    processor = AutoProcessor.from_pretrained(index.model_name_or_path)
    for hit in index.search_text(model, processor, "a dog barks", top_k=5):
        print(f"{hit.score:.3f}  {hit.key}  {hit.captions}")
    similar = index.search_audio(model, processor, "query.wav", top_k=5)

Each result is a :class:`SearchHit` (rank, score, and the clip's row: id, key, path, duration, windows,
captions, label). A query is embedded the way the index embedded its clips (its long-audio policy and
window batch), and by the same model: the first query with a model checks its weights against the index's
fingerprint and refuses another model, naming both (a ``ValueError``).
"""

from __future__ import annotations

import os
import weakref
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from ..data.long_audio import LongAudioPolicy
from .embed import AudioInput, embed_audio, embed_text
from .search import SEARCH_BACKENDS, ExactSearch, FaissSearch
from .store import model_fingerprint, parts_content_id, read_manifest, read_part

__all__ = ["EmbeddingIndex", "SearchHit"]


@dataclass(frozen=True)
class SearchHit:
    """One result: ``rank`` (1 = best), ``score`` (cosine similarity), and the clip's row of the index.

    ``id``: the clip's position in the corpus; ``key``: its path relative to the corpus (or the row it came
    from); ``path``: the audio file, where it is one (else None); ``duration`` in seconds; ``num_windows``
    embedded; ``captions`` (empty without any) and ``label`` (None without one) as the corpus had them.
    """

    rank: int
    score: float
    id: int
    key: str
    path: str | None
    duration: float
    num_windows: int
    captions: list[str]
    label: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class EmbeddingIndex:
    """An embedding index loaded in memory: its manifest, one metadata row and one embedding per clip.

    Load with :meth:`load`; search with :meth:`search_text`, :meth:`search_audio` or, for embeddings you
    have, :meth:`search_embeddings`. ``backend``: ``"exact"`` (chunked matrix products, on ``device``) or
    ``"faiss"`` (approximate; built once and kept in the index folder).
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        manifest: dict[str, Any],
        rows: pa.Table,
        embeddings: torch.Tensor,
        backend: str = "exact",
        nprobe: int | None = None,
    ) -> None:
        if backend not in SEARCH_BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(SEARCH_BACKENDS)}, got {backend!r}")
        self.folder, self.manifest, self.embeddings = Path(folder), manifest, embeddings
        self._rows = rows.to_pydict()
        if backend == "faiss":
            cache = self.folder / f"faiss-ivf-{parts_content_id(manifest['parts'])}.index"
            self.searcher: ExactSearch | FaissSearch = FaissSearch(embeddings, cache, nprobe)
        else:
            self.searcher = ExactSearch(embeddings)
        self._checked_models: weakref.WeakSet[torch.nn.Module] = weakref.WeakSet()

    @classmethod
    def load(
        cls,
        folder: str | os.PathLike,
        device: str | torch.device = "cpu",
        backend: str = "exact",
        nprobe: int | None = None,
    ) -> EmbeddingIndex:
        """Read the index ``supclap-embed`` wrote in ``folder`` (every part of its manifest)."""
        manifest = read_manifest(folder)
        tables = []
        for part in manifest["parts"]:
            path = Path(folder) / part["file"]
            if not path.is_file():
                raise ValueError(f"{folder}: part {part['file']} of the manifest is missing")
            tables.append(read_part(path)[0])
        table = pa.concat_tables(tables)
        dim = int(manifest["model"]["embedding_dim"])
        values = table.column("embedding").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        # A copy: Arrow hands out read-only memory, which torch does not take.
        embeddings = torch.from_numpy(np.array(values).reshape(-1, dim)).to(device)
        return cls(folder, manifest, table.drop_columns(["embedding"]), embeddings, backend, nprobe)

    def __len__(self) -> int:
        return self.embeddings.shape[0]

    @property
    def model_name_or_path(self) -> str:
        """Where the model that made the index came from (a folder or a Hub id)."""
        return self.manifest["model"]["name_or_path"]

    @property
    def long_audio(self) -> LongAudioPolicy:
        """How the index embedded clips longer than the model's window (audio queries are embedded alike)."""
        policy = self.manifest["long_audio"]
        return LongAudioPolicy(policy["long_audio"], policy["window_hop_seconds"])

    def check_model(self, model: torch.nn.Module) -> None:
        """Refuse a model whose weights are not the index's model's (``ValueError`` naming both)."""
        if model in self._checked_models:
            return
        made_by = self.manifest["model"]
        fingerprint = model_fingerprint(model)
        if fingerprint != made_by["fingerprint"]:
            name = getattr(model, "name_or_path", None) or type(model).__name__
            raise ValueError(
                f"{self.folder} was made by the model {made_by['name_or_path']} (weights "
                f"{made_by['fingerprint'][:19]}...), not by the model given, {name} (weights "
                f"{fingerprint[:19]}...): its embeddings are not comparable. Query with the index's model, "
                "or embed the corpus again with this one."
            )
        self._checked_models.add(model)

    def search_embeddings(self, queries: torch.Tensor, top_k: int = 10) -> list[list[SearchHit]]:
        """The ``top_k`` clips closest to each query embedding (``(d,)`` or ``(num_queries, d)``)."""
        queries = queries[None] if queries.ndim == 1 else queries
        if queries.ndim != 2 or queries.shape[1] != self.embeddings.shape[1]:
            raise ValueError(
                f"query embeddings must have {self.embeddings.shape[1]} dimensions (the index's), "
                f"got shape {tuple(queries.shape)}"
            )
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        scores, rows = self.searcher.search(torch.nn.functional.normalize(queries.float(), dim=-1), top_k)
        return [
            [
                self._hit(rank, float(score), int(row))
                for rank, (score, row) in enumerate(zip(s, r), 1)
                if row >= 0
            ]
            for s, r in zip(scores.tolist(), rows.tolist())
        ]

    def search_text(
        self, model: torch.nn.Module, processor: Any, text: str, top_k: int = 10
    ) -> list[SearchHit]:
        """The ``top_k`` clips that best match ``text``, best first."""
        self.check_model(model)
        return self.search_embeddings(embed_text(model, processor, text), top_k)[0]

    def search_audio(
        self,
        model: torch.nn.Module,
        processor: Any,
        audio: AudioInput,
        top_k: int = 10,
        sampling_rate: int | None = None,
    ) -> list[SearchHit]:
        """The ``top_k`` clips most similar to ``audio`` (a path, file bytes, or a waveform with its
        ``sampling_rate``), embedded as the index embedded its clips; best first."""
        self.check_model(model)
        embedding = embed_audio(
            model,
            processor,
            audio,
            sampling_rate=sampling_rate,
            long_audio=self.long_audio,
            window_batch_size=int(self.manifest["window_batch_size"]),
            seed=int(self.manifest["seed"]),
        )
        return self.search_embeddings(embedding, top_k)[0]

    def row(self, position: int) -> dict[str, Any]:
        """The metadata of the clip in row ``position`` (not its embedding: ``embeddings[position]``)."""
        return {name: values[position] for name, values in self._rows.items()}

    def _hit(self, rank: int, score: float, position: int) -> SearchHit:
        row = self.row(position)
        return SearchHit(
            rank=rank,
            score=score,
            id=int(row["id"]),
            key=row["key"],
            path=row["path"],
            duration=float(row["duration"]),
            num_windows=int(row["num_windows"]),
            captions=list(row["captions"] or []),
            label=row["label"],
        )
