"""SupClapModel: config validation, loading plain CLAP checkpoints, remote code, Trainer contract."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from helpers.cli import BLOCK_PACKAGE_IMPORT
from helpers.processes import run_bounded
from transformers import AutoConfig, AutoModel, ClapConfig, ClapModel

from modeling_supclap import SupClapConfig, SupClapModel, SupClapOutput
from modeling_supclap.hub import loss_config_dict
from modeling_supclap.model.configuration_supclap import _tiny_sub_configs
from modeling_supclap.model.losses import LOSS_TERM_OUTPUTS, RadiusPredictor


def _inputs(batch: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, 1000, (batch, 9), generator=generator)
    return dict(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        input_features=torch.randn(batch, 1, 201, 16, generator=generator),
    )


# --- 8. invalid configs -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "field, value, message",
    [
        ("base_loss", "triplet", r"base_loss must be one of \['infonce', 'siglip'\]"),
        # Every mode of the registry, the diagnostic ones (ratio, margin, spreading) included.
        (
            "svr_mode",
            "adaptive",
            r"svr_mode must be one of \['none', 'static', 'dynamic', 'ratio', 'margin', 'spreading'\]",
        ),
        ("predictor_activation", "tanh", r"predictor_activation must be one of"),
    ],
)
def test_invalid_choice_fields(field, value, message):
    with pytest.raises(ValueError, match=message):
        SupClapConfig.tiny(**{field: value})


@pytest.mark.parametrize(
    "field, value",
    [
        ("svr_weight", -1.0),
        ("constraint_weight", float("nan")),
        ("radius_init", -0.1),
        ("siglip_logit_scale_init", 0.0),
        ("logit_scale_max", 0.5),
        ("svr_weight", "1"),
        ("siglip_bias_init", float("inf")),
    ],
)
def test_invalid_number_fields(field, value):
    with pytest.raises(ValueError, match=f"SupClapConfig.{field} must be"):
        SupClapConfig.tiny(**{field: value})


@pytest.mark.parametrize(
    "field", ["svr_bilateral", "radius_clamp", "predictor_detach_input", "freeze_logit_scale"]
)
def test_invalid_flag_fields(field):
    with pytest.raises(ValueError, match=f"SupClapConfig.{field} must be True or False"):
        SupClapConfig.tiny(**{field: "yes"})


@pytest.mark.parametrize(
    "field, value",
    [
        ("predictor_top_k", 1),
        ("predictor_top_k", 4.5),
        ("predictor_hidden_sizes", [8]),
        ("predictor_hidden_sizes", [8, 0]),
    ],
)
def test_invalid_predictor_fields(field, value):
    with pytest.raises(ValueError, match=f"SupClapConfig.{field} must be"):
        SupClapConfig.tiny(**{field: value})


def test_config_round_trip_and_defaults(tmp_path):
    config = SupClapConfig.tiny(base_loss="siglip", svr_mode="static", radius_init=0.25)
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, SupClapConfig)
    assert loss_config_dict(loaded) == loss_config_dict(config)
    default = SupClapConfig()
    assert (default.base_loss, default.svr_mode, default.svr_bilateral) == ("infonce", "dynamic", True)
    assert (default.svr_weight, default.constraint_weight, default.logit_scale_max) == (1.0, 0.01, 100.0)


# --- forward contract ---------------------------------------------------------------------------
def test_return_loss_follows_training_mode_and_named_terms():
    model = SupClapModel(SupClapConfig.tiny())
    model.train()
    out = model(**_inputs())
    assert isinstance(out, SupClapOutput)
    assert out.loss is not None and out.loss_svr is not None and out.loss_constraint is not None
    expected = out.loss_contrastive + model.config.svr_weight * out.loss_svr
    expected = expected + model.config.constraint_weight * out.loss_constraint
    torch.testing.assert_close(out.loss, expected)
    assert 0.0 <= float(out.radius_constraint_active) <= 1.0
    model.eval()
    assert model(**_inputs()).loss is None
    assert model(**_inputs(), return_loss=True).loss is not None
    assert isinstance(model(**_inputs(), return_loss=False, return_dict=False), tuple)


def test_unpaired_batch_gives_a_clear_error():
    model = SupClapModel(SupClapConfig.tiny()).train()
    inputs = _inputs(4)
    inputs["input_ids"] = inputs["input_ids"][:3]
    inputs["attention_mask"] = inputs["attention_mask"][:3]
    with pytest.raises(ValueError, match="3 texts and 4 audio clips"):
        model(**inputs)
    model.eval()
    assert model(**inputs).logits_per_audio.shape == (4, 3)  # scoring without a loss is fine


def test_logit_scale_is_clamped_and_can_be_frozen():
    model = SupClapModel(SupClapConfig.tiny())
    with torch.no_grad():
        model.logit_scale_t.fill_(10.0)  # exp(10) >> 100
    out = model(**_inputs(), return_loss=True)
    text, audio = out.text_embeds, out.audio_embeds
    torch.testing.assert_close(out.logits_per_text, 100.0 * text @ audio.t())
    out.loss.backward()
    assert float(model.logit_scale_t.grad) == 0.0  # clamped: no push beyond the cap
    model.clamp_logit_scales_()
    assert float(model.logit_scale_t) == pytest.approx(torch.log(torch.tensor(100.0)).item())
    frozen = SupClapModel(SupClapConfig.tiny(freeze_logit_scale=True))
    assert not frozen.logit_scale_t.requires_grad and not frozen.logit_scale_a.requires_grad


def test_siglip_model_starts_at_paper_scale_and_bias():
    model = SupClapModel(SupClapConfig.tiny(base_loss="siglip", svr_mode="none"))
    assert float(model.logit_scale_t.exp()) == pytest.approx(10.0)
    assert float(model.loss_fn.base_loss.logit_bias) == -10.0


# --- 6. loading a plain CLAP checkpoint ---------------------------------------------------------
@pytest.mark.parametrize("svr_mode, base_loss", [("dynamic", "infonce"), ("static", "siglip")])
def test_from_pretrained_plain_clap_checkpoint(tmp_path, svr_mode, base_loss):
    torch.manual_seed(0)
    clap = ClapModel(ClapConfig(**_tiny_sub_configs())).eval()
    clap.save_pretrained(tmp_path)
    model, info = SupClapModel.from_pretrained(
        tmp_path, output_loading_info=True, svr_mode=svr_mode, base_loss=base_loss, radius_init=0.2
    )
    assert info["missing_keys"] == set() and info["unexpected_keys"] == set()
    assert info["mismatched_keys"] == set()
    model.eval()
    inputs = _inputs()
    with torch.no_grad():
        expected, got = clap(**inputs), model(**inputs)
    torch.testing.assert_close(got.text_embeds, expected.text_embeds, atol=0, rtol=0)
    torch.testing.assert_close(got.audio_embeds, expected.audio_embeds, atol=0, rtol=0)
    torch.testing.assert_close(got.logits_per_audio, expected.logits_per_audio)
    # The checkpoint's logit scales are kept (not re-initialised to the SigLIP value).
    assert float(model.logit_scale_t) == pytest.approx(float(clap.logit_scale_t))
    # New parameters hold their initial values, not uninitialised memory.
    radius = model.loss_fn.radius
    if svr_mode == "static":
        assert float(radius.radius) == pytest.approx(0.2)
        assert float(model.loss_fn.base_loss.logit_bias) == -10.0
    else:
        assert isinstance(radius, RadiusPredictor)
        assert torch.all(radius.output_weight == 0) and float(radius.output_bias) == pytest.approx(0.2)
        for layer in radius.hidden:
            if isinstance(layer, torch.nn.Linear):
                assert torch.all(layer.bias == 0)
                bound = (1.0 / layer.in_features) ** 0.5  # kaiming_uniform(a=sqrt(5)) bound
                assert layer.weight.abs().max() <= bound + 1e-6 and layer.weight.std() > bound / 4
    trained = model(**inputs, return_loss=True)
    assert torch.isfinite(trained.loss) and float(trained.radius_mean) == pytest.approx(0.2, abs=1e-6)


def test_supclap_checkpoint_round_trip_keeps_loss_parameters(tmp_path):
    model = SupClapModel(SupClapConfig.tiny(svr_mode="static", radius_init=0.05))
    with torch.no_grad():
        model.loss_fn.radius.radius.fill_(0.37)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    reloaded, info = AutoModel.from_pretrained(tmp_path, output_loading_info=True)
    assert isinstance(reloaded, SupClapModel) and info["missing_keys"] == set()
    assert float(reloaded.loss_fn.radius.radius) == pytest.approx(0.37)


# --- 7. remote code without the package ---------------------------------------------------------
REMOTE_SCRIPT = BLOCK_PACKAGE_IMPORT + textwrap.dedent(
    """
    import json
    try:
        import modeling_supclap  # noqa
        raise SystemExit("modeling_supclap should not be importable here")
    except ImportError:
        pass
    import torch
    from transformers import AutoModel
    folder, inputs_path, out_path = sys.argv[1:4]
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    inputs = torch.load(inputs_path, weights_only=True)
    with torch.no_grad():
        out = model(**inputs, return_loss=True)
    torch.save({"text": out.text_embeds, "audio": out.audio_embeds, "loss": out.loss,
                "logits": out.logits_per_audio}, out_path)
    print(json.dumps({"class": type(model).__name__}))
    """
)


@pytest.mark.slow
def test_trust_remote_code_loads_where_the_package_is_absent(tmp_path):
    model = SupClapModel(SupClapConfig.tiny(base_loss="siglip", svr_mode="dynamic")).eval()
    folder = tmp_path / "saved"
    model.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_supclap.SupClapConfig",
        "AutoModel": "modeling_supclap.SupClapModel",
    }
    assert {"modeling_supclap.py", "configuration_supclap.py", "losses.py"} <= {
        p.name for p in folder.iterdir()
    }
    inputs = _inputs()
    torch.save(inputs, tmp_path / "inputs.pt")
    with torch.no_grad():
        expected = model(**inputs, return_loss=True)
    script = tmp_path / "remote.py"
    script.write_text(REMOTE_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1")
    result = run_bounded(
        [sys.executable, str(script), str(folder), str(tmp_path / "inputs.pt"), str(tmp_path / "out.pt")],
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    got = torch.load(tmp_path / "out.pt", weights_only=True)
    torch.testing.assert_close(got["text"], expected.text_embeds, atol=0, rtol=0)
    torch.testing.assert_close(got["audio"], expected.audio_embeds, atol=0, rtol=0)
    torch.testing.assert_close(got["loss"], expected.loss, atol=0, rtol=0)
    torch.testing.assert_close(got["logits"], expected.logits_per_audio, atol=0, rtol=0)


def test_loss_term_outputs_are_the_scalar_fields_of_supclap_output():
    # One list feeds the training loop's logging and the Trainer's keys_to_ignore_at_inference.
    scalar_fields = {
        name
        for name in SupClapOutput.__dataclass_fields__
        if name == "loss" or name.startswith(("loss_", "radius_"))
    }
    assert set(LOSS_TERM_OUTPUTS) == scalar_fields
    assert "loss" not in SupClapConfig.keys_to_ignore_at_inference
    assert scalar_fields - {"loss"} <= set(SupClapConfig.keys_to_ignore_at_inference)


@pytest.mark.parametrize("text_pooling", ["pooler", "mean"])
def test_feature_methods_return_tuples_under_return_dict_false_as_clap_does(text_pooling):
    config = SupClapConfig.tiny(text_pooling=text_pooling)
    model, clap = SupClapModel(config).eval(), ClapModel(ClapConfig(**config.to_dict())).eval()
    clap.load_state_dict(model.state_dict(), strict=False)
    ids, features = torch.randint(3, 100, (2, 5)), torch.randn(2, 1, 100, 16)
    with torch.no_grad():
        text = model.get_text_features(input_ids=ids, return_dict=False)
        audio = model.get_audio_features(input_features=features, return_dict=False)
        clap_audio = clap.get_audio_features(input_features=features, return_dict=False)
        as_output = model.get_text_features(input_ids=ids)
    assert isinstance(text, tuple) and isinstance(audio, tuple)
    assert len(text) == len(clap.get_text_features(input_ids=ids, return_dict=False))
    torch.testing.assert_close(text[1], as_output.pooler_output)  # (last_hidden_state, pooler_output, ...)
    torch.testing.assert_close(audio[1], clap_audio[1])


def test_save_pretrained_copies_exactly_the_model_room(tmp_path):
    """The load-time files are the modules of modeling_supclap/model/, no more and no fewer: every file that
    a save_pretrained writes (either model family's, its processor's, a processor with the LAION feature
    extractor) is a module of the room, and together they are the whole room (its __init__.py, which only
    documents it, aside)."""
    from transformers import ClapProcessor

    import modeling_supclap.model
    from modeling_supclap import (
        LaionClapFeatureExtractor,
        SupClapDualEncoderConfig,
        SupClapDualEncoderModel,
        SupClapDualEncoderProcessor,
    )
    from modeling_supclap.data.processor import feature_extractor_for_tower, train_caption_tokenizer
    from modeling_supclap.model.configuration_supclap_dual_encoder import (
        audio_tower_config,
        text_tower_config,
    )

    room = {p.name for p in Path(modeling_supclap.model.__file__).parent.glob("*.py")} - {"__init__.py"}
    tokenizer = train_caption_tokenizer(["a dog barks", "rain on a roof"], vocab_size=300)
    SupClapModel(SupClapConfig.tiny()).save_pretrained(tmp_path / "model")
    ClapProcessor(LaionClapFeatureExtractor(), tokenizer).save_pretrained(tmp_path / "laion_processor")
    dual = SupClapDualEncoderConfig(
        audio_config=audio_tower_config("ast", "tiny"), text_config=text_tower_config("bert", "tiny")
    )
    SupClapDualEncoderModel(dual).save_pretrained(tmp_path / "dual")
    extractor = feature_extractor_for_tower(dual.audio_config, sampling_rate=16000, max_length_s=2)
    SupClapDualEncoderProcessor(extractor, tokenizer).save_pretrained(tmp_path / "dual_processor")
    written = {
        name: {p.name for p in (tmp_path / name).glob("*.py")}
        for name in ("model", "laion_processor", "dual", "dual_processor")
    }
    assert written["laion_processor"] == {"feature_extraction_laion_clap.py"}
    assert "processing_supclap_dual_encoder.py" in written["dual_processor"]
    assert all(written.values()) and all(files <= room for files in written.values()), (written, room)
    assert set().union(*written.values()) == room
