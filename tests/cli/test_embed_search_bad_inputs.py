"""Bad input to supclap-embed and supclap-search: one clear message each, exit status 2, no traceback."""

from __future__ import annotations

import pytest
from helpers.embedding import save_model, sound_folder, tiny_clap

from modeling_supclap.cli import embed, search


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("bad_inputs")
    model_dir = save_model(*tiny_clap(), root / "model")
    sounds = sound_folder(root / "sounds", count=3)
    index = root / "index"
    embed.main(["--model_name_or_path", str(model_dir), "--data", str(sounds), "--output_dir", str(index)]
               + ["--dataloader_num_workers", "0", "--use_cpu"])  # fmt: skip
    return {"model": model_dir, "sounds": sounds, "index": index, "root": root}


def _fails(main, argv: list[str], capsys) -> str:
    """The one line a command prints on a usage error (exit status 2)."""
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    return [line for line in stderr.splitlines() if line.startswith("supclap-")][-1]


def test_an_empty_folder(made, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    argv = ["--model_name_or_path", str(made["model"]), "--data", str(tmp_path / "empty")]
    message = _fails(embed.main, [*argv, "--output_dir", str(tmp_path / "index")], capsys)
    assert message.startswith(f"supclap-embed: ValueError: {tmp_path / 'empty'}: no audio files in it")


def test_a_model_folder_without_a_processor(made, tmp_path, capsys):
    model, _ = tiny_clap()
    model.save_pretrained(tmp_path / "bare")
    argv = ["--model_name_or_path", str(tmp_path / "bare"), "--data", str(made["sounds"])]
    message = _fails(embed.main, [*argv, "--output_dir", str(tmp_path / "index")], capsys)
    assert f"{tmp_path / 'bare'} has no processor" in message and "processor.save_pretrained" in message


def test_an_index_made_by_another_model(made, tmp_path, capsys):
    other = save_model(*tiny_clap(seed=1), tmp_path / "other")
    argv = ["--index", str(made["index"]), "--text", "a dog", "--model_name_or_path", str(other)]
    message = _fails(search.main, argv, capsys)
    assert f"was made by the model {made['model']} (weights sha256:" in message
    assert f"not by the model given, {other} (weights sha256:" in message


def test_a_query_file_that_is_not_audio(made, capsys):
    argv = ["--index", str(made["index"]), "--audio", str(made["sounds"] / "notes.txt")]
    message = _fails(search.main, argv, capsys)
    assert message.startswith("supclap-search: BadSampleError:") and "cannot decode file" in message


def test_a_folder_that_is_not_an_index_and_a_missing_query(made, capsys):
    message = _fails(search.main, ["--index", str(made["sounds"]), "--text", "a dog"], capsys)
    assert "no manifest.json: not an embedding index (make one with supclap-embed)" in message
    message = _fails(search.main, ["--index", str(made["index"])], capsys)
    assert message.startswith("supclap-search: ValueError: give one query: --text TEXT or --audio FILE")


def test_an_output_folder_holding_something_else(made, tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "thesis.pdf").write_text("precious")
    argv = ["--model_name_or_path", str(made["model"]), "--data", str(made["sounds"])]
    message = _fails(embed.main, [*argv, "--output_dir", str(tmp_path / "taken")], capsys)
    assert "holds something other than an embedding index" in message
    assert (tmp_path / "taken" / "thesis.pdf").read_text() == "precious"
