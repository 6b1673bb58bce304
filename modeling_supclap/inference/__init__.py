"""Using a trained model: embeddings of audio and text, an embedding index on disk, and search over it.

``embed.py`` (:func:`embed_audio`, :func:`embed_text`: any audio, whole clips), ``build.py`` (what
``supclap-embed`` runs: a corpus into an index, resumable, across processes), ``store.py`` (the index on
disk: Parquet parts and a manifest), ``index.py`` (:class:`EmbeddingIndex`: the public search API),
``search.py`` (exact chunked top-k, and FAISS), ``loading.py`` (a model folder and its processor).
"""

from .embed import embed_audio, embed_text
from .index import EmbeddingIndex, SearchHit
from .loading import load_model_and_processor
from .search import SEARCH_BACKENDS, exact_top_k

__all__ = [
    "SEARCH_BACKENDS",
    "EmbeddingIndex",
    "SearchHit",
    "embed_audio",
    "embed_text",
    "exact_top_k",
    "load_model_and_processor",
]
