"""``supclap-search`` (``python -m modeling_supclap.cli.search``): the clips of an index closest to a text or
to an audio file, best first::

    supclap-search --index my_index --text "a dog barks" --top_k 10
    supclap-search --index my_index --audio query.wav --json

The query is embedded by the model that made the index (its manifest names it; ``--model_name_or_path``
to load it from elsewhere: its weights must be the same) and the same way the index embedded its clips.
Search is exact (chunked matrix products) unless ``--search_backend faiss`` (approximate; needs faiss-cpu).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..inference.index import EmbeddingIndex
from ..inference.loading import load_model_and_processor
from ..inference.search import SEARCH_BACKENDS
from .errors import run
from .parsing import parse_arguments


@dataclass(kw_only=True)
class SearchArguments:
    index: str = field(metadata={"help": "The index folder supclap-embed wrote."})
    text: str | None = field(default=None, metadata={"help": "Find the clips that match this text."})
    audio: str | None = field(
        default=None, metadata={"help": "Find the clips most similar to this audio file."}
    )
    top_k: int = field(default=10, metadata={"help": "How many clips to return."})
    json: bool = field(default=False, metadata={"help": "Print the results as JSON (one object)."})
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Where to load the index's model from (default: where its manifest says)."},
    )
    search_backend: str = field(
        default="exact",
        metadata={
            "help": "'exact' (every clip scored, in chunks) or 'faiss' (approximate inverted file, built "
            "once and kept in the index folder; pip install faiss-cpu).",
            "choices": SEARCH_BACKENDS,
        },
    )
    nprobe: int | None = field(
        default=None,
        metadata={"help": "--search_backend faiss: cells visited per query (more: slower, exacter)."},
    )
    device: str | None = field(default=None, metadata={"help": "cpu, cuda... (default: cuda if present)."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow the model folder's code to run."})

    def __post_init__(self) -> None:
        if (self.text is None) == (self.audio is None):
            raise ValueError("give one query: --text TEXT or --audio FILE")
        if self.text is not None and not self.text.strip():
            raise ValueError("--text is empty")
        if self.top_k < 1:
            raise ValueError(f"--top_k must be >= 1, got {self.top_k}")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Errors end in one message and an exit status (``cli/errors.py``)."""
    return run("supclap-search", _search, argv)


def _search(argv: Sequence[str]) -> dict[str, Any]:
    (args,) = parse_arguments((SearchArguments,), argv, description=__doc__.splitlines()[0])
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    index = EmbeddingIndex.load(args.index, device=device, backend=args.search_backend, nprobe=args.nprobe)
    model, processor = load_model_and_processor(
        args.model_name_or_path or index.model_name_or_path, device, args.trust_remote_code
    )
    if args.text is not None:
        hits = index.search_text(model, processor, args.text, args.top_k)
        query = {"text": args.text}
    else:
        hits = index.search_audio(model, processor, args.audio, args.top_k)
        query = {"audio": args.audio}
    results = {"index": args.index, "query": query, "results": [hit.to_dict() for hit in hits]}
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
    else:
        print(f"{len(hits)} of {len(index)} clips, best first ({index.searcher.name} search):")
        for hit in hits:
            caption = f"  {hit.captions[0]!r}" if hit.captions else ""
            label = f"  [{hit.label}]" if hit.label else ""
            print(f"{hit.rank:>4}  {hit.score:.4f}  {hit.key}  ({hit.duration:.1f} s){label}{caption}")
    return results


if __name__ == "__main__":
    main()
