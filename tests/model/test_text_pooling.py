"""``SupClapConfig.text_pooling``: CLAP's first-token pooler, or the mean of the caption's token states."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModel, ClapConfig, ClapModel

from modeling_supclap import SupClapConfig, SupClapModel
from modeling_supclap.model.configuration_supclap import _tiny_sub_configs


def _inputs(pad_first_row: bool = True) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(3, 1000, (4, 9), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    if pad_first_row:
        input_ids[0, 5:], attention_mask[0, 5:] = 1, 0  # pad_token_id 1
    features = torch.randn(4, 1, 201, 16, generator=generator)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "input_features": features}


def test_mean_pooling_is_the_masked_mean_of_the_last_hidden_states():
    torch.manual_seed(0)
    model = SupClapModel(SupClapConfig.tiny(text_pooling="mean")).eval()
    assert model.text_model.pooler is None  # no parameter left without a gradient (DDP)
    inputs = _inputs()
    with torch.no_grad():
        out = model(**inputs)
        hidden = model.text_model(
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
        ).last_hidden_state
    mask = inputs["attention_mask"].unsqueeze(-1).float()
    expected = model.text_projection((hidden * mask).sum(1) / mask.sum(1))
    torch.testing.assert_close(out.text_embeds, torch.nn.functional.normalize(expected, dim=-1))


def test_padding_does_not_change_a_mean_pooled_caption():
    torch.manual_seed(0)
    model = SupClapModel(SupClapConfig.tiny(text_pooling="mean")).eval()
    inputs = _inputs()
    alone = {k: v[:1, :5] if k != "input_features" else v[:1] for k, v in inputs.items()}
    with torch.no_grad():
        padded, unpadded = model(**inputs).text_embeds[0], model(**alone).text_embeds[0]
    torch.testing.assert_close(padded, unpadded, atol=1e-6, rtol=0)


@pytest.mark.parametrize("pooling", ["pooler", "mean"])
def test_get_text_features_and_forward_agree(pooling):
    torch.manual_seed(0)
    model = SupClapModel(SupClapConfig.tiny(text_pooling=pooling)).eval()
    inputs = _inputs()
    with torch.no_grad():
        features = model.get_text_features(
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
        ).pooler_output
        embeds = model(**inputs).text_embeds
    torch.testing.assert_close(features, embeds, atol=0, rtol=0)


def test_the_pooler_mode_encodes_exactly_like_clap():
    torch.manual_seed(0)
    ours = SupClapModel(SupClapConfig.tiny()).eval()
    theirs = ClapModel(ClapConfig(**_tiny_sub_configs())).eval()
    theirs.load_state_dict(ours.state_dict(), strict=False)
    inputs = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(ours(**inputs).text_embeds, theirs(**inputs).text_embeds, atol=0, rtol=0)
        torch.testing.assert_close(ours(**inputs).audio_embeds, theirs(**inputs).audio_embeds, atol=0, rtol=0)


def test_presets_and_validation():
    assert SupClapConfig.small().text_pooling == "mean"  # the demo's from-scratch architecture
    assert SupClapConfig.tiny().text_pooling == "pooler"  # a CLAP checkpoint's structure
    assert SupClapConfig.small(text_pooling="pooler").text_pooling == "pooler"
    assert SupClapConfig().text_pooling == "pooler"
    with pytest.raises(ValueError, match="text_pooling"):
        SupClapConfig.tiny(text_pooling="cls")


def test_a_mean_pooled_model_saves_and_loads_with_its_pooling(tmp_path):
    torch.manual_seed(0)
    model = SupClapModel(SupClapConfig.tiny(text_pooling="mean")).eval()
    model.save_pretrained(tmp_path)
    loaded, info = AutoModel.from_pretrained(tmp_path, output_loading_info=True)
    assert isinstance(loaded, SupClapModel) and loaded.config.text_pooling == "mean"
    assert info["missing_keys"] == set() and info["unexpected_keys"] == set()
    inputs = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(**inputs).text_embeds, model(**inputs).text_embeds)
