"""Any ``train/<class>/*`` + ``test/<class>/*`` image tree, decoded once and cached."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from residual_lab.data.arrays import ImageArrays
from residual_lab.errors import DataUnavailableError, UserFacingError
from residual_lab.console import say
from residual_lab.io import atomic_write

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp", ".gif", ".tif", ".tiff"}
CACHE_VERSION = 2  # 2: image_size in the key
#: The environment variable that moves the cache of every image folder (``data.source.cache_dir``
#: still wins): for a data directory on a slow or shared disk, or one that must stay unchanged.
CACHE_ENV = "RESIDUAL_LAB_CACHE"
#: Images decoded before the time left is estimated (the CIFAR-10 copy's 60k take ~30 s on a
#: 2-core CPU, so the estimate comes after about a quarter of a second).
ESTIMATE_AFTER = 500


def seconds_left(done: int, total: int, elapsed_s: float) -> float:
    """The decode's remaining time in seconds, at the rate of the first ``done`` images."""
    return elapsed_s / done * (total - done)


class ImageFolderSource:
    """Decode an image tree into uint8 arrays once; reuse the cache until files change.

    Every image is converted to 3-channel RGB (a grayscale image's value is copied to the three
    channels; alpha is dropped), so grayscale and RGBA files train like colour ones. Images keep
    their size unless ``image_size`` is set; all must then be of one size (the nets are built for
    one input size), and a folder of mixed sizes is refused with a sentence naming the option.

    The first decode says how many images it reads, where the cache goes, and, after
    ``ESTIMATE_AFTER`` images, how long the rest will take; a cache hit says where it read from.

    The cache key hashes every file's relative path, size and mtime, and ``image_size``, so
    adding, removing or rewriting an image invalidates it. The cache is written atomically, so a
    killed decode never leaves a half-written cache to be read later.

    Args:
        root: directory with ``train/`` and ``test/``, each holding one folder per class.
        cache_dir: where to keep the decoded arrays; default ``$RESIDUAL_LAB_CACHE`` when set,
            else ``<root>/.residual_lab_cache``, or ``~/.cache/residual_lab`` when ``root`` is
            read-only.
        image_size: resize every image to ``image_size`` x ``image_size`` pixels (bilinear;
            not aspect-preserving), e.g. 32 for the CIFAR nets; None keeps the files' size.
    """

    def __init__(self, root: str, cache_dir: str | None = None, image_size: int | None = None) -> None:
        self.root = Path(root).expanduser()
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else None
        self.image_size = image_size

    @property
    def classes(self) -> list[str]:
        """Class names: the class folders under ``train/`` (no image is read)."""
        return self._scan_classes()

    @property
    def num_classes(self) -> int:
        """How many class folders ``train/`` holds (``data.num_classes`` reads it)."""
        return len(self._scan_classes())

    def _scan_classes(self) -> list[str]:
        if not self.root.is_dir() or not any(self.root.iterdir()):
            raise DataUnavailableError(
                f"data.root={self.root} is missing or empty. data=imagefolder expects "
                f"train/<class>/*.jpg and test/<class>/*.jpg under it (for the CIFAR-10 copy: "
                f"tar -xzf cifar10-jpeg.tar.gz -C /tmp, then data.root=/tmp/cifar10-jpeg)."
            )
        classes_per_split = {}
        for split in ("train", "test"):
            d = self.root / split
            if not d.is_dir():
                raise UserFacingError(f"{self.root} has no {split}/ folder; data=imagefolder "
                                      f"needs both train/<class>/ and test/<class>/")
            classes_per_split[split] = sorted(p.name for p in d.iterdir() if p.is_dir())
        train_c, test_c = classes_per_split["train"], classes_per_split["test"]
        if train_c != test_c or not train_c:
            raise UserFacingError(
                f"class folders differ between {self.root}/train and {self.root}/test: "
                f"only in train: {sorted(set(train_c) - set(test_c)) or 'none'}, "
                f"only in test: {sorted(set(test_c) - set(train_c)) or 'none'}"
            )
        return train_c

    def _scan(self) -> tuple[list[str], dict[str, list[tuple[Path, int]]]]:
        train_c = self._scan_classes()
        return train_c, {split: _image_files(self.root / split, train_c) for split in ("train", "test")}

    def _cache_path(self, splits) -> Path:
        h = hashlib.sha256(f"v{CACHE_VERSION} size={self.image_size}".encode())
        for split, files in splits.items():
            for path, label in files:
                st = path.stat()
                h.update(f"{split}/{path.relative_to(self.root)}:{label}:{st.st_size}:{st.st_mtime_ns}\n".encode())
        name = f"{self.root.name}-{h.hexdigest()[:16]}.npz"
        from_env = os.environ.get(CACHE_ENV)
        base = self.cache_dir or (Path(from_env).expanduser() if from_env else self.root / ".residual_lab_cache")
        if self.cache_dir is None and not from_env and not os.access(self.root, os.W_OK):
            base = Path("~/.cache/residual_lab").expanduser()
        return base / name

    def _decode(self, files: list[tuple[Path, int]], progress: _DecodeProgress) -> tuple[np.ndarray, np.ndarray]:
        if not files:
            raise UserFacingError("an image folder split has no images")
        first = None
        images = None
        size = (self.image_size, self.image_size) if self.image_size else None
        for i, (path, _) in enumerate(files):
            try:
                with Image.open(path) as im:
                    im = im.convert("RGB")  # grayscale: the value in all three channels
                    arr = np.asarray(im.resize(size, Image.BILINEAR) if size and im.size != size else im)
            except Exception as err:
                raise UserFacingError(f"cannot read image {path}: {err}") from None
            if first is None:
                first = arr.shape
                images = np.empty((len(files), *first), dtype=np.uint8)
            elif arr.shape != first:
                raise UserFacingError(f"image {path} is {arr.shape[1]}x{arr.shape[0]} but {files[0][0]} is "
                                      f"{first[1]}x{first[0]}; set data.source.image_size=N to resize every "
                                      f"image to N x N (e.g. 32)")
            images[i] = arr
            progress.step()
        labels = np.fromiter((label for _, label in files), dtype=np.int64, count=len(files))
        return images.transpose(0, 3, 1, 2).copy(), labels

    def load(self) -> ImageArrays:
        classes, splits = self._scan()
        cache = self._cache_path(splits)
        if cache.exists():
            say(f"image folder {self.root}: decoded images read from the cache {cache}")
            with np.load(cache) as z:
                arrays = {k: torch.from_numpy(z[k]) for k in z.files}
            return ImageArrays(classes=classes, **arrays)
        total = sum(len(files) for files in splits.values())
        say(f"decoding the {total} images under {self.root} once; the arrays go to {cache} "
            f"({CACHE_ENV}=<dir> puts them elsewhere)")
        progress = _DecodeProgress(total)
        arrays = {}
        for split, files in splits.items():
            x, y = self._decode(files, progress)
            arrays[f"{split}_images"], arrays[f"{split}_labels"] = torch.from_numpy(x), torch.from_numpy(y)
        try:
            atomic_write(cache, lambda f: np.savez(f, **{k: v.numpy() for k, v in arrays.items()}), "wb")
            say(f"decoded {total} images in {progress.elapsed():.1f} s; cache {cache} "
                f"({cache.stat().st_size / 1e6:.0f} MB), reused until the files change")
        except OSError as err:
            # A cache we cannot write only costs a re-decode next time.
            say(f"decoded {total} images in {progress.elapsed():.1f} s; no cache ({cache}: {err.strerror}), "
                f"so the next run decodes them again")
        return ImageArrays(classes=classes, **arrays)


def _image_files(directory: Path, classes: list[str]) -> list[tuple[Path, int]]:
    """``(path, label)`` of every image in ``directory/<class>/``, classes in the given order."""
    files = []
    for label, cls in enumerate(classes):
        for entry in sorted(os.scandir(directory / cls), key=lambda e: e.name):
            if entry.is_file() and Path(entry.name).suffix.lower() in IMAGE_SUFFIXES:
                files.append((Path(entry.path), label))
    return files


def read_class_folders(directory: str | Path, image_size: int | None = None) -> ImageArrays:
    """One folder of ``<class>/*`` images, decoded as a test split (no cache, no train split):
    what ``python -m residual_lab.evaluate folder=<dir>`` scores a net on. ``train_*`` are empty.

    Args:
        directory: holds one folder per class.
        image_size: resize to ``image_size`` x ``image_size`` pixels; None keeps the files' size.
    """
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise UserFacingError(f"folder={directory} is not a directory")
    classes = sorted(p.name for p in directory.iterdir() if p.is_dir())
    files = _image_files(directory, classes)
    if not files:
        raise UserFacingError(f"folder={directory} holds no images in class folders (<class>/*.jpg, *.png, ...)")
    source = ImageFolderSource(str(directory), image_size=image_size)
    say(f"decoding the {len(files)} images under {directory}")
    images, labels = source._decode(files, _DecodeProgress(len(files)))
    empty = torch.zeros((0, *images.shape[1:]), dtype=torch.uint8)
    return ImageArrays(train_images=empty, train_labels=torch.zeros(0, dtype=torch.int64),
                       test_images=torch.from_numpy(images), test_labels=torch.from_numpy(labels), classes=classes)


class _DecodeProgress:
    """Counts decoded images and says once, after ``ESTIMATE_AFTER`` of them, how long the rest
    will take (two clock reads in all; nothing per image but a counter)."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.start = total, 0, time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def step(self) -> None:
        self.done += 1
        if self.done == ESTIMATE_AFTER and self.total > ESTIMATE_AFTER:
            elapsed = self.elapsed()
            say(f"decoded {self.done} of {self.total} images in {elapsed:.1f} s: about "
                f"{seconds_left(self.done, self.total, elapsed):.0f} s left")
