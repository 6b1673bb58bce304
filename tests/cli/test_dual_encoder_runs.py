"""What a run does with any model, done with the dual encoder through the real command lines: streaming from
tar shards, preemption and resume (the uninterrupted run's weights), cached negatives (the dense run's
weights), multilingual captions, two processes, push_to_hub to the stand-in Hub and loading back without
the package, and the evaluation suites' layouts."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers.cli import (
    BLOCK_PACKAGE_IMPORT,
    REPO,
    SMALL_CORPUS_CLIPS,
    accelerate_launch_two_cpu,
    run_in_process,
    run_script,
    tiny_train_args,
    wait_for_step,
)
from helpers.hub_server import HubServer, point_clients_at, pushes_from_this_process
from helpers.processes import start
from safetensors.torch import load_file
from transformers import AutoModel, AutoProcessor

from modeling_supclap import SupClapDualEncoderModel
from modeling_supclap.cli.evaluate import main as evaluate_main
from modeling_supclap.cli.train import main as train_main
from modeling_supclap.data import load_records
from modeling_supclap.data.sources.shards import write_shards
from modeling_supclap.training import checkpointing

pytestmark = pytest.mark.slow

CLIP = 0.1 * np.random.default_rng(5).standard_normal(16000).astype(np.float32)
CAPTIONS = ["two short high beeps", "a loud knock"]


def _corpus(cache):
    return cache / f"demo_corpus_{SMALL_CORPUS_CLIPS}"


def _towers(tower_checkpoints, audio: str, text: str) -> list[str]:
    return [
        "--audio_model_name_or_path", str(tower_checkpoints[audio]),
        "--text_model_name_or_path", str(tower_checkpoints[text]),
    ]  # fmt: skip


def _assert_same_weights(folder, reference) -> None:
    got, expected = load_file(folder / "model.safetensors"), load_file(reference / "model.safetensors")
    assert got.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=1e-6, rtol=0, msg=name)


def _state(folder) -> dict[str, torch.Tensor]:
    model, info = AutoModel.from_pretrained(folder, output_loading_info=True)
    assert type(model) is SupClapDualEncoderModel
    assert not (info["missing_keys"] or info["unexpected_keys"] or info["mismatched_keys"]), info
    return model.state_dict()


def _embeddings(folder) -> tuple[torch.Tensor, torch.Tensor]:
    model = AutoModel.from_pretrained(folder).eval()
    inputs = AutoProcessor.from_pretrained(folder)(text=CAPTIONS, audio=[CLIP], sampling_rate=16000)
    with torch.no_grad():
        out = model(**inputs)
    return out.audio_embeds, out.text_embeds


@pytest.fixture(scope="module")
def shards(small_corpus_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("dual_shards") / "train"
    write_shards(load_records(str(_corpus(small_corpus_cache)), split="train"), out, shard_size=10)
    return out


def _stream_args(cache, shards, out, towers: list[str], *extra: str) -> list[str]:
    corpus = _corpus(cache)
    args = tiny_train_args(
        cache, out, "--streaming", "--train_data", str(shards), "--validation_data", str(corpus),
        "--test_data", str(corpus), "--max_steps", "8", "--eval_steps", "1", "--save_steps", "2",
        "--shuffle_buffer_size", "6", *extra,
    )  # fmt: skip
    return [*args, *towers]


def test_streaming_from_shards_preempted_then_resumed_gives_the_uninterrupted_weights(
    tower_checkpoints, small_corpus_cache, shards, tmp_path
):
    """Pretrained AST + XLM-R towers trained from tar shards: SIGTERM mid-run saves a checkpoint and exits
    75, resuming it ends with the uninterrupted run's weights; the final model is the best validation one.
    Validation every step: the stop falls on one, whose checkpoint must follow it (it uses RNGs)."""
    towers = _towers(tower_checkpoints, "ast", "xlm-roberta")
    # The uninterrupted and the resumed runs in this process; the stopped one is a process (the signal).
    reference = tmp_path / "uninterrupted"
    result = run_in_process(train_main, _stream_args(small_corpus_cache, shards, reference, towers))
    assert result.returncode == 0, result.stderr[-4000:]

    out = tmp_path / "preempted"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    process = start(
        [sys.executable, "train_supclap.py", *_stream_args(small_corpus_cache, shards, out, towers)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    wait_for_step(out, 3, [process])
    os.killpg(process.pid, signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 75, stderr[-3000:]
    stopped_at = checkpointing.checkpoint_step(checkpointing.latest_checkpoint(out))
    assert 3 <= stopped_at < 8 and not (out / "model.safetensors").exists()

    resumed = _stream_args(small_corpus_cache, shards, out, towers, "--resume_from_checkpoint", "latest")
    result = run_in_process(train_main, resumed)
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"resumed from {out / f'checkpoint-{stopped_at}'}" in result.stderr
    _assert_same_weights(out / "checkpoint-8", reference / "checkpoint-8")
    final, best = _state(out), _state(out / "best")
    assert final.keys() == best.keys() == _state(reference).keys()
    for name, tensor in _state(reference).items():
        torch.testing.assert_close(final[name], tensor, atol=1e-6, rtol=0, msg=name)
        torch.testing.assert_close(best[name], tensor, atol=0, rtol=0, msg=name)  # final = best, every tensor
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_state"]["step"] == 8 and "t2a_R@1" in metrics["test"]["retrieval"]


def _without_dropout(folder, out):
    """A copy of a tower checkpoint with every dropout rate 0 (so a cached step can equal the dense one)."""
    shutil.copytree(folder, out)
    config = json.loads((out / "config.json").read_text())
    rates = {k: 0.0 for k in config if "dropout" in k and isinstance(config[k], float)}
    (out / "config.json").write_text(json.dumps({**config, **rates}))
    return out


def test_cached_negatives_take_the_dense_runs_steps(tower_checkpoints, small_corpus_cache, tmp_path):
    towers = [
        "--audio_model_name_or_path", str(_without_dropout(tower_checkpoints["ast"], tmp_path / "ast")),
        "--text_model_name_or_path", str(_without_dropout(tower_checkpoints["bert"], tmp_path / "bert")),
    ]  # fmt: skip
    runs = {}
    for name, extra in (("dense", []), ("cached", ["--gradient_cache_chunk_size", "3"])):
        out = tmp_path / name
        args = tiny_train_args(small_corpus_cache, out, "--max_steps", "4", "--eval_steps", "4", *extra)
        result = run_in_process(train_main, [*args, *towers, "--svr_mode", "dynamic"])
        assert result.returncode == 0, result.stderr[-4000:]
        runs[name] = out
    assert json.loads((runs["cached"] / "config.json").read_text())["gradient_cache_chunk_size"] == 3
    dense, cached = (
        load_file(runs["dense"] / "model.safetensors"),
        load_file(runs["cached"] / "model.safetensors"),
    )
    for name, tensor in dense.items():  # float32 sums in another order: close, not equal
        torch.testing.assert_close(cached[name], tensor, atol=2e-5, rtol=1e-4, msg=name)
    initial = load_file(tower_checkpoints["bert"] / "model.safetensors")
    moved = [
        k
        for k, v in initial.items()
        if f"text_model.{k}" in dense and not torch.equal(v, dense[f"text_model.{k}"])
    ]
    assert moved, "the text tower did not train: the comparison says nothing"


def test_multilingual_captions_with_a_sonar_shaped_text_tower(tmp_path):
    """Random AST + M2M100-encoder towers on a three-language demo corpus: every language reported."""
    out, languages = tmp_path / "run", ["en", "fr", "de"]
    args = tiny_train_args(tmp_path / "cache", out, "--max_steps", "4", "--demo_languages", *languages)
    result = run_in_process(train_main, [*args, "--audio_tower", "ast", "--text_tower", "m2m100"])
    assert result.returncode == 0, result.stderr[-4000:]
    test = json.loads((out / "metrics.json").read_text())["test"]
    assert test["caption_languages"] == languages
    assert set(test["retrieval_per_language"]) == {*languages, "mean"}
    assert set(test["zero_shot"]["per_language"]) == set(languages)
    config = json.loads((out / "config.json").read_text())
    assert config["text_config"]["model_type"] == "m2m_100" and config["text_tower_class"] == "M2M100Encoder"
    assert config["text_config"]["vocab_size"] == 2000  # the multilingual demo's larger BPE


def test_two_processes_train_one_dual_encoder(small_corpus_cache, tmp_path):
    out = tmp_path / "ddp"
    args = tiny_train_args(small_corpus_cache, out, "--per_device_train_batch_size", "4", "--max_steps", "4")
    result = accelerate_launch_two_cpu(
        "train_supclap.py",
        [*args, "--audio_tower", "whisper", "--text_tower", "bert", "--svr_mode", "dynamic"],
    )
    assert result.returncode == 0, result.stderr[-4000:]
    state = json.loads((out / "metrics.json").read_text())["train_state"]
    assert state["num_processes"] == 2 and state["step"] == 4
    assert _embeddings(out)[0].shape == (1, 16)


HUB_TOKEN = "hf_DualEncoderPlantedToken0123456789abcdef"
LOAD_FROM_HUB = (
    BLOCK_PACKAGE_IMPORT
    + """
import json, sys
import numpy as np, torch
from transformers import AutoModel, AutoProcessor
model, info = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True, output_loading_info=True)
processor = AutoProcessor.from_pretrained(sys.argv[1], trust_remote_code=True)
inputs = processor(text=json.loads(sys.argv[3]), audio=[np.load(sys.argv[2])], sampling_rate=16000)
with torch.no_grad():
    out = model.eval()(**inputs)
print(json.dumps({"module": type(model).__module__, "info": {k: list(v) for k, v in info.items()},
                  "audio": out.audio_embeds.tolist(), "text": out.text_embeds.tolist()}))
"""
)


def test_push_to_hub_then_load_from_the_hub_without_the_package(
    tower_checkpoints, small_corpus_cache, tmp_path, monkeypatch
):
    with HubServer(tokens={HUB_TOKEN: "ns"}) as hub:
        point_clients_at(hub, tmp_path / "hf_home", HUB_TOKEN, monkeypatch)
        out = tmp_path / "run"
        args = tiny_train_args(
            small_corpus_cache, out, "--max_steps", "2", "--push_to_hub", "--hub_model_id", "ns/dual"
        )
        with pushes_from_this_process(hub, tmp_path / "hf_home"):  # the run here; the load below: a process
            result = run_in_process(train_main, [*args, *_towers(tower_checkpoints, "whisper", "sonar")])
        assert result.returncode == 0, result.stderr[-4000:]
        stored = hub.files("ns/dual")
        code = {
            "modeling_supclap_dual_encoder.py",
            "configuration_supclap_dual_encoder.py",
            "processing_supclap_dual_encoder.py",
        }
        assert (
            code | {"model.safetensors", "config.json", "README.md", "processor_config.json"} <= stored.keys()
        )
        assert stored["model.safetensors"] == (out / "model.safetensors").read_bytes()
        card = stored["README.md"].decode()
        assert "a dual encoder (whisper audio tower, m2m_100 text tower)" in card
        assert "`whisper` (audio) and `sonar` (text)" in card, (
            card
        )  # the towers it started from, by folder name

        np.save(tmp_path / "clip.npy", CLIP)
        loaded = run_script(
            ["-c", LOAD_FROM_HUB, "ns/dual", str(tmp_path / "clip.npy"), json.dumps(CAPTIONS)],
            cwd=tmp_path, env={"PYTHONPATH": ""},
        )  # fmt: skip
        assert loaded.returncode == 0, loaded.stderr[-4000:]
    remote = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert remote["module"].startswith("transformers_modules") and not any(remote["info"].values()), remote
    audio, text = _embeddings(out)
    torch.testing.assert_close(torch.tensor(remote["audio"]), audio, atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.tensor(remote["text"]), text, atol=1e-6, rtol=0)


def _suite_folder(corpus, root, layout: str):
    """The demo corpus's test split in a suite's layout: Clotho (one row per clip, caption_1..caption_5, split
    'evaluation') or AudioCaps (one row per caption, split 'test')."""
    split = "evaluation" if layout == "clotho" else "test"
    (root / split).mkdir(parents=True)
    rows = []
    for index, record in enumerate(load_records(str(corpus), split="test")):
        audio, rate = sf.read(record.audio)
        sf.write(root / split / f"{index}.wav", audio, rate)
        captions = [record.captions[k % len(record.captions)] for k in range(5)]
        if layout == "clotho":
            rows.append([f"{index}.wav", *captions])
        else:
            rows += [[f"{index}.wav", caption, 100 * index + k] for k, caption in enumerate(record.captions)]
    header = (
        ["file_name", *(f"caption_{k}" for k in range(1, 6))]
        if layout == "clotho"
        else ["file_name", "caption", "audiocap_id"]
    )
    with open(root / split / "metadata.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])
    return root


def test_the_evaluation_suites_score_a_saved_dual_encoder(tower_checkpoints, small_corpus_cache, tmp_path):
    out = tmp_path / "run"
    args = tiny_train_args(small_corpus_cache, out, "--max_steps", "2")
    result = run_in_process(train_main, [*args, *_towers(tower_checkpoints, "wav2vec2", "bert")])
    assert result.returncode == 0, result.stderr[-4000:]
    clips = len(load_records(str(_corpus(small_corpus_cache)), split="test"))
    for suite in ("clotho", "audiocaps"):
        data = _suite_folder(_corpus(small_corpus_cache), tmp_path / suite, suite)
        report = tmp_path / f"{suite}.json"
        result = run_in_process(
            evaluate_main,
            ["--model_name_or_path", str(out), "--eval_data", str(data),
             "--eval_suite", suite, "--output_json", str(report)],
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        results = json.loads(report.read_text())
        assert results["num_clips"] == clips and "t2a_R@1" in results["retrieval"], results
        assert (
            (results["num_captions"] == 5 * clips) if suite == "clotho" else results["num_captions"] >= clips
        )
