"""One LightningDataModule for every source: split, subset, and batch from memory."""

from __future__ import annotations

from typing import Annotated, Any

import lightning as L
import torch

from residual_lab.data.arrays import ImageArrays
from residual_lab.data.augment import channel_stats, normalize, random_crop_flip
from residual_lab.data.loader import SEED_STRIDE, IndexBatchLoader
from residual_lab.errors import UserFacingError
from residual_lab.schema import at_least, out_of_range


def balanced_subset(labels: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of ``n`` examples, as equal per class as possible, drawn without replacement."""
    classes = labels.unique()
    per_class = [torch.nonzero(labels == c).flatten() for c in classes]
    per_class = [idx[torch.randperm(len(idx), generator=generator)] for idx in per_class]
    k, extra = divmod(n, len(classes))
    chosen = [idx[: k + (i < extra)] for i, idx in enumerate(per_class)]
    return torch.cat(chosen).sort().values


class InMemoryDataModule(L.LightningDataModule):
    """He et al. 2015 sec. 4.2's data pipeline over any in-memory image source, but for the
    normalisation: per-channel standardisation where the paper subtracts the per-pixel mean.

    The training set is split into train/val with a fixed seed (``val_size``: 45k/5k for CIFAR
    under protocol=heldout, no split under protocol=paper); the
    test set is never touched until ``test``. Batches are gathered by index from a uint8
    tensor; augmentation (4-pixel pad, random crop, horizontal flip) and normalization with
    training-split statistics run on whole batches on the model's device in
    ``on_after_batch_transfer``.

    Under DDP (``trainer=ddp``) each rank trains on its own part of every global batch of
    ``batch_size x devices`` images and evaluates its own part of the val/test split
    (:class:`IndexBatchLoader`), and draws its own crops and flips. One process is rank 0
    of 1: its batches and augmentations are the same as if there were no sharding.

    Args:
        source: object with ``load() -> ImageArrays`` (torchvision, image folder, synthetic).
        num_classes: classes the model is built for; checked against the data. The config
            reads it from the source (``${num_classes_of:${.source}}``), so it only needs
            setting to check it.
        root: where the source reads its files (``data.root``; the source config
            interpolates it, so one override moves both).
        batch_size: training batch per process, images; the global batch is
            batch_size x devices (128 in the paper).
        eval_batch_size: validation/test batch, images (no gradients, so larger is fine).
        val_size: training images held out for validation (5000; 0 trains on all).
        subset: train on this many images of the train split, class-balanced; None for all.
        split_seed: seed of the train/val split and the subset, fixed across runs so every
            run of a sweep sees the same split.
        shuffle_seed: base seed of the per-epoch batch order.
        pad: crop padding, pixels (0 disables cropping).
        flip: random horizontal flips.
        device_resident: keep the dataset on the accelerator (batches never cross the bus).

    The ``Annotated`` limits are the config's ranges: residual_lab.schema checks them before
    anything is built, and the constructor itself when called from Python.
    """

    def __init__(self, source: Any, *, num_classes: Annotated[int, at_least(2)], root: str | None = None,
                 batch_size: Annotated[int, at_least(1)] = 128, eval_batch_size: Annotated[int, at_least(1)] = 500,
                 val_size: Annotated[int, at_least(0)] = 5000, subset: Annotated[int | None, at_least(1)] = None,
                 split_seed: Annotated[int, at_least(0)] = 0, shuffle_seed: Annotated[int, at_least(0)] = 0,
                 pad: Annotated[int, at_least(0)] = 4, flip: bool = True, device_resident: bool = True) -> None:
        if (problem := out_of_range(InMemoryDataModule, "data", locals())) is not None:
            raise UserFacingError(problem)
        super().__init__()
        self.source, self.num_classes, self.root = source, num_classes, root
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.val_size, self.subset = val_size, subset
        self.split_seed, self.shuffle_seed = split_seed, shuffle_seed
        self.pad, self.flip, self.device_resident = pad, flip, device_resident
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None
        self._train_loader: IndexBatchLoader | None = None
        self._generator: torch.Generator | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        data: ImageArrays = self.source.load()
        if data.num_classes != self.num_classes:
            raise UserFacingError(f"the data has {data.num_classes} classes but data.num_classes "
                                  f"is {self.num_classes}; drop the data.num_classes override, the "
                                  f"count is read from the data")
        n = len(data.train_labels)
        if self.val_size >= n:
            raise UserFacingError(f"data.val_size={self.val_size} leaves no training images "
                                  f"(the training set has {n})")
        gen = torch.Generator().manual_seed(self.split_seed)
        order = torch.randperm(n, generator=gen)
        val_idx, train_idx = order[: self.val_size].sort().values, order[self.val_size:].sort().values
        if self.subset is not None:
            if self.subset > len(train_idx):
                raise UserFacingError(f"data.subset={self.subset} is larger than the training "
                                      f"split ({len(train_idx)} images)")
            train_idx = train_idx[balanced_subset(data.train_labels[train_idx], self.subset, gen)]
        self.splits = {
            "train": (data.train_images[train_idx], data.train_labels[train_idx]),
            "val": (data.train_images[val_idx], data.train_labels[val_idx]),
            "test": (data.test_images, data.test_labels),
        }
        self.classes = data.classes
        mean, std = channel_stats(self.splits["train"][0])
        if (std == 0).any():
            c = int((std == 0).nonzero()[0])
            raise UserFacingError(f"every training image has the value {round(float(mean[c]) * 255)}/255 in channel {c} "
                                  "(std 0): standardising would divide by zero; the images carry nothing to learn "
                                  f"there; check {self.root or 'data.source'}")
        self.mean, self.std = mean, std  # [0, 1] units; moved to the batches' device once
        if self.device_resident and self.trainer is not None:
            device = self.trainer.strategy.root_device
            self.splits = {k: (x.to(device), y.to(device)) for k, (x, y) in self.splits.items()}

    @property
    def num_train(self) -> int:
        return len(self.splits["train"][1])

    def _ranks(self) -> dict[str, int]:
        """This process's place in DDP (rank 0 of 1 without a trainer or with one device)."""
        if self.trainer is None:
            return {"rank": 0, "world_size": 1}
        return {"rank": self.trainer.global_rank, "world_size": self.trainer.world_size}

    def train_dataloader(self) -> IndexBatchLoader:
        x, y = self.splits["train"]
        ranks = self._ranks()
        if len(y) < self.batch_size * ranks["world_size"]:
            per = f" x {ranks['world_size']} processes" if ranks["world_size"] > 1 else ""
            raise UserFacingError(f"data.batch_size={self.batch_size}{per} exceeds the "
                                  f"{len(y)} training images")
        self._train_loader = IndexBatchLoader(x, y, self.batch_size, shuffle=True, drop_last=True,
                                              seed=self.shuffle_seed, **ranks)
        self._check_val_interval(len(self._train_loader))
        return self._train_loader

    def _check_val_interval(self, batches: int) -> None:
        """Refuse a step-count validation interval longer than an epoch, in one sentence.

        Lightning counts ``val_check_interval`` steps within each epoch unless
        ``check_val_every_n_epoch`` is null, and raises a ValueError (a traceback) when an epoch
        has fewer steps, which happens with a small data set or ``data.subset``.
        """
        trainer = self.trainer
        interval = getattr(trainer, "val_check_interval", None)
        if (not isinstance(interval, int) or isinstance(interval, bool) or trainer.check_val_every_n_epoch is None
                or not trainer.limit_val_batches):  # the condition of Lightning 2.6's FitLoop.setup_data
            return
        limit = trainer.limit_train_batches
        if isinstance(limit, int):
            batches = min(batches, limit)
        elif isinstance(limit, float):
            batches = int(batches * limit)
        if interval > batches:
            raise UserFacingError(
                f"trainer.val_check_interval={interval} steps is longer than an epoch ({batches} steps of "
                f"data.batch_size={self.batch_size} over {self.num_train} training images); set "
                f"trainer.val_check_interval to at most {batches}, or trainer.check_val_every_n_epoch=null "
                f"to count the interval across epochs")

    def val_dataloader(self) -> IndexBatchLoader | list:
        x, y = self.splits["val"]
        return self._eval_loader(x, y) if len(y) else []

    def test_dataloader(self) -> IndexBatchLoader:
        return self._eval_loader(*self.splits["test"])

    def _eval_loader(self, x: torch.Tensor, y: torch.Tensor) -> IndexBatchLoader:
        ranks = self._ranks()
        if len(y) < ranks["world_size"]:  # a rank without a batch would miss the metrics' sync
            raise UserFacingError(f"{len(y)} evaluation images cannot be shared by "
                                  f"{ranks['world_size']} processes")
        return IndexBatchLoader(x, y, self.eval_batch_size, shuffle=False, drop_last=False, **ranks)

    def eval_batches(self, split: str, device: torch.device | str | None = None, images: int | None = None):
        """The whole ``split`` in file order (or ``images`` of it, evenly spaced: the same ones
        every call, every class of a class-sorted folder in proportion), normalized and *not*
        augmented, batch by batch.

        What an evaluation pass sees (``test``'s pipeline), for any split: the final weights'
        error on the whole training split is the report's training error (He et al. 2015's
        degradation is about training error; the augmented, train-mode window of the last
        logged steps is a curve, not a statistic). Under DDP each rank gets its shard.
        """
        x, y = self.splits[split]
        if images is not None and images < len(y):
            keep = torch.linspace(0, len(y) - 1, images).round().long()
            x, y = x[keep], y[keep]
        mean, std = self.mean.to(device or x.device), self.std.to(device or x.device)
        for batch, labels in self._eval_loader(x, y):
            if device is not None:
                batch, labels = batch.to(device), labels.to(device)
            yield normalize(batch, mean, std), labels

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, labels = batch
        if self.trainer is not None and self.trainer.training:
            self._train_loader.mark_consumed()
            if self.pad or self.flip:
                images = random_crop_flip(images, self.pad, self.flip, self._augment_generator(images.device))
        if self.mean.device != images.device:  # once, not per step
            self.mean, self.std = self.mean.to(images.device), self.std.to(images.device)
        return normalize(images, self.mean, self.std), labels

    def _augment_generator(self, device: torch.device) -> torch.Generator:
        """A generator seeded by (shuffle_seed, global step, rank): crops and flips are a
        function of the step, so a resumed run draws the same ones as an uninterrupted run,
        and DDP ranks draw different ones. ``seed * world_size + rank`` is distinct per rank
        and is the single-process seed when ``world_size`` is 1."""
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device)
        seed = self.shuffle_seed * SEED_STRIDE + self.trainer.global_step
        return self._generator.manual_seed(seed * self.trainer.world_size + self.trainer.global_rank)
