"""``supclap-eval`` (``eval_supclap.py``, ``python -m modeling_supclap.cli.evaluate``): retrieval
(R@1/5/10, mAP@10, both directions) and zero-shot accuracy, or a standard evaluation suite.

Works on any SupClap or plain CLAP folder or Hub id, and any corpus ``load_records`` reads.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoModel, AutoProcessor

from ..data import load_records
from ..evaluation.report import format_eval_suite, format_results
from ..evaluation.scoring import evaluate_records
from ..evaluation.suites import EVAL_SUITES, run_eval_suite
from ..evaluation.zero_shot import DEFAULT_PROMPT_TEMPLATE, find_zero_shot_templates
from ..training.arguments import CorpusArguments
from .errors import run
from .parsing import parse_arguments


@dataclass(kw_only=True)
class EvalArguments(CorpusArguments):
    model_name_or_path: str = field(
        metadata={
            "help": "Model folder or Hub id (SupClap or plain CLAP, with its processor).",
            "aliases": ["--model"],
        }
    )
    eval_data: str = field(
        metadata={
            "help": "Corpus: audiofolder, .csv/.jsonl, save_to_disk folder or Hub dataset id.",
            "aliases": ["--data"],
        }
    )
    eval_split: str | None = field(
        default=None,
        metadata={
            "help": "Split to evaluate (default: test, or the --eval_suite's).",
            "aliases": ["--split"],
        },
    )
    eval_suite: str | None = field(
        default=None,
        metadata={
            "help": "A standard evaluation suite's layout and protocol (evaluation/suites.py): esc50, "
            "urbansound8k (zero-shot accuracy per fold and mean), clotho, audiocaps (retrieval).",
            "choices": tuple(EVAL_SUITES),
            "aliases": ["--benchmark"],
        },
    )
    class_labels: list[str] | None = field(
        default=None, metadata={"help": "Candidate labels for zero-shot (default: the labels in the data)."}
    )
    per_device_eval_batch_size: int = field(
        default=64, metadata={"help": "Clips per forward pass.", "aliases": ["--batch_size"]}
    )
    chunk_size: int = field(
        default=1024, metadata={"help": "Queries per similarity chunk (memory O(N x chunk))."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of the random crops of --long_audio random."})
    device: str | None = field(
        default=None, metadata={"help": "cpu, cuda, cuda:1... (default: cuda if present)."}
    )
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow the model folder's code to run."})
    output_json: str | None = field(default=None, metadata={"help": "Write the results here as JSON."})


def main(argv: Sequence[str] | None = None) -> dict:
    """Errors end in one message and an exit status (``cli/errors.py``)."""
    return run("supclap-eval", _evaluate, argv)


def _evaluate(argv: Sequence[str]) -> dict:
    (args,) = parse_arguments((EvalArguments,), argv, description=__doc__)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = (
        AutoModel.from_pretrained(args.model_name_or_path, trust_remote_code=args.trust_remote_code)
        .to(device)
        .eval()
    )
    processor = AutoProcessor.from_pretrained(
        args.model_name_or_path, trust_remote_code=args.trust_remote_code
    )
    if args.eval_suite:
        return _eval_suite(args, model, processor)
    args.eval_split = args.eval_split or "test"
    records = load_records(args.eval_data, args.eval_split, args.columns())
    results = evaluate_records(
        model,
        processor,
        records,
        batch_size=args.per_device_eval_batch_size,
        num_workers=args.dataloader_num_workers,
        seed=args.seed,
        class_labels=args.class_labels,
        template=args.zero_shot_template,
        zero_shot_templates=find_zero_shot_templates(args.zero_shot_templates, args.eval_data),
        chunk_size=args.chunk_size,
        on_bad_sample=args.on_bad_sample,
        max_text_length=args.max_text_length,
        long_audio=args.long_audio_policy(),
    )
    results.update(model=args.model_name_or_path, data=args.eval_data, split=args.eval_split)
    print(f"{args.model_name_or_path} on {args.eval_data} ({args.eval_split}):\n" + format_results(results))
    if args.output_json:
        Path(args.output_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output_json).write_text(json.dumps(results, indent=2, default=str))
    return results


def _eval_suite(args: EvalArguments, model, processor) -> dict:
    suite = EVAL_SUITES[args.eval_suite]
    split = args.eval_split or suite.split
    records = suite.load(args.eval_data, split)
    template = args.zero_shot_template if args.zero_shot_template != DEFAULT_PROMPT_TEMPLATE else None
    results = run_eval_suite(
        suite,
        model,
        processor,
        records,
        template=template,
        batch_size=args.per_device_eval_batch_size,
        num_workers=args.dataloader_num_workers,
        seed=args.seed,
        chunk_size=args.chunk_size,
        on_bad_sample=args.on_bad_sample,
        max_text_length=args.max_text_length,
        long_audio=args.long_audio_policy(),
    )
    results.update(model=args.model_name_or_path, data=args.eval_data, split=split)
    shown = format_eval_suite(results) if suite.task == "zero_shot" else format_results(results)
    print(f"{args.model_name_or_path} on {args.eval_suite} ({args.eval_data}, {split}):\n" + shown)
    if args.output_json:
        Path(args.output_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output_json).write_text(json.dumps(results, indent=2, default=str))
    return results


if __name__ == "__main__":
    main()
