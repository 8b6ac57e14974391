"""Batches drawn by index from tensors already in memory (no Dataset, no workers)."""

from __future__ import annotations

import torch


class IndexBatchLoader:
    """Iterate over ``(images[idx], labels[idx])`` batches of an in-memory dataset.

    Shuffled loaders draw epoch ``e``'s order from ``seed + e``, so the order is a
    function of (seed, epoch): reproducible, and resumable from a checkpoint by restoring
    ``epoch`` alone.

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
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        n = len(self.labels)
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(n, generator=gen).to(self.images.device)
            self.epoch += 1
        else:
            order = None
        for i in range(len(self)):
            if order is None:
                sl = slice(i * self.batch_size, min(n, (i + 1) * self.batch_size))
                yield self.images[sl], self.labels[sl]
            else:
                idx = order[i * self.batch_size:(i + 1) * self.batch_size]
                yield self.images[idx], self.labels[idx]
