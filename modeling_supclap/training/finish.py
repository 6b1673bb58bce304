"""The end of a run: test the best model, save it with processor, card, metrics and plots; push."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from typing import Any

from ..data.checks import format_data_report
from ..evaluation.report import format_results
from ..evaluation.scoring import evaluate_records
from ..evaluation.zero_shot import find_zero_shot_templates
from ..model.modeling_supclap import SupClapModel
from .checkpointing import load_training_weights
from .run import TrainingRun
from .state import TrainState

logger = logging.getLogger(__name__)


def finish(run: TrainingRun, state: TrainState) -> dict[str, Any]:
    """Everything after the last step (collective). Returns the final metrics (also in metrics.json)."""
    accelerator, train_args, output_dir = run.accelerator, run.train_args, run.output_dir
    accelerator.wait_for_everyone()
    results: dict[str, Any] = {"train_state": {k: v for k, v in state.to_dict().items() if k != "history"}}
    if run.data.report is not None:
        results["skipped_samples"] = run.data.report["skipped_samples"]
        results["data_checks"] = {k: v for k, v in run.data.report.items() if k != "skipped_samples"}
    # Bad samples met while reading (streams): every process's, gathered (a collective).
    from accelerate.utils import gather_object

    met = (
        gather_object(run.data.train.skipped_samples())
        if accelerator.num_processes > 1
        else run.data.train.skipped_samples()
    )
    if met:
        skipped = results.setdefault("skipped_samples", {"total": 0, "by_split": {}, "samples": []})
        skipped["samples"] += [{"split": "train", **entry} for entry in met]
        skipped["total"] += len(met)
        skipped["by_split"]["train"] = skipped["by_split"].get("train", 0) + len(met)
        logger.warning("skipped %d bad training sample(s) while streaming (see metrics.json)", len(met))
    if accelerator.is_main_process:
        final_model = _final_model(run, state)
        if run.data.test:
            results["test"] = evaluate_records(
                final_model,
                run.processor,
                run.data.test,
                batch_size=train_args.per_device_eval_batch_size,
                seed=train_args.seed,
                template=run.data_args.zero_shot_template,
                zero_shot_templates=find_zero_shot_templates(
                    run.data_args.zero_shot_templates,
                    run.data_args.test_data or run.data.location,
                ),
                on_bad_sample=run.data_args.on_bad_sample,
                max_text_length=run.data_args.max_text_length,
                long_audio=run.data_args.long_audio_policy(),
            )
            print(f"\nTest results ({run.data.location}, test split):\n" + format_results(results["test"]))
        final_model.save_pretrained(output_dir, safe_serialization=True)
        run.processor.save_pretrained(output_dir)
        results["history"] = state.history
        (output_dir / "metrics.json").write_text(json.dumps(results, indent=2, default=str))
        _write_card_plots_and_push(run, final_model, results)
        if summary := format_data_report(run.data.report):
            print("\nData checks:\n" + summary)
        print(f"\nSaved model, processor, model card and metrics to {output_dir}")
    accelerator.wait_for_everyone()
    # Trackers only: not accelerator.end_training(), which also destroys the process group while the
    # DDP model still holds it. Freeing the model then ran gloo's destructor with the GIL held while its
    # worker thread waited for the GIL: a deadlock at exit, seen under load. The CLI destroys the
    # group after the run's objects are gone (cli/train.py).
    for tracker in accelerator.trackers:
        tracker.finish()
    if run.lock is not None:
        run.lock.release()
    return results


def _final_model(run: TrainingRun, state: TrainState) -> SupClapModel:
    """The best model on validation (not merely the last), LoRA merged into it."""
    best = run.output_dir / "best"
    if state.best_step is not None and best.is_dir():
        load_training_weights(run.supclap, best)
    if run.model_args.lora_r > 0:
        return run.accelerator.unwrap_model(run.model).merge_and_unload()
    return run.supclap


def _write_card_plots_and_push(run: TrainingRun, final_model: SupClapModel, results: dict[str, Any]) -> None:
    from ..hub import conversion_source, local_folder_reference, write_model_card

    write_model_card(
        run.output_dir,
        final_model.config,
        train_args=asdict(run.train_args),
        data_description=run.data.location,
        results=results.get("test"),
        base_model=run.model_args.model_name_or_path,
        tower_models={
            "audio": run.model_args.audio_model_name_or_path,
            "text": run.model_args.text_model_name_or_path,
        },
        # The card's code loads the Hub repository, or this folder by its name until a push points it there.
        repo_id=run.train_args.hub_model_id or local_folder_reference(run.output_dir),
        sampling_rate=run.processor.feature_extractor.sampling_rate,
        # A model converted from another code base's checkpoint: the card names that checkpoint too.
        source_checkpoint=conversion_source(run.model_args.model_name_or_path),
    )
    try:
        from .diagnostics import save_training_plots

        save_training_plots(results, run.output_dir)
    except ImportError:  # plotting is optional (matplotlib)
        logger.info("matplotlib not installed: no plots")
    if run.train_args.push_to_hub:
        from ..hub import push_output_folder

        push_output_folder(
            run.output_dir,
            run.train_args.hub_model_id,
            private=run.train_args.hub_private_repo,
            space_id=run.train_args.hub_space_id,
        )
