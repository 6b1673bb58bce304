"""Where users already are: transformers.Trainer, PEFT LoRA and the zero-shot pipeline."""

from __future__ import annotations

import copy
import json
import os
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.cli import BLOCK_PACKAGE_IMPORT
from helpers.processes import free_port, run_bounded
from helpers.toy import TOY_LABELS, toy_clip, toy_processor, toy_rows
from peft import PeftModel
from transformers import AutoModel, Trainer, TrainingArguments, pipeline

from modeling_supclap import SupClapConfig, SupClapModel
from modeling_supclap.data import SupClapCollator
from modeling_supclap.evaluation.trainer import compute_retrieval_metrics_for_trainer
from modeling_supclap.lora import get_lora_model, lora_config_for

REPO = Path(__file__).resolve().parents[2]


def _training_args(output_dir: Path, steps: int, **overrides) -> TrainingArguments:
    settings = dict(
        per_device_train_batch_size=12,
        per_device_eval_batch_size=12,
        max_steps=steps,
        learning_rate=3e-3,
        warmup_steps=0,
        logging_steps=5,
        eval_strategy="no",
        save_strategy="no",
        report_to=[],
        remove_unused_columns=False,
        use_cpu=True,
        seed=0,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    settings.update(overrides)
    return TrainingArguments(str(output_dir), **settings)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny SupClap trained by a plain Trainer on the toy set, saved with its processor."""
    torch.manual_seed(0)
    config = SupClapConfig.tiny()
    model = SupClapModel(config)
    processor = toy_processor(config)
    folder = tmp_path_factory.mktemp("trainer_run")
    trainer = Trainer(
        model=model,
        args=_training_args(folder / "work", steps=40),
        train_dataset=toy_rows(48),
        eval_dataset=toy_rows(12, seed=1),
        data_collator=SupClapCollator(processor, caption_choice="first"),
        compute_metrics=compute_retrieval_metrics_for_trainer,
    )
    trainer.train()
    metrics = trainer.evaluate()
    trainer.save_model(str(folder / "model"))
    processor.save_pretrained(str(folder / "model"))
    return {"trainer": trainer, "metrics": metrics, "folder": folder / "model", "processor": processor}


@pytest.mark.slow
def test_trainer_trains_evaluates_and_saves(trained):
    losses = [entry["loss"] for entry in trained["trainer"].state.log_history if "loss" in entry]
    assert len(losses) == 8
    assert np.mean(losses[-2:]) < np.mean(losses[:2]) - 0.5, losses
    metrics = trained["metrics"]
    for key in ("eval_loss", "eval_t2a_R@1", "eval_a2t_R@1", "eval_t2a_R@5", "eval_t2a_mAP@10"):
        assert key in metrics, metrics
    assert 0.0 <= metrics["eval_t2a_R@1"] <= 100.0
    reloaded = AutoModel.from_pretrained(trained["folder"]).eval()
    assert isinstance(reloaded, SupClapModel)
    model = trained["trainer"].model.eval()
    batch = SupClapCollator(trained["processor"], caption_choice="first")(toy_rows(3, seed=5))
    with torch.no_grad():
        expected, got = model(**batch), reloaded(**batch)
    torch.testing.assert_close(got.audio_embeds, expected.audio_embeds)
    torch.testing.assert_close(got.loss, expected.loss)


# --- pipeline ----------------------------------------------------------------------------------
def _held_out_clips() -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(123)
    return [(label, toy_clip(label, rng)) for label in TOY_LABELS for _ in range(2)]


@pytest.mark.slow
def test_zero_shot_pipeline_after_import(trained):
    classifier = pipeline("zero-shot-audio-classification", model=str(trained["folder"]))
    assert isinstance(classifier.model, SupClapModel)
    correct = 0
    for label, clip in _held_out_clips():
        scores = classifier(clip, candidate_labels=list(TOY_LABELS))
        assert sum(s["score"] for s in scores) == pytest.approx(1.0, abs=1e-5)
        assert {s["label"] for s in scores} == set(TOY_LABELS)
        correct += scores[0]["label"] == label
    assert correct >= 5, f"{correct}/6 held-out clips ranked their label first"


PIPELINE_SCRIPT = BLOCK_PACKAGE_IMPORT + textwrap.dedent(
    """
    import json
    import numpy as np
    from transformers import pipeline
    folder, clips_path = sys.argv[1:3]
    classifier = pipeline("zero-shot-audio-classification", model=folder, trust_remote_code=True)
    clips = np.load(clips_path)
    labels = json.loads(sys.argv[3])
    out = [classifier(clip, candidate_labels=labels) for clip in clips]
    print(json.dumps({"module": type(classifier.model).__module__, "scores": out}))
    """
)


@pytest.mark.slow
def test_zero_shot_pipeline_with_trust_remote_code_and_no_package(trained, tmp_path):
    clips = _held_out_clips()
    np.save(tmp_path / "clips.npy", np.stack([clip for _, clip in clips]))
    script = tmp_path / "pipe.py"
    script.write_text(PIPELINE_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1")
    result = run_bounded(
        [
            sys.executable,
            str(script),
            str(trained["folder"]),
            str(tmp_path / "clips.npy"),
            json.dumps(list(TOY_LABELS)),
        ],
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["module"].startswith("transformers_modules")
    classifier = pipeline("zero-shot-audio-classification", model=str(trained["folder"]))
    for (_label, clip), remote in zip(clips, payload["scores"]):
        local = classifier(clip, candidate_labels=list(TOY_LABELS))
        assert [s["label"] for s in remote] == [s["label"] for s in local]
        np.testing.assert_allclose([s["score"] for s in remote], [s["score"] for s in local], atol=1e-6)


# --- PEFT LoRA ---------------------------------------------------------------------------------
@pytest.mark.parametrize("towers", ["text", "audio", "both"])
def test_lora_trains_only_adapters_and_round_trips(towers, tmp_path):
    torch.manual_seed(0)
    config = SupClapConfig.tiny(svr_mode="static")
    base = SupClapModel(config)
    processor = toy_processor(config)
    before = copy.deepcopy(base.state_dict())
    parameter_names = {name for name, _ in base.named_parameters()}
    model = get_lora_model(base, towers, r=4, alpha=8)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert all("lora_" in name or "modules_to_save" in name for name in trainable)
    other_tower = {"text": "audio_model", "audio": "text_model", "both": None}[towers]
    if other_tower:
        assert not any(other_tower in name and "lora_" in name for name in trainable)

    batch = SupClapCollator(processor, caption_choice="first")(toy_rows(12))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(3):
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    # Only adapter weights (and the adapter's copies of loss_fn / batch_norm) changed. The audio tower's
    # BatchNorm statistics update only when that tower is adapted (they are then saved with the adapter).
    state = model.get_base_model().state_dict()
    for name, value in before.items():
        if name.startswith("loss_fn.") or (name not in parameter_names and towers != "text"):
            continue  # adapter-owned (trained) or a buffer of an adapted tower
        if name.endswith("num_batches_tracked"):
            continue  # a step counter; with momentum 0 it has no effect on the statistics
        candidates = [
            name,
            name.replace(".weight", ".base_layer.weight").replace(".bias", ".base_layer.bias"),
        ]
        module, _, leaf = name.rpartition(".")
        candidates.append(f"{module}.original_module.{leaf}")
        current = next((state[key] for key in candidates if key in state), None)
        assert current is not None, name
        torch.testing.assert_close(current, value, atol=0, rtol=0, msg=name)
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)

    model.eval()
    with torch.no_grad():
        adapted = model(**batch)
    model.save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()
    assert not (tmp_path / "adapter" / "model.safetensors").exists()

    fresh = SupClapModel(config)
    fresh.load_state_dict(before)
    reloaded = PeftModel.from_pretrained(fresh, tmp_path / "adapter").eval()
    with torch.no_grad():
        again = reloaded(**batch)
    torch.testing.assert_close(again.audio_embeds, adapted.audio_embeds)
    torch.testing.assert_close(again.loss, adapted.loss)

    merged = model.merge_and_unload()
    assert type(merged) is SupClapModel
    merged.eval()
    with torch.no_grad():
        out = merged(**batch)
    torch.testing.assert_close(out.text_embeds, adapted.text_embeds, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.audio_embeds, adapted.audio_embeds, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.loss, adapted.loss, atol=1e-5, rtol=0)


def test_lora_rejects_unknown_tower():
    with pytest.raises(ValueError, match="LoRA towers must be one of"):
        lora_config_for("vision")


# --- Trainer under two gloo processes ----------------------------------------------------------
@pytest.mark.slow
def test_trainer_under_two_processes_uses_global_negatives(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    result = run_bounded(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            str(free_port()),
            str(REPO / "tests" / "model" / "trainer_ddp_worker.py"),
            str(tmp_path),
        ],
        cwd=REPO,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    records = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in range(2)]
    from helpers.reference import reference_terms

    from modeling_supclap.model.losses import SupClapLoss

    for step in range(len(records[0])):
        first, second = records[0][step], records[1][step]
        # Each process saw the other's embeddings as negatives: the global batch is twice the local one.
        assert first["num_global"] == second["num_global"] == 2 * first["num_local"]
        torch.testing.assert_close(first["all_text"], second["all_text"])
        # And the loss is the one-process loss on the global batch (mean over processes).
        loss_fn = SupClapLoss(svr_mode="none").double()
        expected = reference_terms(
            loss_fn,
            first["all_text"].double(),
            first["all_audio"].double(),
            first["scale_t"].double(),
            first["scale_a"].double(),
        )["loss"]
        torch.testing.assert_close((first["loss"] + second["loss"]).double() / 2, expected, atol=1e-5, rtol=0)
