"""Image folders checked once at load: pixel mode and bit depth, one size across
splits, no empty class, hidden entries ignored, unreadable folders and symlink loops named in
one sentence, and a cache that is verified and rebuilt when it is stale or corrupt. Every
refusal is a :class:`UserFacingError` (one sentence, exit 2). Folders: 2 classes x 3 images."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from residual_lab.data.image_folder import ImageFolderSource
from residual_lab.errors import UserFacingError


def tree(root: Path, size: int = 8, test_size: int | None = None, classes=("cat", "dog"), per_class: int = 3) -> Path:
    """``root/{train,test}/<class>/<i>.png`` of random RGB images (``test_size``: another size for test/)."""
    rng = np.random.default_rng(0)
    for split, side in (("train", size), ("test", test_size or size)):
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")
    return root


def load(root: Path, tmp_path: Path, **kwargs):
    return ImageFolderSource(str(root), cache_dir=str(tmp_path / "cache"), **kwargs).load()


def test_16_bit_gray_pngs_keep_their_gray_level(tmp_path):
    """Before: Pillow's convert("RGB") clipped 16-bit values at 255: every pixel 255 (white)."""
    root = tree(tmp_path / "d")
    Image.fromarray(np.full((8, 8), 32768, np.uint16)).save(root / "train" / "cat" / "0.png")  # mid-gray, 16 bits
    arrays = load(root, tmp_path)
    assert arrays.train_images[0].unique().tolist() == [32768 * 255 // 65535]  # 127 in all three channels


def test_pixels_of_no_known_depth_are_refused(tmp_path):
    root = tree(tmp_path / "d")
    Image.fromarray(np.full((8, 8), 0.5, np.float32)).save(root / "train" / "cat" / "0.tif")
    with pytest.raises(UserFacingError, match=r"image .*train/cat/0.tif has F pixels \(not 8- or 16-bit\)"):
        load(root, tmp_path)


def test_one_image_size_across_the_splits(tmp_path):
    """Before: each split was checked alone, so a 64x64 test split after training at 8x8 loaded."""
    root = tree(tmp_path / "d", size=8, test_size=16)
    with pytest.raises(UserFacingError, match=r"image .*test/cat/0.png is 16x16 but .*train/cat/0.png is 8x8; "
                                              r"set data.source.image_size=N"):
        load(root, tmp_path)
    assert load(root, tmp_path, image_size=8).test_images.shape == (6, 3, 8, 8)  # or resize both


@pytest.mark.parametrize("split", ["train", "test"])
def test_an_empty_class_folder_is_refused(tmp_path, split):
    """Before: an untrained class (train) or a class that deflates macro recall (test), silently."""
    root = tree(tmp_path / "d")
    for image in (root / split / "dog").iterdir():
        image.unlink()
    with pytest.raises(UserFacingError, match=rf"class folder .*{split}/dog holds no images"):
        load(root, tmp_path)


def test_hidden_entries_are_neither_classes_nor_images(tmp_path):
    """Before: ``.ipynb_checkpoints/`` became a third class."""
    root = tree(tmp_path / "d")
    for split in ("train", "test"):
        (root / split / ".ipynb_checkpoints").mkdir()
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / split / "cat" / "._0.png")  # macOS resource fork
    arrays = load(root, tmp_path)
    assert arrays.classes == ["cat", "dog"] and arrays.train_images.shape == (6, 3, 8, 8)


def test_a_symlink_loop_is_one_sentence(tmp_path):
    """Before: the looping class folder was skipped without a word."""
    root = tree(tmp_path / "d")
    os.symlink("bird", root / "train" / "bird")  # points at itself
    with pytest.raises(UserFacingError, match=r"cannot follow .*train/bird: Too many levels of symbolic links"):
        load(root, tmp_path)


def test_an_unreadable_class_folder_is_one_sentence(tmp_path, monkeypatch):
    """Before: a PermissionError traceback. (The tests may run as root, who reads any folder:
    the refusal is simulated where the folder is listed.)"""
    root = tree(tmp_path / "d")
    real_scandir, locked = os.scandir, root / "train" / "dog"

    def scandir(path="."):
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(UserFacingError, match=r"cannot read the folder .*train/dog: Permission denied"):
        load(root, tmp_path)


def test_a_corrupt_cache_is_rebuilt_saying_so(tmp_path, capsys):
    """Before: np.load's BadZipFile on every later run, nothing saying which file to delete."""
    root = tree(tmp_path / "d")
    first = load(root, tmp_path)
    (cache,) = (tmp_path / "cache").iterdir()
    cache.write_bytes(cache.read_bytes()[:100])  # a cache cut short (disk full, copied half)
    capsys.readouterr()
    again = load(root, tmp_path)
    assert np.array_equal(again.train_images, first.train_images)
    said = capsys.readouterr().out
    assert said.startswith(f"residual_lab: the image cache {cache} is unusable (not a readable cache: ")
    assert "decoding the 12 images again and rewriting it" in said
    load(root, tmp_path)
    assert "read from the cache" in capsys.readouterr().out  # the rewritten cache is good


def test_a_stale_cache_is_rebuilt(tmp_path, capsys):
    """A cache under the right name holding other arrays (an older layout, another writer).
    Before: its arrays were handed back as the folder's (here 1 image instead of 6)."""
    root = tree(tmp_path / "d")
    load(root, tmp_path)
    (cache,) = (tmp_path / "cache").iterdir()
    one = np.zeros((1, 3, 8, 8), np.uint8)
    with open(cache, "wb") as f:
        np.savez(f, train_images=one, train_labels=np.zeros(1, np.int64), test_images=one,
                 test_labels=np.zeros(1, np.int64))
    capsys.readouterr()
    assert load(root, tmp_path).train_images.shape == (6, 3, 8, 8)
    assert "(written for other files or by another version)" in capsys.readouterr().out
