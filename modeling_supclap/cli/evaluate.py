"""``eval_supclap.py``: retrieval (R@1/5/10, mAP@10, both directions) and zero-shot accuracy.

Works on any SupClap or plain CLAP folder or Hub id, and any corpus ``load_records`` reads.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoModel, AutoProcessor, HfArgumentParser

import modeling_supclap  # noqa: F401  (registers SupClap with the Auto classes)

from ..data import load_records
from ..evaluation import DEFAULT_PROMPT_TEMPLATE, evaluate_records, format_results


@dataclass
class EvalArguments:
    model: str = field(
        metadata={"help": "Model folder or Hub id (SupClap or plain CLAP, with its processor)."}
    )
    data: str = field(
        metadata={"help": "Corpus: audiofolder, .csv/.jsonl, save_to_disk folder or Hub dataset id."}
    )
    split: str = field(default="test", metadata={"help": "Split to evaluate."})
    audio_column: str = field(default="audio", metadata={"help": "Column holding an audio path or bytes."})
    caption_columns: list[str] = field(
        default_factory=lambda: ["captions"], metadata={"help": "Caption column(s)."}
    )
    label_column: str = field(default="label", metadata={"help": "Class label column (zero-shot)."})
    class_labels: list[str] | None = field(
        default=None, metadata={"help": "Candidate labels for zero-shot (default: the labels in the data)."}
    )
    template: str = field(
        default=DEFAULT_PROMPT_TEMPLATE, metadata={"help": "Zero-shot prompt; must hold {label}."}
    )
    batch_size: int = field(default=64, metadata={"help": "Clips per forward pass."})
    chunk_size: int = field(
        default=1024, metadata={"help": "Queries per similarity chunk (memory O(N x chunk))."}
    )
    num_workers: int = field(default=0, metadata={"help": "DataLoader workers decoding audio."})
    seed: int = field(default=0, metadata={"help": "Seed of the random crops of long clips."})
    device: str | None = field(
        default=None, metadata={"help": "cpu, cuda, cuda:1... (default: cuda if present)."}
    )
    on_bad_sample: str = field(
        default="error", metadata={"help": "'error' or 'skip' (counted in the output)."}
    )
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow the model folder's code to run."})
    output_json: str | None = field(default=None, metadata={"help": "Write the results here as JSON."})


def main(argv: list[str] | None = None) -> dict:
    parser = HfArgumentParser(EvalArguments, description=__doc__)
    (args,) = parser.parse_args_into_dataclasses(args=sys.argv[1:] if argv is None else argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = AutoModel.from_pretrained(args.model, trust_remote_code=args.trust_remote_code).to(device).eval()
    processor = AutoProcessor.from_pretrained(args.model, trust_remote_code=args.trust_remote_code)
    records = load_records(
        args.data,
        split=args.split,
        audio_column=args.audio_column,
        caption_columns=args.caption_columns,
        label_column=args.label_column,
    )
    results = evaluate_records(
        model,
        processor,
        records,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        seed=args.seed,
        class_labels=args.class_labels,
        template=args.template,
        chunk_size=args.chunk_size,
        on_bad_sample=args.on_bad_sample,
    )
    results.update(model=args.model, data=args.data, split=args.split)
    print(f"{args.model} on {args.data} ({args.split}):\n" + format_results(results))
    if args.output_json:
        Path(args.output_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output_json).write_text(json.dumps(results, indent=2, default=str))
    return results


if __name__ == "__main__":
    main()
