"""``supclap-embed`` (``python -m modeling_supclap.cli.embed``): embed every clip of a corpus into an index.

Any corpus the project reads (audiofolder, CSV/JSONL, ``save_to_disk`` folder, Hub id, tar shards) or a plain
folder of audio files with no metadata, and a model, become Parquet parts with one row per clip (key, path,
duration, windows, captions, label, embedding) and a manifest (model and revision, policy, counts, the files
skipped and why); search it with ``supclap-search``::

    supclap-embed --model_name_or_path outputs/supclap-demo --data my_sounds/ --output_dir my_index
    # 8 processes, each embedding its own parts:
    accelerate launch --multi_gpu --num_processes 8 -m modeling_supclap.cli.embed ...

Rerun the same command after a crash and it embeds only the parts that are missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.features import resolve_log_mel_on_device
from ..data.readers import load_audio_records
from ..data.records import ON_BAD_SAMPLE_CHOICES
from ..inference.build import MIXED_PRECISION, EmbeddingJob, build_index
from ..inference.loading import load_model_and_processor
from ..inference.store import EMBEDDING_DTYPES, model_identity
from ..training.arguments import ColumnArguments, LongAudioArguments
from .errors import run
from .parsing import parse_arguments
from .process_group import release_process_group_after


@dataclass(kw_only=True)
class EmbedArguments(LongAudioArguments, ColumnArguments):
    model_name_or_path: str = field(
        metadata={"help": "Model folder or Hub id (SupClap or CLAP, with its processor)."}
    )
    data: str = field(
        metadata={
            "help": "The corpus: a folder of audio files (metadata optional), audiofolder, .csv/.jsonl, "
            "save_to_disk folder, tar shards (a folder, pattern or range) or Hub dataset id."
        }
    )
    output_dir: str = field(metadata={"help": "The index folder (created; a rerun completes it)."})
    split: str = field(default="train", metadata={"help": "The split of --data to embed (not for shards)."})
    per_device_eval_batch_size: int = field(
        default=32, metadata={"help": "Clips per DataLoader batch.", "aliases": ["--batch_size"]}
    )
    window_batch_size: int = field(
        default=32,
        metadata={
            "help": "Windows per forward of the audio tower, always this shape (so a clip's embedding does "
            "not depend on its batch): larger is faster on a GPU, up to its memory."
        },
    )
    dataloader_num_workers: int = field(
        default=2, metadata={"help": "DataLoader worker processes (decoding, resampling, features)."}
    )
    part_size: int = field(
        default=1024,
        metadata={
            "help": "Clips per Parquet part: the unit of resuming (a crash loses at most one part's work)."
        },
    )
    mixed_precision: str = field(
        default="no",
        metadata={"help": "Autocast the model to fp16 or bf16 (GPUs).", "choices": tuple(MIXED_PRECISION)},
    )
    embedding_dtype: str = field(
        default="float32",
        metadata={
            "help": "Stored embedding type (float16 halves the index).",
            "choices": tuple(EMBEDDING_DTYPES),
        },
    )
    log_mel_on_device: bool | None = field(
        default=None,
        metadata={
            "help": "Compute CLAP's log-mel on the model's device (workers then only decode and resample). "
            "Default: on a GPU.",
            "nargs": "?",
            "const": True,
        },
    )
    on_bad_sample: str = field(
        default="skip",
        metadata={
            "help": "'skip': name, count and skip a file that cannot be decoded; 'error': stop at it.",
            "choices": ON_BAD_SAMPLE_CHOICES,
        },
    )
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Replace --output_dir if it exists."})
    seed: int = field(default=0, metadata={"help": "Seed of the crops of --long_audio random."})
    use_cpu: bool = field(default=False, metadata={"help": "Use the CPU even where a GPU is present."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow the model folder's code to run."})


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    """Errors end in one message and an exit status (``cli/errors.py``)."""
    return run("supclap-embed", _embed, argv)


def _embed(argv: Sequence[str]) -> dict[str, Any] | None:
    (args,) = parse_arguments((EmbedArguments,), argv, description=__doc__.splitlines()[0])
    # Two or more processes (accelerate launch) share a process group: released before the exit.
    return release_process_group_after("supclap-embed", lambda: _build(args))


def _build(args: EmbedArguments) -> dict[str, Any] | None:
    from accelerate import PartialState

    records = load_audio_records(args.data, args.split, args.columns())
    state = PartialState(cpu=args.use_cpu)
    model, processor = load_model_and_processor(args.model_name_or_path, "cpu", args.trust_remote_code)
    identity = model_identity(model, args.model_name_or_path)  # of the weights as loaded, before any cast
    model = model.to(state.device)
    data_root = Path(args.data) if Path(args.data).is_dir() else None
    job = EmbeddingJob(
        records=records,
        output_dir=Path(args.output_dir),
        data={"location": args.data, "split": args.split},
        data_root=data_root,
        long_audio=args.long_audio_policy(),
        batch_size=args.per_device_eval_batch_size,
        window_batch_size=args.window_batch_size,
        part_size=args.part_size,
        num_workers=args.dataloader_num_workers,
        seed=args.seed,
        mixed_precision=args.mixed_precision,
        embedding_dtype=args.embedding_dtype,
        log_mel_on_device=resolve_log_mel_on_device(args.log_mel_on_device, state.device.type, processor),
        on_bad_sample=args.on_bad_sample,
        overwrite_output_dir=args.overwrite_output_dir,
    )
    manifest = build_index(job, model, processor, identity, state)
    if manifest is not None and manifest["skipped"]:
        listed = "\n  ".join(f"{entry['key']}: {entry['reason']}" for entry in manifest["skipped"][:20])
        more = len(manifest["skipped"]) - 20
        print(
            f"skipped {manifest['num_skipped']} file(s) that could not be decoded (all in {args.output_dir}/"
            f"manifest.json):\n  {listed}" + (f"\n  ... and {more} more" if more > 0 else "")
        )
    return manifest


if __name__ == "__main__":
    main()
