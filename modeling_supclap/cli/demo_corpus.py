"""``supclap-demo-corpus`` (``python -m modeling_supclap.cli.demo_corpus``): build the offline demo corpus.

The corpus ``train_supclap.py`` builds by itself when given no ``--train_data`` (``demo/corpus.py``), into a
folder of your choice, e.g. to evaluate on it or to try the other commands::

    supclap-demo-corpus --output_dir my_demo --demo_num_clips 240 --demo_languages en fr
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..demo.corpus import DEMO_LANGUAGES, build_demo_corpus, read_corpus_info
from .errors import run
from .parsing import parse_arguments


@dataclass(kw_only=True)
class DemoCorpusArguments:
    output_dir: str = field(metadata={"help": "Where the corpus is built (reused if already complete)."})
    demo_num_clips: int = field(
        default=2400, metadata={"help": "Clips (about 80/10/10 train/validation/test)."}
    )
    demo_languages: list[str] | None = field(
        default=None, metadata={"help": f"Caption languages, of {', '.join(DEMO_LANGUAGES)} (default: en)."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of the clips and captions."})
    sampling_rate: int = field(default=16000, metadata={"help": "Sampling rate of the WAV files."})
    clip_seconds: float = field(default=2.0, metadata={"help": "Length of every clip."})


def main(argv: Sequence[str] | None = None) -> Path:
    """Errors end in one message and an exit status (``cli/errors.py``)."""
    return run("supclap-demo-corpus", _build, argv)


def _build(argv: Sequence[str]) -> Path:
    (args,) = parse_arguments((DemoCorpusArguments,), argv, description=__doc__.splitlines()[0])
    start = time.perf_counter()
    root = build_demo_corpus(
        args.output_dir,
        num_clips=args.demo_num_clips,
        seed=args.seed,
        sampling_rate=args.sampling_rate,
        clip_seconds=args.clip_seconds,
        languages=args.demo_languages,
    )
    print(f"{root}: {read_corpus_info(root)['splits']} in {time.perf_counter() - start:.1f} s")
    return root


if __name__ == "__main__":
    main()
