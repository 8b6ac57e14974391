"""The paper's data protocol: fixed 45k/5k-style split, balanced subsets, deterministic data."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

from residual_lab.data import ImageFolderSource, InMemoryDataModule, SyntheticSource
from residual_lab.errors import UserFacingError
from tests.helpers import image_folder


def test_synthetic_data_is_deterministic_from_its_seed():
    a, b, c = SyntheticSource(seed=3).load(), SyntheticSource(seed=3).load(), SyntheticSource(seed=4).load()
    assert torch.equal(a.train_images, b.train_images) and torch.equal(a.test_labels, b.test_labels)
    assert not torch.equal(a.train_images, c.train_images)
    assert a.train_images.shape == (2048, 3, 32, 32) and a.train_images.dtype == torch.uint8
    assert a.train_labels.bincount().tolist() == [205] * 8 + [204] * 2


def test_split_is_fixed_disjoint_and_the_test_set_untouched():
    source = SyntheticSource(num_train=1000, num_test=100)
    dm = InMemoryDataModule(source, num_classes=10, val_size=200, split_seed=0)
    dm.setup()
    (tx, ty), (vx, vy), (sx, sy) = dm.splits["train"], dm.splits["val"], dm.splits["test"]
    assert (len(ty), len(vy), len(sy)) == (800, 200, 100)
    full = source.load()
    rows = {tuple(x.flatten()[:64].tolist()) for x in tx}
    assert not rows & {tuple(x.flatten()[:64].tolist()) for x in vx}
    assert torch.equal(sx, full.test_images)
    again = InMemoryDataModule(source, num_classes=10, val_size=200, split_seed=0)
    again.setup()
    assert torch.equal(again.splits["val"][0], vx)


def test_subset_is_class_balanced():
    dm = InMemoryDataModule(SyntheticSource(num_train=1000), num_classes=10, val_size=100, subset=95)
    dm.setup()
    assert dm.splits["train"][1].bincount().tolist() == [10] * 5 + [9] * 5


def test_normalization_uses_training_split_statistics():
    dm = InMemoryDataModule(SyntheticSource(num_train=500), num_classes=10, val_size=100)
    dm.setup()
    x = dm.splits["train"][0].double() / 255
    assert torch.allclose(dm.mean.double(), x.mean((0, 2, 3)), atol=1e-6)
    assert torch.allclose(dm.std.double(), x.permute(1, 0, 2, 3).reshape(3, -1).std(1, unbiased=False), atol=1e-6)


def test_training_batches_cover_the_split_once_per_epoch_in_a_seeded_order():
    dm = InMemoryDataModule(SyntheticSource(num_train=300), num_classes=10, val_size=0, batch_size=64)
    dm.setup()
    loader = dm.train_dataloader()
    first = [y for _, y in loader]
    assert len(first) == len(loader) == 4  # drop_last: 300 // 64
    second = [y for _, y in loader]
    assert not torch.equal(torch.cat(first), torch.cat(second))
    replay = dm.train_dataloader()
    assert torch.equal(torch.cat([y for _, y in replay]), torch.cat(first))


@pytest.mark.parametrize("kwargs,message", [
    (dict(subset=5000), "data.subset=5000 is larger than the training split (900 images)"),
    (dict(val_size=1000), "data.val_size=1000 leaves no training images"),
    (dict(num_classes=100), "the data has 10 classes but data.num_classes is 100"),
])
def test_bad_values_are_named(kwargs, message):
    args = dict(num_classes=10, val_size=100) | kwargs
    dm = InMemoryDataModule(SyntheticSource(num_train=1000), **args)
    with pytest.raises(UserFacingError, match=message.replace("(", r"\(").replace(")", r"\)")):
        dm.setup()


def test_zero_batch_size_is_refused():
    with pytest.raises(UserFacingError, match="data.batch_size must be >= 1, got 0"):
        InMemoryDataModule(SyntheticSource(), num_classes=10, batch_size=0)


def test_image_folder_decodes_once_and_reuses_the_cache_until_files_change(tmp_path):
    image_folder(tmp_path / "d", per_class=3)
    source = ImageFolderSource(str(tmp_path / "d"), cache_dir=str(tmp_path / "cache"))
    a = source.load()
    assert a.classes == ["cat", "dog"] and a.train_images.shape == (6, 3, 32, 32)
    expected = np.asarray(Image.open(tmp_path / "d" / "train" / "dog" / "1.png"))
    assert np.array_equal(a.train_images[4].permute(1, 2, 0).numpy(), expected)
    caches = list((tmp_path / "cache").iterdir())
    assert len(caches) == 1
    assert torch.equal(source.load().train_images, a.train_images)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "d" / "train" / "dog" / "9.png")
    b = source.load()
    assert b.train_images.shape[0] == 7 and len(list((tmp_path / "cache").iterdir())) == 2


def test_image_folder_errors_name_the_problem(tmp_path):
    with pytest.raises(UserFacingError, match="missing or empty"):
        ImageFolderSource(str(tmp_path / "nowhere")).load()
    image_folder(tmp_path / "d", per_class=3)
    (tmp_path / "d" / "test" / "bird").mkdir()
    with pytest.raises(UserFacingError, match=r"only in train: none, only in test: \['bird'\]"):
        ImageFolderSource(str(tmp_path / "d")).load()
    (tmp_path / "d" / "test" / "bird").rmdir()
    (tmp_path / "d" / "train" / "cat" / "1.png").write_bytes(b"not an image")
    with pytest.raises(UserFacingError, match=r"cannot read image .*train/cat/1.png"):
        ImageFolderSource(str(tmp_path / "d"), cache_dir=str(tmp_path / "c")).load()


def test_image_folder_says_what_it_decodes_how_long_it_takes_and_where_the_cache_goes(tmp_path, capsys, monkeypatch):
    from residual_lab.data import image_folder as image_folder_module

    image_folder(tmp_path / "d", per_class=3)  # 12 images
    monkeypatch.setattr(image_folder_module, "ESTIMATE_AFTER", 4)
    monkeypatch.setenv("RESIDUAL_LAB_CACHE", str(tmp_path / "moved"))
    root = tmp_path / "d"
    ImageFolderSource(str(root)).load()
    (cache,) = (tmp_path / "moved").iterdir()
    assert not (root / ".residual_lab_cache").exists()  # nothing written into the data directory
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (f"residual_lab: decoding the 12 images under {root} once; the arrays go to {cache} "
                        f"(RESIDUAL_LAB_CACHE=<dir> puts them elsewhere)")
    assert re.fullmatch(r"residual_lab: decoded 4 of 12 images in \d+\.\d s: about \d+ s left", lines[1])
    assert re.fullmatch(rf"residual_lab: decoded 12 images in \d+\.\d s; cache {re.escape(str(cache))} \(0 MB\), "
                        r"reused until the files change", lines[2]) and len(lines) == 3
    ImageFolderSource(str(root)).load()
    assert capsys.readouterr().out == f"residual_lab: image folder {root}: decoded images read from the cache {cache}\n"
    ImageFolderSource(str(root), cache_dir=str(tmp_path / "explicit")).load()  # the option beats the variable
    assert len(list((tmp_path / "explicit").iterdir())) == 1


def test_decode_estimate_extrapolates_the_first_images_rate():
    from residual_lab.data.image_folder import seconds_left

    assert seconds_left(500, 60_000, 0.25) == 0.25 / 500 * 59_500  # 29.75 s for the CIFAR-10 copy


def test_seeds_draw_unrelated_batch_orders_in_every_epoch():
    """Seeds are replicates: no seed's epoch may replay another seed's epoch. With the order of
    epoch e drawn from ``seed + e``, seed 0's second epoch was seed 1's first."""
    from residual_lab.data.loader import IndexBatchLoader

    x, y = torch.zeros(64, 1), torch.arange(64)

    def orders(seed: int, epochs: int = 3) -> list[torch.Tensor]:
        loader = IndexBatchLoader(x, y, 64, shuffle=True, drop_last=True, seed=seed)
        return [torch.cat([labels for _, labels in loader]) for _ in range(epochs)]

    epochs = {(seed, e): order for seed in range(3) for e, order in enumerate(orders(seed))}
    for (a, ea), order_a in epochs.items():
        for (b, eb), order_b in epochs.items():
            if (a, ea) < (b, eb):
                assert not torch.equal(order_a, order_b), f"seed {a} epoch {ea} replays seed {b} epoch {eb}"
    assert torch.equal(orders(1)[2], epochs[(1, 2)])  # still a function of (seed, epoch)


def test_training_images_that_all_share_a_channel_value_are_refused_in_one_sentence(tmp_path):
    """Before: channel std 0, so standardising divided by zero and the run 'diverged' at step 1
    (NaN loss), which reads as a training result rather than a data problem."""
    for split in ("train", "test"):
        for c in ("cat", "dog"):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(4):
                Image.fromarray(np.full((8, 8), 32768, np.uint16)).save(tmp_path / split / c / f"{i}.png")
    dm = InMemoryDataModule(ImageFolderSource(str(tmp_path), cache_dir=str(tmp_path / "cache")), num_classes=2,
                            val_size=2)
    with pytest.raises(UserFacingError, match=r"^every training image has the value 127/255 in channel 0 "
                                              r"\(std 0\): standardising would divide by zero; "):
        dm.setup("fit")
