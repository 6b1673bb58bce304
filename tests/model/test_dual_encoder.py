"""The dual encoder (any audio tower, any text tower): weights arrive intact, the loss is the project's one,
cached negatives and two processes match the dense step, LoRA per tower, save/reload, and the real CLI.

Towers are tiny random checkpoints of the real architectures, saved as their families publish them
(``helpers/towers.py``): AST, Whisper (a whole WhisperModel), wav2vec2, HuBERT, WavLM and CLAP's HTSAT; BERT,
RoBERTa, XLM-R, ModernBERT, SONAR's text encoder port (an M2M100Encoder) and T5.
"""

from __future__ import annotations

import copy
import os
from datetime import timedelta

import numpy as np
import pytest
import torch
import torch.distributed as dist
from helpers.processes import free_port, run_workers
from helpers.towers import AUDIO, TEXT
from transformers import AutoFeatureExtractor, AutoModel, AutoTokenizer

from modeling_supclap import SupClapDualEncoderModel, SupClapDualEncoderProcessor
from modeling_supclap.lora import get_lora_model

# Every audio family with BERT, every text family with AST.
PAIRS = [(audio, "bert") for audio in AUDIO] + [("ast", text) for text in TEXT if text != "bert"]
CAPTIONS = ["two short high beeps, then a low hum", "a loud knock", "three quiet chirps", "a long whistle"]


@pytest.fixture(scope="module")
def towers(tower_checkpoints) -> dict:
    return tower_checkpoints


def _clips(n: int = 4) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [0.1 * rng.standard_normal(int(16000 * s)).astype(np.float32) for s in (0.9, 0.5, 0.7, 0.3)[:n]]


def _model_and_inputs(towers: dict, audio: str, text: str, **config) -> tuple:
    torch.manual_seed(0)  # the projections and the loss's parameters are new: the same in every process
    model = SupClapDualEncoderModel.from_audio_text_pretrained(
        str(towers[audio]), str(towers[text]), projection_dim=16, **config
    )
    processor = SupClapDualEncoderProcessor(
        AutoFeatureExtractor.from_pretrained(towers[audio]), AutoTokenizer.from_pretrained(towers[text])
    )
    inputs = processor(text=CAPTIONS, audio=_clips(), sampling_rate=16000)
    return model, processor, dict(inputs)


def _original_tower(family: str, folder):
    """The tower as a user loads it with transformers alone (the reference)."""
    import transformers
    from transformers.models.m2m_100.modeling_m2m_100 import M2M100Encoder

    if family == "whisper":
        return transformers.WhisperModel.from_pretrained(folder).encoder
    if family == "clap":
        return transformers.ClapModel.from_pretrained(folder).audio_model
    if family == "sonar":
        return M2M100Encoder.from_pretrained(folder)
    if family == "t5":
        return transformers.T5EncoderModel.from_pretrained(folder)
    return AutoModel.from_pretrained(folder)


def _masked_mean(hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    return torch.stack([hidden[i, : int(n)].mean(0) for i, n in enumerate(lengths)])


def _reference_audio_vector(family: str, tower, inputs: dict) -> torch.Tensor:
    """The pooled audio vector, computed plainly: the pooler where the family has one, else the mean over
    the frames the clip fills (conv arithmetic written out)."""
    if family in ("ast", "clap"):
        arguments = {k: inputs[k] for k in ("input_values", "input_features", "is_longer") if k in inputs}
        return tower(**arguments).pooler_output
    valid = inputs["audio_attention_mask"].sum(-1)
    if family == "whisper":  # conv1 keeps the length, conv2 halves it (rounding up)
        return _masked_mean(tower(inputs["input_features"]).last_hidden_state, (valid + 1) // 2)
    for kernel, stride in zip(tower.config.conv_kernel, tower.config.conv_stride):  # wav2vec2 family
        valid = (valid - kernel) // stride + 1
    mask = inputs["audio_attention_mask"]
    return _masked_mean(tower(inputs["input_values"], attention_mask=mask).last_hidden_state, valid)


@pytest.mark.parametrize("audio, text", PAIRS)
def test_tower_weights_arrive_intact_and_pool_like_a_direct_forward(towers, audio, text):
    """The towers hold the checkpoints' weights (nothing re-initialised), and the embeddings before the
    projections equal a direct forward of the original towers, pooled the family's way."""
    model, _, inputs = _model_and_inputs(towers, audio, text)
    model.eval()
    originals = {
        "audio": _original_tower(audio, towers[audio]).eval(),
        "text": _original_tower(text, towers[text]).eval(),
    }
    for kind, tower in (("audio", model.audio_model), ("text", model.text_model)):
        reference = originals[kind].state_dict()
        for name, tensor in tower.state_dict().items():
            torch.testing.assert_close(tensor, reference[name], atol=0, rtol=0, msg=f"{kind} {name}")
    with torch.no_grad():
        audio_inputs = {
            k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask", "token_type_ids")
        }
        _, audio_vector = model.encode_audio(**audio_inputs)
        _, text_vector = model.encode_text(inputs["input_ids"], inputs["attention_mask"])
        expected_audio = _reference_audio_vector(audio, originals["audio"], inputs)
        text_hidden = originals["text"](
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
        )
    torch.testing.assert_close(audio_vector, expected_audio, atol=1e-5, rtol=0)
    torch.testing.assert_close(
        text_vector,
        _masked_mean(text_hidden.last_hidden_state, inputs["attention_mask"].sum(-1)),
        atol=1e-5,
        rtol=0,
    )


def _no_dropout(model: torch.nn.Module) -> torch.nn.Module:
    """Dropout off everywhere: the modules, and the rates attention layers hand to
    scaled_dot_product_attention as a plain number (wav2vec2's ``self.dropout``)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        elif isinstance(getattr(module, "dropout", None), float):
            module.dropout = 0.0
    return model


def test_the_loss_is_the_loss_module_on_the_same_embeddings(towers):
    """One loss for both families: the model's loss is SupClapLoss applied to its own embeddings."""
    model, _, inputs = _model_and_inputs(towers, "ast", "bert", svr_mode="dynamic", base_loss="siglip")
    model.train()
    _no_dropout(model)
    out = model(**inputs, return_loss=True)
    terms = model.loss_fn(out.text_embeds, out.audio_embeds, *model.logit_scales())
    for name in ("loss", "contrastive", "svr", "constraint"):
        torch.testing.assert_close(getattr(out, name if name == "loss" else f"loss_{name}"), terms[name])
    assert out.logits_per_audio.shape == (4, 4) and out.radius_mean is not None


def _float64(model: torch.nn.Module, inputs: dict) -> tuple[torch.nn.Module, dict]:
    """Gradients compared in float64, without dropout: the float32 sums of a random tower's large gradients
    differ in their last bits, which cancellations (the logit scales') magnify."""
    inputs = {k: v.double() if v.is_floating_point() else v for k, v in inputs.items()}
    return _no_dropout(model.double()).train(), inputs


@pytest.mark.parametrize("audio", ["ast", "wav2vec2"])
def test_cached_negatives_give_the_dense_gradients(towers, audio):
    dense, inputs = _float64(*_model_and_inputs(towers, audio, "bert", svr_mode="dynamic")[::2])
    cached = copy.deepcopy(dense)
    cached.config.gradient_cache_chunk_size = 1
    for model in (dense, cached):
        model.zero_grad()
        model(**inputs, return_loss=True).loss.backward()
    compared = 0
    for (name, a), (_, b) in zip(dense.named_parameters(), cached.named_parameters()):
        if a.grad is not None:
            torch.testing.assert_close(
                b.grad, a.grad, atol=1e-9 * (1 + float(a.grad.abs().max())), rtol=0, msg=name
            )
            compared += 1
    assert compared > 20 and cached.loss_fn.radius.output_bias.grad is not None


def _two_process_worker(rank: int, port: int, folders: dict, out_dir) -> None:
    """One gloo rank (``helpers.processes.run_workers`` ends the process with ``os._exit``)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=timedelta(seconds=180))
    torch.set_num_threads(1)
    model, inputs = _float64(*_model_and_inputs(folders, "ast", "bert", svr_mode="dynamic")[::2])
    rows = slice(0, 1) if rank == 0 else slice(1, 4)  # an uneven split of the global batch
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    ddp(**{k: v[rows] for k, v in inputs.items()}, return_loss=True).loss.backward()
    torch.save(
        {n: p.grad for n, p in model.named_parameters() if p.grad is not None}, out_dir / f"rank{rank}.pt"
    )
    dist.barrier()


@pytest.mark.slow
def test_two_gloo_processes_equal_one_process_on_the_global_batch(towers, tmp_path):
    run_workers(_two_process_worker, 2, (free_port(), towers, tmp_path))
    grads = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in range(2)]
    model, inputs = _float64(*_model_and_inputs(towers, "ast", "bert", svr_mode="dynamic")[::2])
    # One process, the whole global batch at once (no BatchNorm in these towers: the same computation).
    model(**inputs, return_loss=True).loss.backward()
    for name, param in model.named_parameters():
        if param.grad is not None:
            scale = 1 + float(param.grad.abs().max())
            torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-12 * scale, rtol=0, msg=name)
            torch.testing.assert_close(grads[0][name], param.grad, atol=1e-9 * scale, rtol=0, msg=name)


@pytest.mark.parametrize(
    "audio, text, tower",
    [
        ("ast", "bert", "audio"),
        ("whisper", "modernbert", "text"),
        ("wavlm", "sonar", "audio"),
        ("clap", "t5", "text"),
    ],
)
def test_lora_on_one_tower_trains_only_that_towers_adapters(towers, audio, text, tower):
    model, _, inputs = _model_and_inputs(towers, audio, text)
    lora = get_lora_model(model, tower, r=4)
    trainable = [name for name, p in lora.named_parameters() if p.requires_grad]
    other = "text_model" if tower == "audio" else "audio_model"
    adapters = [name for name in trainable if "lora_" in name]
    assert adapters and all(f"{tower}_model." in name for name in adapters), adapters
    assert not any(other in name for name in trainable)
    before = {name: p.detach().clone() for name, p in lora.named_parameters()}
    with torch.no_grad():  # non-zero B matrices, so that every adapter gets a gradient
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    lora.train()
    _no_dropout(lora)
    lora(**inputs, return_loss=True).loss.backward()
    torch.optim.SGD([p for p in lora.parameters() if p.requires_grad], lr=0.1).step()
    moved = {name for name, p in lora.named_parameters() if not torch.equal(p, before[name])}
    assert all(name in trainable for name in moved)
    assert {name for name in adapters if "lora_A" in name} <= moved, "every adapter of the tower trained"


@pytest.mark.parametrize(
    "audio, text", [("whisper", "xlm-roberta"), ("hubert", "sonar"), ("clap", "roberta")]
)
def test_save_and_reload_has_no_missing_keys_and_the_same_embeddings(towers, audio, text, tmp_path):
    model, processor, inputs = _model_and_inputs(towers, audio, text, base_loss="siglip", svr_mode="static")
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    reloaded, info = AutoModel.from_pretrained(tmp_path, output_loading_info=True)
    assert type(reloaded) is SupClapDualEncoderModel
    assert not (info["missing_keys"] or info["unexpected_keys"] or info["mismatched_keys"]), info
    again = SupClapDualEncoderProcessor.from_pretrained(tmp_path)(
        text=CAPTIONS, audio=_clips(), sampling_rate=16000
    )
    assert again.keys() == inputs.keys()
    with torch.no_grad():
        a = model.eval()(**inputs)
        b = reloaded.eval()(**again)
    torch.testing.assert_close(b.audio_embeds, a.audio_embeds, atol=1e-6, rtol=0)
    torch.testing.assert_close(b.text_embeds, a.text_embeds, atol=1e-6, rtol=0)
    assert float(reloaded.loss_fn.base_loss.logit_bias) == float(model.loss_fn.base_loss.logit_bias)


def _random_towers_model(**config) -> SupClapDualEncoderModel:
    """HTS-AT (CLAP's) and BERT random towers: the pair a LAION-CLAP BERT checkpoint converts into."""
    from modeling_supclap import SupClapDualEncoderConfig
    from modeling_supclap.model.configuration_supclap_dual_encoder import (
        audio_tower_config,
        text_tower_config,
    )

    torch.manual_seed(0)
    return SupClapDualEncoderModel(
        SupClapDualEncoderConfig(
            audio_config=audio_tower_config("htsat", "tiny"),
            text_config=text_tower_config("bert", "tiny"),
            projection_dim=8,
            **config,
        )
    ).eval()


def test_the_default_projection_stays_one_bias_free_matrix():
    """Existing configs and checkpoints (no projection_type) keep their projection and its tensor names."""
    model = _random_towers_model()
    assert (model.config.projection_type, model.config.projection_hidden_act) == ("linear", "relu")
    names = {name for name in model.state_dict() if "_projection" in name}
    assert names == {"audio_projection.weight", "text_projection.weight"}
    assert isinstance(model.audio_projection, torch.nn.Linear) and model.audio_projection.bias is None


@pytest.mark.parametrize("hidden_act", ["relu", "gelu"])
def test_the_mlp_projection_is_claps_projection_layer_and_laions_sequential(hidden_act, tmp_path):
    """projection_type "mlp" computes what transformers' ClapProjectionLayer and LAION-CLAP's
    nn.Sequential(Linear, activation, Linear) compute with the same tensors, under ClapProjectionLayer's
    names; it starts with zero biases, and saves and reloads with its settings."""
    from types import SimpleNamespace

    from transformers.activations import ACT2FN
    from transformers.models.clap.modeling_clap import ClapProjectionLayer

    model = _random_towers_model(projection_type="mlp", projection_hidden_act=hidden_act)
    for projection in (model.audio_projection, model.text_projection):
        width = projection.linear1.in_features
        assert set(projection.state_dict()) == {f"linear{i}.{p}" for i in (1, 2) for p in ("weight", "bias")}
        assert not projection.linear1.bias.any() and not projection.linear2.bias.any()
        with torch.no_grad():  # biases away from zero, so a dropped bias would show
            for parameter in projection.parameters():
                parameter.add_(0.1 * torch.randn_like(parameter))
        clap = ClapProjectionLayer(
            SimpleNamespace(hidden_size=width, projection_dim=8, projection_hidden_act=hidden_act)
        )
        clap.load_state_dict(projection.state_dict(), strict=True)
        laion = torch.nn.Sequential(torch.nn.Linear(width, 8), ACT2FN[hidden_act], torch.nn.Linear(8, 8))
        laion.load_state_dict(
            {
                name.replace("linear1", "0").replace("linear2", "2"): t
                for name, t in projection.state_dict().items()
            }
        )
        pooled = torch.randn(5, width)
        with torch.no_grad():
            ours = projection(pooled)
            torch.testing.assert_close(ours, clap(pooled), atol=0, rtol=0)
            torch.testing.assert_close(ours, laion(pooled), atol=0, rtol=0)
            without_activation = projection.linear2(projection.linear1(pooled))
            assert not torch.equal(ours, without_activation)  # the activation acts

    # The embeddings are the projected pooled vectors, L2-normalised.
    ids, features = torch.randint(5, 100, (2, 6)), torch.randn(2, 1, 100, 16)
    with torch.no_grad():
        text = model.get_text_features(input_ids=ids).pooler_output
        _, pooled_text = model.encode_text(ids)
        audio = model.get_audio_features(input_features=features).pooler_output
        _, pooled_audio = model.encode_audio(input_features=features)
    torch.testing.assert_close(
        text, torch.nn.functional.normalize(model.text_projection(pooled_text), dim=-1)
    )
    torch.testing.assert_close(
        audio, torch.nn.functional.normalize(model.audio_projection(pooled_audio), dim=-1)
    )

    model.save_pretrained(tmp_path)
    reloaded, info = AutoModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not (info["missing_keys"] or info["unexpected_keys"] or info["mismatched_keys"]), info
    assert (reloaded.config.projection_type, reloaded.config.projection_hidden_act) == ("mlp", hidden_act)
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(reloaded.state_dict()[name], tensor, atol=0, rtol=0, msg=name)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("projection_type", "conv", r"projection_type must be one of \('linear', 'mlp'\), got 'conv'"),
        ("projection_hidden_act", "sparkle", r"projection_hidden_act must be an activation .* got 'sparkle'"),
    ],
)
def test_unknown_projection_settings_are_refused_by_the_config(field, value, message):
    from modeling_supclap import SupClapDualEncoderConfig

    with pytest.raises(ValueError, match=message):
        SupClapDualEncoderConfig(**{field: value})


def test_training_weights_reload_by_load_state_dict_although_transformers_renames_ast_weights(
    towers, tmp_path
):
    """Checkpoints and ``best/`` are read back with ``load_state_dict`` (resume, the final model): they must
    hold the tensors under the model's own names. transformers' default save writes AST's attention back
    under its old names, which only ``from_pretrained`` maps forward again."""
    from safetensors.torch import load_file

    from modeling_supclap.training.checkpointing import (
        CheckpointError,
        load_training_weights,
        save_training_weights,
    )

    model = _model_and_inputs(towers, "ast", "bert")[0]
    model.save_pretrained(tmp_path / "default")
    renamed = set(load_file(tmp_path / "default" / "model.safetensors")) - set(model.state_dict())
    assert any("attention.attention.query" in name for name in renamed), "nothing renamed: test is void"

    save_training_weights(model, tmp_path / "training")
    fresh = SupClapDualEncoderModel(copy.deepcopy(model.config))
    load_training_weights(fresh, tmp_path / "training")
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[name], tensor, atol=0, rtol=0, msg=name)
    reloaded = AutoModel.from_pretrained(tmp_path / "training").state_dict()  # still a save_pretrained folder
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(reloaded[name], tensor, atol=0, rtol=0, msg=name)
    with pytest.raises(CheckpointError, match="does not match the model"):
        load_training_weights(fresh, tmp_path / "default")


def test_training_weights_of_a_tower_with_tied_embeddings_reload_strictly(towers, tmp_path):
    """T5's encoder embeds with its shared embedding (one tensor, two names): saved once, both names are
    loaded, and a truly missing tensor is still refused."""
    from safetensors.torch import load_file, save_file

    from modeling_supclap.training.checkpointing import (
        CheckpointError,
        load_training_weights,
        save_training_weights,
    )

    model = _model_and_inputs(towers, "ast", "t5")[0]
    state = model.state_dict()
    tied = "text_model.encoder.embed_tokens.weight"
    assert state[tied].data_ptr() == state["text_model.shared.weight"].data_ptr(), "not tied: test is void"
    save_training_weights(model, tmp_path / "training")
    assert tied not in load_file(tmp_path / "training" / "model.safetensors")
    fresh = SupClapDualEncoderModel(copy.deepcopy(model.config))
    load_training_weights(fresh, tmp_path / "training")
    for name, tensor in state.items():
        torch.testing.assert_close(fresh.state_dict()[name], tensor, atol=0, rtol=0, msg=name)

    weights = load_file(tmp_path / "training" / "model.safetensors")
    del weights["text_projection.weight"]
    save_file(weights, tmp_path / "training" / "model.safetensors")
    with pytest.raises(CheckpointError, match="missing .*text_projection.weight"):
        load_training_weights(fresh, tmp_path / "training")
