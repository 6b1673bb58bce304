"""``--args_file``: a recipe of flags read where the flag stands (later flags override), and the paper's
recipe (recipes/supclap_paper.args) parsed into the run it describes. Its Hub ids are not reachable here: the
recipe is parsed, never trained."""

from __future__ import annotations

import pytest
from helpers.cli import REPO

from modeling_supclap.cli.parsing import expand_args_files
from modeling_supclap.cli.train import parse_args as parse_train_arguments

PAPER = REPO / "recipes" / "supclap_paper.args"


def test_the_papers_recipe_is_the_papers_setup():
    model, data, train = parse_train_arguments(["--args_file", str(PAPER), "--train_data", "pairs.jsonl"])
    assert (model.audio_model_name_or_path, model.text_model_name_or_path) == (
        "mispeech/ced-base",
        "cointegrated/SONAR_200_text_encoder",
    )
    assert model.trust_remote_code and model.projection_dim == 1024
    overrides = model.loss_overrides()
    assert (overrides["base_loss"], overrides["svr_mode"], overrides["svr_bilateral"]) == (
        "infonce",
        "dynamic",
        True,
    )
    assert (train.learning_rate, train.per_device_train_batch_size) == (5e-5, 24)
    assert train.max_steps == 10 * 2237 and train.eval_steps == train.save_steps == 2237  # 10 epochs
    assert data.train_data == "pairs.jsonl"


def test_flags_after_the_file_override_it_and_before_it_are_overridden(tmp_path):
    recipe = tmp_path / "r.args"
    recipe.write_text("# a comment line\n--learning_rate 1e-4  # trailing comment\n--max_steps 7\n")
    assert expand_args_files(["--max_steps", "3", "--args_file", str(recipe), "--learning_rate", "2e-4"]) == [
        "--max_steps", "3", "--learning_rate", "1e-4", "--max_steps", "7", "--learning_rate", "2e-4",
    ]  # fmt: skip
    _, _, train = parse_train_arguments(
        ["--max_steps", "3", f"--args_file={recipe}", "--learning_rate", "2e-4"]
    )
    assert (train.max_steps, train.learning_rate) == (7, 2e-4)


@pytest.mark.parametrize(
    "content, message",
    [(None, "cannot read its flags"), ('--output_dir "unclosed\n', "cannot read its flags"),
     ("--args_file other.args\n", "a flags file cannot include another")],
)  # fmt: skip
def test_a_bad_flags_file_is_one_message_naming_it_and_exit_2(tmp_path, capsys, content, message):
    recipe = tmp_path / "recipe.args"
    if content is not None:
        recipe.write_text(content)
    with pytest.raises(SystemExit) as exit_status:  # argparse's usage error, as for any wrong flag
        parse_train_arguments(["--args_file", str(recipe)])
    assert exit_status.value.code == 2
    assert f"--args_file {recipe}: {message}" in capsys.readouterr().err
