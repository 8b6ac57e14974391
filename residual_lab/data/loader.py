"""Batches drawn by index from tensors already in memory (no Dataset, no workers)."""

from __future__ import annotations

from typing import Any

import torch


class IndexBatchLoader:
    """Iterate over ``(images[idx], labels[idx])`` batches of an in-memory dataset.

    Shuffled loaders draw epoch ``e``'s order from ``seed + e``, so the order is a
    function of (seed, epoch). The loader is *stateful* in Lightning's sense
    (``state_dict``/``load_state_dict``): a checkpoint taken mid-epoch records the epoch
    and how many batches training consumed, and a resumed run continues with the very
    next batch, so an interrupted and resumed run sees the same batches as one that ran
    straight through.

    "Consumed" is counted by :meth:`mark_consumed` (called when a batch reaches the
    model), not by ``yield``: Lightning prefetches one batch ahead.

    Args:
        images, labels: the whole split, on the device the batches should live on.
        batch_size: images per batch.
        shuffle: reshuffle every epoch (training) or keep file order (evaluation).
        drop_last: drop the last partial batch (training keeps a fixed batch size).
        seed: base seed of the shuffle.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, *,
                 shuffle: bool, drop_last: bool, seed: int = 0) -> None:
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.drop_last, self.seed = batch_size, shuffle, drop_last, seed
        self.epoch = 0          # the next epoch __iter__ starts
        self.consumed = 0       # batches of the running epoch that reached the model
        self._running: int | None = None
        self._skip = 0          # batches to skip on the next __iter__ (after a resume)

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        if self._skip >= len(self):  # resumed exactly at an epoch boundary
            self.epoch, self._skip = self.epoch + 1, 0
        epoch, start = self.epoch, self._skip
        self.epoch, self._skip, self._running, self.consumed = epoch + 1, 0, epoch, start
        n = len(self.labels)
        order = None
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed + epoch)
            order = torch.randperm(n, generator=gen).to(self.images.device)
        for i in range(start, len(self)):
            if order is None:
                sl = slice(i * self.batch_size, min(n, (i + 1) * self.batch_size))
                yield self.images[sl], self.labels[sl]
            else:
                idx = order[i * self.batch_size:(i + 1) * self.batch_size]
                yield self.images[idx], self.labels[idx]

    def mark_consumed(self) -> None:
        self.consumed += 1

    def state_dict(self) -> dict[str, Any]:
        epoch = self._running if self._running is not None else self.epoch
        return {"epoch": epoch, "consumed": self.consumed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self._skip = state["epoch"], state["consumed"]
