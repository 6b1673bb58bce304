"""eval_supclap.py --benchmark: ESC-50, UrbanSound8K, Clotho and AudioCaps look-alike folders, offline."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers.cli import run_in_process
from helpers.toy import SAMPLING_RATE, toy_processor

from modeling_supclap import SupClapConfig, SupClapModel
from modeling_supclap.cli.evaluate import main as evaluate_main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    config = SupClapConfig.tiny()
    torch.manual_seed(0)
    SupClapModel(config).save_pretrained(folder)
    toy_processor(config).save_pretrained(folder)
    return folder


def _wav(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    sf.write(path, (0.1 * rng.standard_normal(SAMPLING_RATE)).astype(np.float32), SAMPLING_RATE)


def _folder(root: Path, split: str | None, header: list[str], rows: list[list]) -> Path:
    where = root / split if split else root
    where.mkdir(parents=True)
    with open(where / "metadata.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for index, row in enumerate(rows):
            if not (where / row[0]).exists():
                _wav(where / row[0], index)
            writer.writerow(row)
    return root


def _evaluate(model_dir: Path, benchmark: str, data: Path, tmp_path: Path) -> dict:
    report = tmp_path / f"{benchmark}.json"
    result = run_in_process(
        evaluate_main,
        ["--model_name_or_path", str(model_dir), "--eval_data", str(data),
         "--benchmark", benchmark, "--output_json", str(report)],
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(report.read_text()) | {"stdout": result.stdout}


@pytest.mark.parametrize(
    "benchmark, header, folds, classes",
    [
        ("esc50", ["file_name", "fold", "target", "category"], 5, ["dog", "chirping_birds", "rain"]),
        ("urbansound8k", ["file_name", "fold", "classID", "class"], 10, ["dog_bark", "siren", "drilling"]),
    ],
)
def test_fold_wise_zero_shot_presets(model_dir, tmp_path, benchmark, header, folds, classes):
    rows = [
        [f"{i}.wav", 1 + i % folds, i % len(classes), classes[i % len(classes)]] for i in range(2 * folds * 3)
    ]
    data = _folder(tmp_path / benchmark, None, header, rows)
    out = _evaluate(model_dir, benchmark, data, tmp_path)
    zero_shot = out["zero_shot"]
    assert sorted(zero_shot["per_fold_accuracy"], key=int) == [str(f) for f in range(1, folds + 1)]
    assert zero_shot["mean_accuracy"] == pytest.approx(np.mean(list(zero_shot["per_fold_accuracy"].values())))
    assert zero_shot["template"] == "This is a sound of {label}." and out["num_classes"] == 3
    assert zero_shot["chance_accuracy"] == pytest.approx(100 / 3)
    assert "| fold |" in out["stdout"] and "mean" in out["stdout"]


def test_clotho_preset_uses_the_five_captions(model_dir, tmp_path):
    header = ["file_name"] + [f"caption_{k}" for k in range(1, 6)]
    rows = [[f"clip{i}.wav"] + [f"sound {i} described {k}" for k in range(1, 6)] for i in range(8)]
    data = _folder(tmp_path / "clotho", "evaluation", header, rows)  # Clotho's own split name
    out = _evaluate(model_dir, "clotho", data, tmp_path)
    assert out["num_clips"] == 8 and out["num_captions"] == 40
    assert "t2a_R@1" in out["retrieval"] and "zero_shot" not in out


def test_audiocaps_preset_groups_rows_per_clip(model_dir, tmp_path):
    rows = [[f"yt{i % 6}.wav", f"caption {j} of clip {i % 6}", 1000 + i] for j, i in enumerate(range(18))]
    data = _folder(tmp_path / "audiocaps", "test", ["file_name", "caption", "audiocap_id"], rows)
    out = _evaluate(model_dir, "audiocaps", data, tmp_path)
    assert out["num_clips"] == 6 and out["num_captions"] == 18
