"""``supclap-shard`` (``python -m modeling_supclap.cli.shard``): write a corpus as tar shards for streaming.

Any corpus the project reads (audiofolder, CSV/JSONL, ``save_to_disk`` folder, Hub id) becomes
``shard-000000.tar``... of ``--shard_size`` samples (original audio bytes, JSON captions) and a
``manifest.json`` with counts and sha256 (``data/sources/shards.py``); train from it with ``--streaming``::

    supclap-shard --data my_corpus/ --output_dir shards/ --shard_size 1000
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..data.readers import load_records
from ..data.sources.shards import write_shards
from ..training.arguments import ColumnArguments
from .errors import run
from .parsing import parse_arguments


@dataclass(kw_only=True)
class ShardArguments(ColumnArguments):
    data: str = field(
        metadata={"help": "The corpus: audiofolder, .csv/.jsonl, save_to_disk folder or Hub dataset id."}
    )
    output_dir: str = field(metadata={"help": "Where the shards are written (replaced if it exists)."})
    split: str = field(default="train", metadata={"help": "The split of --data to write."})
    shard_size: int = field(default=1000, metadata={"help": "Samples per shard."})


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Errors end in one message and an exit status (``cli/errors.py``)."""
    return run("supclap-shard", _shard, argv)


def _shard(argv: Sequence[str]) -> dict[str, Any]:
    (args,) = parse_arguments((ShardArguments,), argv, description=__doc__.splitlines()[0])
    start = time.perf_counter()
    manifest = write_shards(
        load_records(args.data, args.split, args.columns()), args.output_dir, args.shard_size
    )
    print(
        f"wrote {manifest['num_samples']} samples in {manifest['num_shards']} shard(s) to {args.output_dir} "
        f"in {time.perf_counter() - start:.1f} s"
    )
    return manifest


if __name__ == "__main__":
    main()
