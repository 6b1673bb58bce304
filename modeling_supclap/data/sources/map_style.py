"""The source of corpora listed in full (audiofolders, CSV/JSONL, ``save_to_disk`` folders, the demo).

Every clip is decoded once before the first step (``data/checks.py``), the order is a fresh permutation
per epoch seeded by ``seed + epoch``, and a resumed run skips the batches of the current epoch it already
trained on.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch

from ..collator import SupClapCollator
from ..dataset import AudioTextDataset
from ..workers import ignore_stop_signals
from .base import TrainingSource

if TYPE_CHECKING:
    from accelerate import Accelerator

__all__ = ["EpochPermutationSampler", "MapStyleSource"]


class EpochPermutationSampler(torch.utils.data.Sampler[int]):
    """A fresh permutation each epoch, seeded by ``seed + epoch`` (reproducible across resumes)."""

    def __init__(self, num_samples: int, seed: int) -> None:
        self.num_samples, self.seed, self.epoch = num_samples, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.num_samples, generator=generator).tolist())

    def __len__(self) -> int:
        return self.num_samples


class MapStyleSource(TrainingSource):
    """Records listed in full, decoded in DataLoader workers, in a seeded permutation per epoch.

    Determinism: data order comes from ``seed + epoch``, captions and crops from ``(seed, epoch,
    clip indices)`` (the collator), and the DataLoader has its own generator so that starting an
    iterator never draws from the global RNG: with the RNG states restored from a checkpoint, a
    resumed run sees exactly the batches an uninterrupted one would.
    """

    def __init__(
        self,
        dataset: AudioTextDataset,
        collator: SupClapCollator,
        batch_size: int,
        seed: int,
        num_workers: int = 0,
    ) -> None:
        self.dataset, self.collator = dataset, collator
        self.batch_size, self.seed, self.num_workers = batch_size, seed, num_workers
        self.num_samples = len(dataset)
        self.sampler = EpochPermutationSampler(len(dataset), seed)
        self._loader: torch.utils.data.DataLoader | None = None
        self._accelerator: Accelerator | None = None

    def prepare(self, accelerator: Accelerator) -> None:
        loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            sampler=self.sampler,
            collate_fn=self.collator,
            num_workers=self.num_workers,
            # Drop a ragged last batch only when a full one exists on every process.
            drop_last=len(self.dataset) >= self.batch_size * accelerator.num_processes,
            generator=torch.Generator().manual_seed(self.seed),
            worker_init_fn=ignore_stop_signals,
        )
        self._loader, self._accelerator = accelerator.prepare(loader), accelerator

    def batches(self, epoch: int, skip: int = 0) -> Iterator[dict[str, Any]]:
        if self._loader is None or self._accelerator is None:
            raise RuntimeError("MapStyleSource.prepare(accelerator) must be called before batches()")
        self.sampler.set_epoch(epoch)
        self.dataset.set_epoch(epoch)
        loader = self._accelerator.skip_first_batches(self._loader, skip) if skip else self._loader
        # Accelerate's loaders set their sampler's epoch to their own iteration count at every
        # __iter__; after a resumed (skipped) epoch that count would be behind: make it ours.
        loader.set_epoch(epoch)
        return (self.collator.on_device(batch) for batch in loader)

    def probe_batch(self, size: int) -> dict[str, Any]:
        items = [self.dataset[i] for i in range(min(size, len(self.dataset)))]
        return self.collator.on_device(self.collator(items))
