"""The loss registry: everything that knows the loss names reads it, so a new radius mode plugs in.

A toy radius mode is registered at run time (in a subprocess, so this process's registry stays as
shipped) and trained for three steps through the real ``train_supclap.py`` entry point: config
validation, the CLI choices, the model's weight initialisation, checkpoints, the model card and the
benchmarks' variant list all pick it up without any edit outside ``losses.py``'s registry.
"""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
from helpers.cli import REPO, run_in_process, run_script, tiny_train_args

from modeling_supclap import SupClapConfig, SupClapModel
from modeling_supclap.hub import loss_config_dict
from modeling_supclap.model.losses import BASE_LOSSES, SVR_MODES, RadiusMode, StaticRadius, register_svr_mode

TOY_MODE = textwrap.dedent(
    '''
    import torch
    from torch import nn

    from modeling_supclap.model.losses import RadiusMode, register_svr_mode


    @register_svr_mode
    class DistanceFractionRadius(RadiusMode):
        """R = ratio * D with one learned ratio (a toy mode for the registry test)."""

        name = "distance_fraction"
        summary = "DistanceFractionSVR"

        def __init__(self):
            super().__init__()
            self.ratio = nn.Parameter(torch.empty(()))
            self.reset_parameters()

        def reset_parameters(self, init=nn.init):
            init.constant_(self.ratio, 0.25)

        def forward(self, similarities, positive_index, distance):
            return self.ratio * distance.detach()
    '''
)

DRIVER = TOY_MODE + textwrap.dedent(
    """
    import json
    import sys
    from pathlib import Path

    from modeling_supclap import SupClapModel
    from modeling_supclap.cli.train import main

    main(sys.argv[1:])
    out = Path(sys.argv[sys.argv.index("--output_dir") + 1])
    reloaded = SupClapModel.from_pretrained(out)
    json.dump(
        {"ratio": float(reloaded.loss_fn.radius.ratio), "mode": reloaded.config.svr_mode},
        open(out / "reloaded.json", "w"),
    )
    """
)


@pytest.mark.slow
def test_a_radius_mode_registered_at_run_time_trains_and_is_named_in_the_card(small_corpus_cache, tmp_path):
    driver = tmp_path / "train_with_toy_mode.py"
    driver.write_text(DRIVER)
    out = tmp_path / "run"
    args = tiny_train_args(small_corpus_cache, out, "--svr_mode", "distance_fraction", "--max_steps", "3")
    result = run_script([str(driver), *args])
    assert result.returncode == 0, result.stderr[-4000:]

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_state"]["step"] == 3
    # The SVR term really ran with the toy radius: R = 0.25 D starts inside [0, D].
    assert all("loss_svr" in row and row["radius_constraint_active"] == 0.0 for row in metrics["history"])
    card = (out / "README.md").read_text()
    assert "bilateral DistanceFractionSVR" in card and "distance_fraction" in card
    reloaded = json.loads((out / "reloaded.json").read_text())
    assert reloaded["mode"] == "distance_fraction"
    assert reloaded["ratio"] != 0.25  # trained, saved and loaded back (not re-initialised)


@pytest.mark.slow
def test_the_cli_and_the_benchmarks_list_a_registered_mode(tmp_path):
    script = TOY_MODE + textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(REPO / "benchmarks")!r})
        from loss_variants import loss_variants
        from modeling_supclap.cli.train import parse_args

        model_args, _, _ = parse_args(["--svr_mode", "distance_fraction"])
        print(model_args.svr_mode, sorted(v for v in loss_variants() if "distance_fraction" in v))
        """
    )
    result = run_script(["-c", script])
    assert result.returncode == 0, result.stderr[-4000:]
    assert (
        "distance_fraction ['infonce+distance_fraction-bi', 'infonce+distance_fraction-uni'" in result.stdout
    )


@pytest.mark.slow
def test_config_and_loss_reject_an_unregistered_name_listing_the_registered_ones():
    with pytest.raises(
        ValueError,
        match=r"svr_mode must be one of \['none', 'static', 'dynamic', 'ratio', 'margin', 'spreading'\]",
    ):
        SupClapConfig.tiny(svr_mode="distance_fraction")
    with pytest.raises(ValueError, match=r"base_loss must be one of \['infonce', 'siglip'\]"):
        SupClapConfig.tiny(base_loss="triplet")
    from modeling_supclap.cli.train import main as train_main

    result = run_in_process(train_main, ["--svr_mode", "nope"])
    assert result.returncode == 2 and "invalid choice: 'nope'" in result.stderr


def test_registering_checks_the_class_and_refuses_to_shadow_a_name():
    class Unnamed(RadiusMode):
        pass

    with pytest.raises(TypeError, match="non-empty `name`"):
        register_svr_mode(Unnamed)
    with pytest.raises(TypeError, match="RadiusMode subclass"):
        register_svr_mode(dict)

    class Impostor(RadiusMode):
        name = "static"

    with pytest.raises(ValueError, match="'static' is already registered to StaticRadius"):
        register_svr_mode(Impostor)
    assert SVR_MODES["static"] is StaticRadius
    assert register_svr_mode(StaticRadius) is StaticRadius  # registering the same class again is a no-op


@pytest.mark.parametrize("base_loss", list(BASE_LOSSES))
@pytest.mark.parametrize("svr_mode", list(SVR_MODES))
def test_every_registered_component_describes_itself_without_drawing_random_numbers(base_loss, svr_mode):
    import torch

    config = SupClapConfig.tiny(base_loss=base_loss, svr_mode=svr_mode)
    state = torch.get_rng_state()
    settings = loss_config_dict(config)
    assert torch.equal(state, torch.get_rng_state())
    assert settings["base_loss"] == base_loss and settings["svr_mode"] == svr_mode
    # The model's loss reports the same settings as the config.
    model = SupClapModel(config)
    assert {
        k: v for k, v in settings.items() if not k.startswith(("logit_scale", "freeze", "gradient_cache"))
    } == (model.loss_fn.get_config_dict())
    assert (
        sys.modules["modeling_supclap.model.losses"].BASE_LOSSES[base_loss].summary
        in model.loss_fn.describe()
    )


TOY_BASE_LOSS = textwrap.dedent(
    '''
    import torch
    import torch.nn.functional as F

    from modeling_supclap.model.losses import BaseContrastiveLoss, register_base_loss


    @register_base_loss
    class HardestNegativeHinge(BaseContrastiveLoss):
        """max(0, 0.2 - s(positive) + s(hardest negative)) per anchor (a toy base loss for this test)."""

        name = "hardest_hinge"
        summary = "a hardest-negative hinge"

        def loss_from_logits(self, logits, ground_truth):
            rows = torch.arange(logits.shape[0], device=logits.device)
            positive = logits[rows, ground_truth]
            negatives = logits.scatter(1, ground_truth[:, None], float("-inf"))
            return F.relu(0.2 - positive + negatives.max(dim=1).values)
    '''
)


@pytest.mark.slow
def test_a_base_loss_registered_at_run_time_trains_with_svr_and_is_named_in_the_card(
    small_corpus_cache, tmp_path
):
    driver = tmp_path / "train_with_toy_base_loss.py"
    driver.write_text(
        TOY_BASE_LOSS + "\nimport sys\nfrom modeling_supclap.cli.train import main\nmain(sys.argv[1:])\n"
    )
    out = tmp_path / "run"
    args = tiny_train_args(
        small_corpus_cache, out, "--base_loss", "hardest_hinge", "--svr_mode", "static", "--max_steps", "3"
    )
    result = run_script([str(driver), *args])
    assert result.returncode == 0, result.stderr[-4000:]
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert len(history) == 3 and all("loss_svr" in row and "loss_contrastive" in row for row in history)
    assert json.loads((out / "config.json").read_text())["base_loss"] == "hardest_hinge"
    card = (out / "README.md").read_text()
    assert "a hardest-negative hinge plus bilateral StaticSVR" in card


def test_register_base_loss_refuses_what_is_not_a_named_base_loss_or_takes_a_name_twice():
    from modeling_supclap.model.losses import InfoNCELoss, register_base_loss

    class Nameless(InfoNCELoss):
        name = ""

    class Impostor(InfoNCELoss):
        name = "infonce"

    with pytest.raises(TypeError, match="BaseContrastiveLoss subclass with a non-empty `name`"):
        register_base_loss(Nameless)
    with pytest.raises(TypeError, match="BaseContrastiveLoss subclass"):
        register_base_loss(StaticRadius)
    with pytest.raises(ValueError, match="'infonce' is already registered to InfoNCELoss"):
        register_base_loss(Impostor)
    assert register_base_loss(InfoNCELoss) is InfoNCELoss and BASE_LOSSES["infonce"] is InfoNCELoss
