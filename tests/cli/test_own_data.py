"""Your own sounds, as a new user has them: a folder of WAVs with a `caption` column, from scratch to
the Hub, through the real command lines."""

from __future__ import annotations

import csv
import importlib.metadata
import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers.cli import REPO, run_in_process, run_script, tiny_train_args
from helpers.hub_server import HubServer, point_clients_at

from modeling_supclap.cli.evaluate import main as evaluate_main
from modeling_supclap.cli.train import main as train_main

pytestmark = pytest.mark.slow

TOKEN = "hf_own_data_test_token"


def _my_sounds(folder: Path, count: int = 30, rate: int = 22050, extra_columns: bool = True) -> Path:
    """WAVs at 22.05 kHz of three kinds of sound, and a metadata.csv: file_name, caption, label."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    kinds = {"dog": "a dog barks twice", "horn": "a car horn honks", "rain": "rain falls on a roof"}
    with open(folder / "metadata.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file_name", "caption", "label"])
        for i in range(count):
            label = list(kinds)[i % 3]
            t = np.arange(int(rate * (1.5 + 0.5 * (i % 2)))) / rate
            sound = {
                "dog": np.sin(2 * np.pi * 400 * t) * ((t % 0.5) < 0.12),
                "horn": np.sin(2 * np.pi * 440 * t) + 0.5 * np.sin(2 * np.pi * 554 * t),
                "rain": rng.standard_normal(t.size),
            }[label]
            sf.write(folder / f"{label}{i}.wav", (0.2 * sound).astype(np.float32), rate)
            writer.writerow([f"{label}{i}.wav", kinds[label], label])
    return folder


# The installed console scripts, by name: "supclap-push" -> "modeling_supclap.cli.push".
CONSOLE_SCRIPTS = {
    entry.name: entry.module
    for entry in importlib.metadata.entry_points(group="console_scripts")
    if entry.name.startswith("supclap-")
}


def _readme_walkthrough() -> list[str]:
    block = re.search(r"### Your own data\n.*?```bash\n(.*?)```", (REPO / "README.md").read_text(), re.S)[1]
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """The stand-in Hub (tests/helpers/hub_server.py), subprocess clients pointed at it."""
    with HubServer(tokens={TOKEN: "me"}) as server:
        point_clients_at(server, tmp_path / "hf_home", TOKEN, monkeypatch)
        yield server


def test_readme_walkthrough_runs_as_written(tmp_path, hub):
    """WAVs + CSV -> train from scratch -> evaluate -> model card (its code run) -> push -> reload."""
    _my_sounds(tmp_path / "my_sounds")
    outputs = []
    for command in _readme_walkthrough():
        words = shlex.split(command)
        assert words[0] == "python" or words[0] in CONSOLE_SCRIPTS, command
        if words[0] in CONSOLE_SCRIPTS:  # the console script's own module, as pip installs it
            args = ["-c", f"from {CONSOLE_SCRIPTS[words[0]]} import main; main()", *words[1:]]
        else:
            args = [str(REPO / words[1]), *words[2:]] if words[1] != "-m" else words[1:]
        result = run_script(args, cwd=tmp_path)
        assert result.returncode == 0, f"{command}\n{result.stderr[-4000:]}"
        outputs.append(result)
    train, evaluation, push = outputs
    assert "caption column(s) caption" in train.stderr
    assert "a byte-level BPE tokenizer trained on 30 training captions" in train.stderr
    assert "audio at 22050 Hz (the most common rate" in train.stderr
    assert "T2A" in evaluation.stdout and "zero-shot" in evaluation.stdout
    assert "pushed outputs/my-model to me/my-model" in push.stdout
    assert "me/my-model" in hub.repos
    model_dir = tmp_path / "outputs" / "my-model"
    assert json.loads((model_dir / "config.json").read_text())["model_type"] == "supclap"
    processor = json.loads((model_dir / "processor_config.json").read_text())
    assert processor["feature_extractor"]["sampling_rate"] == 22050
    # Every Python block of the pushed card runs as it is (on the repository, from the stand-in Hub).
    blocks = re.findall(r"```python\n(.*?)```", (model_dir / "README.md").read_text(), re.S)
    assert len(blocks) == 2 and all('"me/my-model"' in b and "22050" in b for b in blocks)
    for index, block in enumerate(blocks):
        (tmp_path / f"card_block{index}.py").write_text(block)
        result = run_script([str(tmp_path / f"card_block{index}.py")], cwd=tmp_path)
        assert result.returncode == 0, block + result.stderr[-3000:]
        assert ("'score'" in result.stdout) if index == 0 else ("cosine similarity:" in result.stdout)


def test_the_local_card_runs_as_it_is_before_any_push(small_corpus_cache, tmp_path):
    """A training run's card points its code at its own folder by its name (run from the folder's parent; no
    absolute path: hub.local_folder_reference), with the processor's sampling rate."""
    out = tmp_path / "run"
    result = run_in_process(train_main, tiny_train_args(small_corpus_cache, out, "--max_steps", "2"))
    assert result.returncode == 0, result.stderr[-3000:]
    card = (out / "README.md").read_text()
    assert str(tmp_path) not in card
    blocks = re.findall(r"```python\n(.*?)```", card, re.S)
    assert len(blocks) == 2 and all('"run"' in b and "16000" in b for b in blocks)
    for index, block in enumerate(blocks):
        (tmp_path / f"block{index}.py").write_text(block)
        ran = run_script([str(tmp_path / f"block{index}.py")], cwd=tmp_path)
        assert ran.returncode == 0, block + ran.stderr[-3000:]
        assert ("'score'" in ran.stdout) if index == 0 else ("cosine similarity:" in ran.stdout)


def test_a_usage_error_is_one_message_without_a_traceback(tmp_path):
    folder = _my_sounds(tmp_path / "sounds", count=6)
    (folder / "metadata.csv").write_text("file_name,description\ndog0.wav,a dog\n")
    result = run_script(
        ["train_supclap.py", "--train_data", str(folder), "--output_dir", str(tmp_path / "o")]
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("train_supclap.py:")]
    assert (
        len(errors) == 1
        and "no caption column found" in errors[0]
        and "Name it with --caption_columns" in errors[0]
    )
    debug = ["--train_data", str(folder), "--output_dir", str(tmp_path / "o"), "--debug"]
    with pytest.raises(ValueError, match="no caption column found"):  # --debug: the traceback, not one line
        run_in_process(train_main, debug)
    missing = run_in_process(evaluate_main, ["--model_name_or_path", str(folder), "--eval_data", str(folder)])
    assert missing.returncode != 0 and "Traceback" not in missing.stderr


def test_clotho_style_caption_columns_are_all_found(tmp_path):
    folder = _my_sounds(tmp_path / "clotho", count=6)
    rows = list(csv.reader(open(folder / "metadata.csv")))
    with open(folder / "metadata.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file_name"] + [f"caption_{k}" for k in range(1, 6)])
        for name, caption, _ in rows[1:]:
            writer.writerow([name] + [f"{caption} ({k})" for k in range(1, 6)])
    from modeling_supclap.data import load_records

    records = load_records(str(folder))
    assert len(records) == 6 and records[0].captions == [f"{rows[1][1]} ({k})" for k in range(1, 6)]


def test_continuing_a_siglip_static_checkpoint_keeps_its_loss_and_learned_radius(
    small_corpus_cache, tmp_path
):
    first = tmp_path / "first"
    args = tiny_train_args(small_corpus_cache, first, "--base_loss", "siglip", "--svr_mode", "static")
    result = run_in_process(train_main, [*args, "--max_steps", "4"])
    assert result.returncode == 0, result.stderr[-3000:]
    from safetensors.torch import load_file

    learned = load_file(first / "model.safetensors")
    assert float(learned["loss_fn.radius.radius"]) != 0.1  # it trained away from radius_init
    second = tmp_path / "second"
    args = tiny_train_args(
        small_corpus_cache, second, "--model_name_or_path", str(first), "--learning_rate", "0"
    )
    result = run_in_process(train_main, [*args, "--max_steps", "2"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "UNEXPECTED" not in result.stderr and "MISSING" not in result.stderr
    assert "the SigLIP sigmoid loss plus bilateral StaticSVR" in result.stderr  # logged: the loss kept
    config = json.loads((second / "config.json").read_text())
    assert (config["base_loss"], config["svr_mode"]) == ("siglip", "static")
    carried = load_file(second / "model.safetensors")
    for name in ("loss_fn.radius.radius", "loss_fn.base_loss.logit_bias"):
        assert torch.equal(carried[name], learned[name]), name  # lr 0: exactly the first run's values
    # A given loss flag does change it, and says so.
    third = tmp_path / "third"
    args = tiny_train_args(
        small_corpus_cache, third, "--model_name_or_path", str(first), "--svr_weight", "0.5"
    )
    result = run_in_process(train_main, [*args, "--max_steps", "1"])
    assert (
        result.returncode == 0
        and "--svr_weight changes the checkpoint's svr_weight: 1.0 -> 0.5" in result.stderr
    )


def test_max_text_length_reaches_validation_and_evaluation(small_corpus_cache, tmp_path):
    """Two tokens leave only <s></s>: every caption embeds alike, so no clip finds its own captions."""
    out = tmp_path / "run"
    args = tiny_train_args(small_corpus_cache, out, "--max_text_length", "2", "--max_steps", "3")
    result = run_in_process(train_main, args)
    assert result.returncode == 0, result.stderr[-3000:]
    state = json.loads((out / "metrics.json").read_text())["train_state"]
    assert state["validation"] and all(v["a2t_R@1"] == 0.0 for v in state["validation"])
    corpus = small_corpus_cache / "demo_corpus_80"
    report = tmp_path / "eval.json"
    common = [
        "--model_name_or_path",
        str(out),
        "--eval_data",
        str(corpus),
        "--output_json",
        str(report),
    ]
    assert run_in_process(evaluate_main, [*common, "--max_text_length", "2"]).returncode == 0
    assert json.loads(report.read_text())["retrieval"]["a2t_R@1"] == 0.0
    assert run_in_process(evaluate_main, common).returncode == 0
    assert json.loads(report.read_text())["retrieval"]["a2t_R@1"] > 0.0
