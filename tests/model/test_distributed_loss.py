"""Two gloo processes with half a batch each == one process with the whole batch."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from helpers.processes import free_port, run_workers
from helpers.reference import LOSS_VARIANTS, make_loss, variant_id

from modeling_supclap.model.losses import distributed_is_active

DIM, BATCH = 6, 8
# (rank 0 rows, rank 1 rows): an even split, and an uneven one (the last batch of an epoch).
SPLITS = [(4, 4), (3, 5)]


class _Encoders(torch.nn.Module):
    """Replicated stand-ins for the two towers: what DDP averages gradients of."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(123)
        self.text = torch.nn.Linear(DIM, DIM, dtype=torch.float64)
        self.audio = torch.nn.Linear(DIM, DIM, dtype=torch.float64)
        self.log_scale_t = torch.nn.Parameter(torch.tensor(2.5, dtype=torch.float64))
        self.log_scale_a = torch.nn.Parameter(torch.tensor(2.2, dtype=torch.float64))

    def forward(self, text_in, audio_in):
        return (
            F.normalize(self.text(text_in), dim=-1),
            F.normalize(self.audio(audio_in), dim=-1),
            self.log_scale_t.exp(),
            self.log_scale_a.exp(),
        )


def _inputs():
    generator = torch.Generator().manual_seed(7)
    text_in = torch.randn(BATCH, DIM, generator=generator, dtype=torch.float64)
    audio_in = text_in + 0.5 * torch.randn(BATCH, DIM, generator=generator, dtype=torch.float64)
    return text_in, audio_in


def _step(variant, rows: slice):
    """Loss and flat parameter gradients on the given rows (in whichever process calls it)."""
    encoders, loss_fn = _Encoders(), make_loss(variant)
    text_in, audio_in = _inputs()
    terms = loss_fn(*encoders(text_in[rows], audio_in[rows]))
    terms["loss"].backward()
    params = [*encoders.parameters(), *loss_fn.parameters()]
    grads = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in params])
    return {name: value.detach() for name, value in terms.items()}, grads


def _worker(rank: int, port: int, result_path: str) -> None:
    """One rank (``helpers.processes.run_workers``: the process ends with ``os._exit`` after this)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    # A peer that never arrives fails the test in minutes (gloo waits 30 by default).
    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=timedelta(seconds=180))
    assert distributed_is_active()
    results = {}
    for split in SPLITS:
        start = 0 if rank == 0 else split[0]
        rows = slice(start, start + split[rank])
        for variant in LOSS_VARIANTS:
            terms, grads = _step(variant, rows)
            # What DDP does: average the gradients and (for logging) the losses over processes.
            dist.all_reduce(grads)
            grads /= 2
            loss = terms["loss"].clone()
            dist.all_reduce(loss)
            results[(split, variant_id(variant))] = (loss / 2, grads)
    if rank == 0:
        torch.save(results, result_path)
    dist.barrier()  # no rank leaves while the other still talks to it


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path):
    result_path = str(tmp_path / "distributed.pt")
    run_workers(_worker, 2, (free_port(), result_path))
    results = torch.load(result_path, weights_only=True)
    assert not dist.is_initialized()
    for split in SPLITS:
        for variant in LOSS_VARIANTS:
            single_terms, single_grads = _step(variant, slice(0, BATCH))
            loss, grads = results[(split, variant_id(variant))]
            torch.testing.assert_close(loss, single_terms["loss"], atol=1e-5, rtol=0)
            torch.testing.assert_close(grads, single_grads, atol=1e-5, rtol=0)
            assert grads.abs().sum() > 0


@pytest.mark.slow
def test_per_process_negatives_would_differ(tmp_path):
    """Guard against a vacuous pass: without gathering, the two-process result is different."""
    variant = LOSS_VARIANTS[0]
    single_terms, _ = _step(variant, slice(0, BATCH))
    halves = [_step(variant, rows)[0]["loss"] for rows in (slice(0, 4), slice(4, 8))]
    assert abs(float(sum(halves) / 2 - single_terms["loss"])) > 1e-3
