"""Batches drawn by index from tensors already in memory (no Dataset, no workers)."""

from __future__ import annotations

from typing import Any

import torch


#: How far apart two run seeds sit in a generator's seed: epoch (batch order, here) or step
#: (augmentation, ``InMemoryDataModule``) counts fill the gap, so runs never share a draw.
SEED_STRIDE = 1_000_003


class IndexBatchLoader:
    """Iterate over ``(images[idx], labels[idx])`` batches of an in-memory dataset.

    Shuffled loaders draw epoch ``e``'s order from ``seed * SEED_STRIDE + e``, so the order
    is a function of (seed, epoch) and no seed's epoch replays another seed's (with
    ``seed + e``, seed 0's second epoch was seed 1's first: seeds were not independent
    replicates). Seed 0 keeps the orders it always had. The loader is *stateful* in
    Lightning's sense (``state_dict``/``load_state_dict``): a checkpoint taken mid-epoch records the epoch
    and how many batches training consumed, and a resumed run continues with the very
    next batch, so an interrupted and resumed run sees the same batches as one that ran
    straight through.

    "Consumed" is counted by :meth:`mark_consumed` (called when a batch reaches the
    model), not by ``yield``: Lightning prefetches one batch ahead.

    Under DDP every rank holds the whole split and draws the same epoch order; the order
    is cut into *global* batches of ``batch_size * world_size`` images and rank ``r``
    takes the ``r``-th of ``world_size`` near-equal parts of each (exactly ``batch_size``
    images when the global batch is full). So the ranks' batches of a step are disjoint
    and together are the global batch, every rank runs the same number of steps, and with
    ``world_size=1`` the batches are those of a single process. Lightning injects no
    ``DistributedSampler`` here (this is not a ``DataLoader``), so this is the only
    sharding. Evaluation loaders (``drop_last=False``) shard the same way, without the
    padding a ``DistributedSampler`` adds, so synced metrics count every image once. A
    last global batch smaller than ``world_size`` leaves the last ranks one batch short;
    that is harmless because an evaluation step makes no collective call (no gradients,
    so DDP syncs at most the buffers, before the first batch, which every rank has; the
    metrics sync once, in ``compute``).

    Args:
        images, labels: the whole split, on the device the batches should live on.
        batch_size: images per batch and rank.
        shuffle: reshuffle every epoch (training) or keep file order (evaluation).
        drop_last: drop the last partial global batch (training keeps a fixed batch size).
        seed: base seed of the shuffle.
        rank, world_size: this process's rank and the number of processes (DDP); the
            defaults are a single process.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, *,
                 shuffle: bool, drop_last: bool, seed: int = 0, rank: int = 0,
                 world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), got rank {rank} of {world_size}")
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.drop_last, self.seed = batch_size, shuffle, drop_last, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0          # the next epoch __iter__ starts
        self.consumed = 0       # batches of the running epoch that reached the model
        self._running: int | None = None
        self._skip = 0          # batches to skip on the next __iter__ (after a resume)

    def __len__(self) -> int:
        """Batches per epoch on this rank (= global batches, but for a tiny last one)."""
        n, size = len(self.labels), self.batch_size * self.world_size
        if self.drop_last:
            return n // size
        full, last = divmod(n, size)
        return full + (last > self.rank)  # tensor_split gives the first `last` ranks an image

    def __iter__(self):
        if self._skip >= len(self):  # resumed exactly at an epoch boundary
            self.epoch, self._skip = self.epoch + 1, 0
        epoch, start = self.epoch, self._skip
        self.epoch, self._skip, self._running, self.consumed = epoch + 1, 0, epoch, start
        n = len(self.labels)
        order = None
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * SEED_STRIDE + epoch)
            order = torch.randperm(n, generator=gen).to(self.images.device)
        for i in range(start, len(self)):
            lo, hi = self._bounds(i, n)
            if order is None:
                yield self.images[lo:hi], self.labels[lo:hi]
            else:
                idx = order[lo:hi]
                yield self.images[idx], self.labels[idx]

    def _bounds(self, i: int, n: int) -> tuple[int, int]:
        """Positions ``[lo, hi)`` in the epoch order of this rank's part of global batch ``i``."""
        size = self.batch_size * self.world_size
        start, stop = i * size, min(n, (i + 1) * size)
        # torch.tensor_split's rule: the first (len % W) parts get one extra element.
        k, extra = divmod(stop - start, self.world_size)
        lo = start + self.rank * k + min(self.rank, extra)
        return lo, lo + k + (self.rank < extra)

    def mark_consumed(self) -> None:
        self.consumed += 1

    def state_dict(self) -> dict[str, Any]:
        epoch = self._running if self._running is not None else self.epoch
        return {"epoch": epoch, "consumed": self.consumed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self._skip = state["epoch"], state["consumed"]
