"""``eval_supclap.py``: retrieval (R@1/5/10, mAP@10, both directions) and zero-shot accuracy.

Works on any SupClap or plain CLAP folder or Hub id, and any corpus ``load_records`` reads.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoModel, AutoProcessor

import modeling_supclap  # noqa: F401  (registers SupClap with the Auto classes)

from ..data import load_records
from ..evaluation.report import format_eval_suite, format_results
from ..evaluation.scoring import evaluate_records
from ..evaluation.suites import EVAL_SUITES, run_eval_suite
from ..evaluation.zero_shot import DEFAULT_PROMPT_TEMPLATE, find_zero_shot_templates
from ..training.arguments import EvalArguments, parse_arguments
from .errors import run


def main(argv: Sequence[str] | None = None) -> dict:
    """Errors end in one message and an exit status (``cli/errors.py``)."""
    return run("eval_supclap.py", _evaluate, argv)


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
