"""``supclap-convert``: another code base's checkpoint, converted exactly into a SupClap model folder.

(``python -m modeling_supclap.cli.convert`` is the same command.)

From LAION-CLAP (the ``laion_clap`` package's ``.pt`` files, its releases and fine-tunes)::

    supclap-convert --from laion_clap --checkpoint 630k-audioset-best.pt --amodel HTSAT-tiny \\
        --tmodel roberta --output_dir clap-htsat-unfused

The folder holds the model (safetensors, config, code: a ``SupClapModel`` for a RoBERTa text tower, a
``SupClapDualEncoderModel`` of ``ClapAudioModel`` and ``BertModel`` for a BERT one), a processor
(``--processor laion``: LAION's own preprocessing, exactly; ``transformers``: ``ClapFeatureExtractor``),
a model card naming the checkpoint and ``conversion_report.json`` (every tensor mapped, unused or left
initialised, with reasons). It is written completely or not at all. Everything is checked before anything is
written: a checkpoint of another architecture, a damaged file or a flag the tensors contradict ends with one
message and exit status 2. See docs/CONVERSION.md.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..convert.laion_clap import AUDIO_MODELS, FUSIONS, PROCESSORS, TEXT_MODELS, convert_laion_clap
from ..files import staged_folder
from ..hub import local_folder_reference, write_model_card
from .errors import run
from .parsing import parse_arguments

SOURCES = ("laion_clap",)


@dataclass(kw_only=True)
class ConvertArguments:
    source: str = field(
        default="laion_clap",
        metadata={
            "help": "The code base the checkpoint comes from.",
            "choices": list(SOURCES),
            "aliases": ["--from"],
        },
    )
    checkpoint: str = field(metadata={"help": "The checkpoint file (a LAION-CLAP .pt)."})
    amodel: str = field(
        metadata={
            "help": "Its audio tower, as laion_clap names it (checked against the tensors).",
            "choices": list(AUDIO_MODELS),
        }
    )
    tmodel: str = field(
        metadata={
            "help": "Its text tower (checked against the tensors). roberta: a SupClapModel; bert: a "
            "SupClapDualEncoderModel (CLAP's HTSAT + BertModel); bart has no transformers counterpart.",
            "choices": list(TEXT_MODELS),
        }
    )
    output_dir: str = field(metadata={"help": "The folder to write (it must not exist, or be empty)."})
    processor: str = field(
        default="laion",
        metadata={
            "help": "laion: LAION-CLAP's own preprocessing, exactly (LaionClapFeatureExtractor); "
            "transformers: ClapFeatureExtractor with LAION's settings (not exact: docs/CONVERSION.md).",
            "choices": list(PROCESSORS),
        },
    )
    fusion: str = field(
        default="auto",
        metadata={
            "help": "auto: from the tensors; fused or unfused: checked against them.",
            "choices": list(FUSIONS),
        },
    )
    tokenizer: str | None = field(
        default=None,
        metadata={
            "help": "Hub id or folder of the text tower's tokenizer (default: roberta-base or "
            "bert-base-uncased; offline, a folder with their vocab.json and merges.txt, or vocab.txt)."
        },
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Replace --output_dir if it exists and is not empty."}
    )


def main(argv: Sequence[str] | None = None) -> Path:
    """Errors end in one message and an exit status (``cli/errors.py``)."""
    return run("supclap-convert", _convert, argv)


def _convert(argv: Sequence[str]) -> Path:
    # "--from" is the documented spelling (it cannot be a field name); the alias above keeps it warning-free.
    argv = ["--source" if arg == "--from" else arg for arg in argv]
    argv = [f"--source={arg.split('=', 1)[1]}" if arg.startswith("--from=") else arg for arg in argv]
    (args,) = parse_arguments((ConvertArguments,), argv, description=__doc__.splitlines()[0])
    output_dir = Path(args.output_dir)
    if output_dir.exists() and any(output_dir.iterdir()) and not args.overwrite_output_dir:
        raise ValueError(
            f"{output_dir} exists and is not empty: choose another --output_dir, or --overwrite_output_dir"
        )
    start = time.perf_counter()
    conversion = convert_laion_clap(
        args.checkpoint,
        amodel=args.amodel,
        tmodel=args.tmodel,
        fusion=args.fusion,
        processor=args.processor,
        tokenizer=args.tokenizer,
    )
    with staged_folder(output_dir, "convert") as folder:
        conversion.save_pretrained(folder)
        write_model_card(
            folder,
            conversion.model.config,
            model_name=output_dir.resolve().name,
            # The card's code loads this folder by its name; supclap-push points it at the repository.
            repo_id=local_folder_reference(output_dir),
            sampling_rate=conversion.processor.feature_extractor.sampling_rate,
            source_checkpoint=conversion.report.source,
        )
    print(conversion.report.summary())
    print(
        f"\nConverted in {time.perf_counter() - start:.0f} s: model, processor, model card and "
        f"conversion_report.json in {output_dir}"
    )
    return output_dir


if __name__ == "__main__":
    main()
