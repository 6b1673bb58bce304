"""Shared pieces of the cached-negatives tests (CPU and CUDA): tiny float64 models and the dense reference."""

from __future__ import annotations

import torch

from modeling_supclap import SupClapConfig, SupClapModel

BATCH = 7
ATOL = 1e-6


def config_for(variant: dict, dropout: bool = True, **overrides) -> SupClapConfig:
    config = SupClapConfig.tiny(**variant, predictor_top_k=4, predictor_detach_input=False, **overrides)
    if not dropout:  # where two RNG streams (processes, Trainer) cannot be replayed by a reference
        for sub_config in (config.text_config, config.audio_config):
            sub_config.hidden_dropout_prob = sub_config.attention_probs_dropout_prob = 0.0
    return config


def tiny_model(config: SupClapConfig, seed: int = 0) -> SupClapModel:
    torch.manual_seed(seed)
    model = SupClapModel(config).double().train()
    if config.svr_mode == "dynamic":  # a radius that really varies per pair (the initial one is flat)
        with torch.no_grad():
            model.loss_fn.radius.output_weight.normal_(0, 0.3)
    return model


def random_inputs(n: int = BATCH, seed: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "input_ids": torch.randint(3, 1000, (n, 9), generator=generator),
        "attention_mask": torch.ones(n, 9, dtype=torch.long),
        "input_features": torch.randn(n, 1, 201, 16, generator=generator, dtype=torch.float64),
        "is_longer": torch.zeros(n, 1, dtype=torch.bool),
    }


def dense_chunked_loss(model: SupClapModel, inputs: dict[str, torch.Tensor], chunk: int) -> dict:
    """The reference: towers chunk by chunk with their graph, one loss on the concatenation."""
    texts, audios = [], []
    n = inputs["input_ids"].shape[0]
    for start in range(0, n, chunk):
        out = model._encode(**{k: v[start : start + chunk] for k, v in inputs.items()})
        texts.append(out.text_embeds)
        audios.append(out.audio_embeds)
    return model.loss_fn(torch.cat(texts), torch.cat(audios), *model.logit_scales())


def assert_same_gradients(reference: torch.nn.Module, cached: torch.nn.Module, atol: float = ATOL) -> None:
    checked = 0
    for (name, a), b in zip(reference.named_parameters(), cached.parameters()):
        if not a.requires_grad:
            continue
        ga = torch.zeros_like(a) if a.grad is None else a.grad
        gb = torch.zeros_like(b) if b.grad is None else b.grad
        torch.testing.assert_close(gb, ga, atol=atol, rtol=0, msg=name)
        checked += int(bool(ga.abs().sum() > 0))
    assert checked > 10  # the towers, the logit scales and the loss parameters all got gradients
