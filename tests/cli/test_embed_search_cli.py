"""supclap-embed then supclap-search through the real commands, on a generated folder of sounds: results
equal brute force, a run killed with SIGKILL and rerun gives the index an uninterrupted run gives, two gloo
processes give the index one gives, and a corrupt file is named and counted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers.cli import REPO, accelerate_launch_two_cpu, run_in_process, run_script
from helpers.embedding import save_model, sound_folder, tiny_clap
from helpers.processes import kill_group, start

from modeling_supclap.cli import embed, search
from modeling_supclap.inference import EmbeddingIndex, embed_text
from modeling_supclap.inference.store import MANIFEST, part_path

pytestmark = pytest.mark.slow

EMBED = ["-m", "modeling_supclap.cli.embed"]
SEARCH = ["-m", "modeling_supclap.cli.search"]
NUM_FILES = 24  # and broken.wav


@pytest.fixture(scope="module")
def material(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("embed_cli")
    model, processor = tiny_clap()
    return {
        "model": save_model(model, processor, root / "model"),
        "sounds": sound_folder(root / "sounds", count=NUM_FILES),
        "root": root,
    }


def _embed_args(material: dict[str, Path], output_dir: Path, *extra: str) -> list[str]:
    return [
        "--model_name_or_path", str(material["model"]), "--data", str(material["sounds"]),
        "--output_dir", str(output_dir), "--part_size", "3", "--use_cpu", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def reference(material) -> Path:
    """One uninterrupted run, two DataLoader workers: the index the other runs must reproduce (made in this
    process; the killed run and the two gloo processes below run the command as a process)."""
    output = material["root"] / "reference_index"
    result = run_in_process(embed.main, _embed_args(material, output, "--dataloader_num_workers", "2"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "skipped 1 file(s) that could not be decoded" in result.stdout
    return output


def _same_index(a: Path, b: Path) -> None:
    manifest_a, manifest_b = (json.loads((p / MANIFEST).read_text()) for p in (a, b))
    assert manifest_a == manifest_b  # settings, counts, skipped files and each part's sha256
    for part in range(manifest_a["num_parts"]):
        assert part_path(a, part).read_bytes() == part_path(b, part).read_bytes()


def test_the_index_holds_every_clip_and_names_the_corrupt_file(material, reference):
    manifest = json.loads((reference / MANIFEST).read_text())
    assert manifest["num_embedded"] == NUM_FILES and manifest["num_skipped"] == 1
    (skipped,) = manifest["skipped"]
    assert skipped["key"] == "broken.wav" and "cannot decode file" in skipped["reason"]
    index = EmbeddingIndex.load(reference)
    keys = [index.row(i)["key"] for i in range(len(index))]
    assert "more/white_noise_005.wav" in keys and not any(key.endswith(".txt") for key in keys)
    assert all(Path(index.row(i)["path"]).is_file() for i in range(len(index)))
    durations = [index.row(i)["duration"] for i in range(len(index))]
    windows = [index.row(i)["num_windows"] for i in range(len(index))]
    assert all(w == max(1, -(-int(d * 16000) // 32000)) for d, w in zip(durations, windows))  # 2 s windows


def test_search_through_the_command_is_brute_force(material, reference):
    result = run_script(
        [*SEARCH, "--index", str(reference), "--text", "a high beep", "--top_k", "5", "--json"]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout)
    index = EmbeddingIndex.load(reference)
    model, processor = tiny_clap()
    scores = (embed_text(model, processor, "a high beep") @ index.embeddings.T)[0]
    expected = torch.sort(scores, descending=True, stable=True).indices[:5]
    assert [hit["id"] for hit in found["results"]] == [index.row(int(i))["id"] for i in expected]
    for hit, i in zip(found["results"], expected):
        assert hit["score"] == pytest.approx(float(scores[i]), abs=1e-6)


def test_audio_search_finds_the_clip_itself_first(material, reference, capsys):
    query = material["sounds"] / "low_hum_007.wav"
    search.main(["--index", str(reference), "--audio", str(query), "--top_k", "3"])  # in-process: no start-up
    first = capsys.readouterr().out.splitlines()[1].split()
    assert (
        first[0] == "1" and first[2] == "low_hum_007.wav" and float(first[1]) == pytest.approx(1.0, abs=1e-5)
    )


def test_killed_mid_run_then_rerun_gives_the_uninterrupted_index(material, reference, tmp_path):
    output = tmp_path / "index"
    command = [sys.executable, *EMBED, *_embed_args(material, output, "--dataloader_num_workers", "0")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    process = start(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    try:
        while not part_path(output, 1).is_file():  # two parts written: killed in the middle of the rest
            assert process.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no part written in 300 s"
            time.sleep(0.05)
    finally:
        kill_group(process)  # SIGKILL to the command and every process it started
    num_parts = -(-(NUM_FILES + 1) // 3)
    written = [part for part in range(num_parts) if part_path(output, part).is_file()]
    assert not (output / MANIFEST).exists() and 2 <= len(written) < num_parts, written
    result = run_in_process(embed.main, _embed_args(material, output, "--dataloader_num_workers", "0"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        f"resuming: {NUM_FILES + 1} clips in {num_parts} part(s) of 3, {len(written)} done" in result.stdout
    )
    _same_index(output, reference)


def test_two_gloo_processes_give_the_index_one_process_gives(material, reference, tmp_path):
    output = tmp_path / "index"
    result = accelerate_launch_two_cpu(
        "-m", ["modeling_supclap.cli.embed", *_embed_args(material, output, "--dataloader_num_workers", "1")]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 process(es)" in result.stdout
    _same_index(output, reference)


def test_a_rerun_with_other_settings_is_refused_and_the_same_one_is_a_no_op(material, reference, capsys):
    with pytest.raises(SystemExit) as stopped:  # in-process, as a rerun: the same parsing and checks
        embed.main(_embed_args(material, reference, "--long_audio", "first"))
    assert stopped.value.code == 2
    assert "holds an index made with other settings (long_audio.long_audio: 'windows' then, 'first' now)" in (
        capsys.readouterr().err
    )
    embed.main(_embed_args(material, reference, "--dataloader_num_workers", "0"))
    assert "already complete" in capsys.readouterr().out
