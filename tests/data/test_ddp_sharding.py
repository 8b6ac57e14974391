"""DDP shards the in-memory data by rank; one process sees exactly the single-process batches.

The expectations of the one-process tests were printed by the loader and datamodule as they
were before sharding existed (commit b1fbf5a), so they pin the single-process path byte for
byte: batch order, resume, and the crops and flips of a step.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from omegaconf import open_dict

from residual_lab.data import InMemoryDataModule, SyntheticSource
from residual_lab.data.arrays import ImageArrays
from residual_lab.data.augment import crop_flip, normalize
from residual_lab.data.loader import SEED_STRIDE, IndexBatchLoader
from residual_lab.errors import UserFacingError
from residual_lab.run import build


def _labels(loader) -> list[list[int]]:
    return [y.tolist() for _, y in loader]


def test_one_process_batch_order_is_unchanged():
    x = y = torch.arange(10)
    for kwargs in ({}, {"rank": 0, "world_size": 1}):
        train = IndexBatchLoader(x, y, 3, shuffle=True, drop_last=True, seed=5, **kwargs)
        # pinned orders of the (seed * SEED_STRIDE + epoch) scheme
        assert _labels(train) == [[3, 9, 1], [8, 0, 5], [6, 2, 7]]
        assert _labels(train) == [[8, 7, 5], [1, 0, 9], [2, 3, 6]]
        resumed = IndexBatchLoader(x, y, 3, shuffle=True, drop_last=True, seed=5, **kwargs)
        resumed.load_state_dict({"epoch": 1, "consumed": 1})
        assert _labels(resumed) == [[1, 0, 9], [2, 3, 6]]
        evaluation = IndexBatchLoader(x, y, 4, shuffle=False, drop_last=False, **kwargs)
        assert _labels(evaluation) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]] and len(evaluation) == 3


def test_one_process_augmentation_is_unchanged():
    dm = InMemoryDataModule(SyntheticSource(num_train=40, num_test=8), num_classes=10, val_size=8,
                            batch_size=4, shuffle_seed=7)
    dm.setup()
    dm.trainer = SimpleNamespace(global_step=3, training=True, global_rank=0, world_size=1)
    images, labels = next(iter(dm.train_dataloader()))
    assert labels.tolist() == [2, 7, 4, 7]  # the first batch of seed 7 * SEED_STRIDE
    out, _ = dm.on_after_batch_transfer((images, labels), 0)
    offsets = torch.tensor([[3, 5], [3, 7], [6, 0], [6, 8]])  # drawn from seed 7 * 1_000_003 + 3
    flips = torch.tensor([0.0862, 0.4022, 0.7861, 0.1647]) < 0.5
    assert torch.equal(out, normalize(crop_flip(images, offsets, flips, 4), dm.mean, dm.std))


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_split_every_global_batch(world_size):
    x = y = torch.arange(50)
    ranks = [IndexBatchLoader(x, y, 4, shuffle=True, drop_last=True, seed=1, rank=r,
                              world_size=world_size) for r in range(world_size)]
    single = IndexBatchLoader(x, y, 4 * world_size, shuffle=True, drop_last=True, seed=1)
    for _ in range(2):  # epochs
        per_rank = [_labels(loader) for loader in ranks]
        assert all(len(batches) == len(loader) == 50 // (4 * world_size)
                   for batches, loader in zip(per_rank, ranks))
        assert [sum(step, []) for step in zip(*per_rank)] == _labels(single)
    # Evaluation: every image once over the ranks, none padded in, batches equal but the last.
    for n in (50, 49, 25, world_size):
        x = y = torch.arange(n)
        parts = [IndexBatchLoader(x, y, 4, shuffle=False, drop_last=False, rank=r,
                                  world_size=world_size) for r in range(world_size)]
        seen = [_labels(loader) for loader in parts]
        assert all(len(s) == len(loader) and all(s[:-1]) and s[-1] for s, loader in zip(seen, parts))
        assert sorted(sum(sum(seen, []), [])) == list(range(n))
        assert max(map(len, seen)) - min(map(len, seen)) <= 1


def test_too_few_evaluation_images_for_the_ranks_are_refused():
    dm = InMemoryDataModule(SyntheticSource(num_train=40, num_test=8), num_classes=10, val_size=1)
    dm.setup()
    dm.trainer = SimpleNamespace(global_rank=1, world_size=2)
    with pytest.raises(UserFacingError, match="1 evaluation images cannot be shared by 2 processes"):
        dm.val_dataloader()


# --- a real 2-process DDP run (gloo, CPU) ---------------------------------------------------

NUM_TRAIN, VAL_SIZE, BATCH, SEED = 60, 9, 4, 3   # 51 train images: 6 global batches of 8


class IndexedSource:
    """Images that carry their own id: channel 0 is the constant id + 1 everywhere (the centre
    pixel is never crop padding), channels 1 and 2 are the same ramps in every image, so two
    batches' channels 1-2 are equal exactly when their crops and flips are."""

    def load(self) -> ImageArrays:
        ids = torch.arange(NUM_TRAIN)
        x = torch.empty(NUM_TRAIN, 3, 32, 32, dtype=torch.uint8)
        x[:, 0] = (ids + 1)[:, None, None]
        x[:, 1] = torch.arange(32) * 7            # columns: shows flips and horizontal shifts
        x[:, 2] = (torch.arange(32) * 5)[:, None]  # rows: shows vertical shifts
        return ImageArrays(x, ids % 2, x[:4], ids[:4] % 2, classes=["even", "odd"])


def _datamodule() -> InMemoryDataModule:
    return InMemoryDataModule(IndexedSource(), num_classes=2, batch_size=BATCH, eval_batch_size=4,
                              val_size=VAL_SIZE, shuffle_seed=SEED)


def _ids(images: torch.Tensor, dm: InMemoryDataModule) -> list[int]:
    """Undo the normalization of the centre pixel of channel 0: the image's id."""
    centre = images[:, 0, 16, 16] * dm.std[0] + dm.mean[0]
    return ((centre * 255).round() - 1).long().tolist()


class Recorder(L.Callback):
    """Writes what this rank trained and validated on to ``<out>/rank<r>.pt``."""

    def __init__(self, out: str) -> None:
        self.out, self.train, self.val, self.val_loss = out, [], [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        images = batch[0]
        self.train.append((trainer.global_step, _ids(images, trainer.datamodule), images[:, 1:].clone()))

    def on_validation_epoch_start(self, trainer, pl_module):
        self.val.append([])

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.val[-1] += _ids(batch[0], trainer.datamodule)

    def on_validation_end(self, trainer, pl_module):
        """The synced val/loss next to the loss of this rank's model on the whole split."""
        dm = trainer.datamodule
        x, y = dm.splits["val"]
        with torch.no_grad():
            full = torch.nn.functional.cross_entropy(pl_module(normalize(x, dm.mean, dm.std)), y)
        self.val_loss.append((float(trainer.callback_metrics["val/loss"]), float(full)))

    def on_fit_end(self, trainer, pl_module):
        torch.save({"train": self.train, "val": self.val, "val_loss": self.val_loss},
                   Path(self.out) / f"rank{trainer.global_rank}.pt")


def test_ddp_ranks_train_on_disjoint_parts_of_the_global_batch(make_cfg, tmp_path):
    cfg = make_cfg("trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
                   "trainer.precision=32-true", "trainer.max_steps=8", "trainer.val_check_interval=null",
                   "callbacks=none", "~logger", "data.num_classes=2", "task.channels_last=false",
                   "trainer.strategy={_target_: lightning.pytorch.strategies.DDPStrategy, "
                   "start_method: spawn, process_group_backend: gloo, "
                   "timeout: {_target_: datetime.timedelta, seconds: 120}}")
    with open_dict(cfg):
        cfg.trainer.enable_checkpointing = False
    module, _, trainer = build(cfg, extra_callbacks=[Recorder(str(tmp_path))])
    trainer.fit(module, datamodule=_datamodule())
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]

    dm = _datamodule()
    dm.setup()
    train_ids = _ids(normalize(dm.splits["train"][0], dm.mean, dm.std), dm)
    steps_per_epoch = len(train_ids) // (2 * BATCH)
    assert [[step for step, _, _ in r["train"]] for r in ranks] == [list(range(8))] * 2
    for (step, ids0, aug0), (_, ids1, aug1) in zip(ranks[0]["train"], ranks[1]["train"]):
        epoch, i = divmod(step, steps_per_epoch)
        order = torch.randperm(len(train_ids), generator=torch.Generator().manual_seed(SEED * SEED_STRIDE + epoch))
        global_batch = [train_ids[j] for j in order[i * 2 * BATCH:(i + 1) * 2 * BATCH]]
        assert not set(ids0) & set(ids1), f"step {step}: both ranks trained on {set(ids0) & set(ids1)}"
        assert set(ids0) | set(ids1) == set(global_batch)
        assert ids0 + ids1 == global_batch  # rank r: the r-th batch_size-sized chunk
        assert not torch.equal(aug0, aug1), f"step {step}: both ranks drew the same crops and flips"

    val_ids = _ids(normalize(dm.splits["val"][0], dm.mean, dm.std), dm)
    assert len(ranks[0]["val"]) == len(ranks[1]["val"]) >= 1
    for seen0, seen1 in zip(ranks[0]["val"], ranks[1]["val"]):  # 9 images: 4+4, then 1+0
        assert (len(seen0), len(seen1)) == (5, 4)
        assert sorted(seen0 + seen1) == sorted(val_ids)
    for r in ranks:
        for logged, full in r["val_loss"]:
            assert logged == pytest.approx(full, rel=1e-5)
