"""Any ``train/<class>/*`` + ``test/<class>/*`` image tree, decoded once and cached."""

from __future__ import annotations

import hashlib
import os
import stat
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from residual_lab.data.arrays import ImageArrays
from residual_lab.errors import DataUnavailableError, UserFacingError
from residual_lab.console import say
from residual_lab.io import atomic_write

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp", ".gif", ".tif", ".tiff"}
CACHE_VERSION = 3  # 2: image_size in the key; 3: 16-bit images scaled, the key stored in the cache
#: The environment variable that moves the cache of every image folder (``data.source.cache_dir``
#: still wins): for a data directory on a slow or shared disk, or one that must stay unchanged.
CACHE_ENV = "RESIDUAL_LAB_CACHE"
#: Images decoded before the time left is estimated (the CIFAR-10 copy's 60k take ~30 s on a
#: 2-core CPU, so the estimate comes after about a quarter of a second).
ESTIMATE_AFTER = 500


#: Pixel modes decoded as they are (Pillow converts each to RGB exactly); 16-bit gray is scaled
#: to 8 bits first (:func:`_to_rgb`), anything else (32-bit integer or float pixels) is refused.
EIGHT_BIT_MODES = {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}


def _hidden(name: str) -> bool:
    """Entries a tool left beside the data (``.ipynb_checkpoints/``, ``.DS_Store``, ``._x.jpg``):
    never a class, never an image."""
    return name.startswith(".")


def _to_rgb(im: Image.Image, path: Path) -> Image.Image:
    """The image as 8-bit RGB. Pillow's ``convert("RGB")`` clips 16-bit gray (PNG mode ``I;16``,
    or ``I`` for a PNG) at 255, so such images came out all white: they are scaled by 255/65535."""
    if im.mode.startswith("I;16") or (im.mode == "I" and im.format == "PNG"):  # a PNG holds at most 16 bits
        gray = np.asarray(im, dtype=np.uint32) * 255 // 65535
        return Image.fromarray(gray.astype(np.uint8), "L").convert("RGB")
    if im.mode not in EIGHT_BIT_MODES:
        raise UserFacingError(f"image {path} has {im.mode} pixels (not 8- or 16-bit); save it as an 8-bit "
                              f"PNG or JPEG")
    return im.convert("RGB")  # grayscale: the value in all three channels


def _entries(directory: Path) -> list[os.DirEntry]:
    """The visible entries of ``directory`` by name; an unreadable folder is one sentence."""
    try:
        with os.scandir(directory) as it:
            return sorted((e for e in it if not _hidden(e.name)), key=lambda e: e.name)
    except OSError as err:
        raise UserFacingError(f"cannot read the folder {directory}: {err.strerror}") from None


def _class_dirs(directory: Path) -> list[str]:
    """The class folders of a split (hidden ones left out). A symlink that loops or points
    nowhere is one sentence, not a class silently missing."""
    classes = []
    for entry in _entries(directory):
        try:
            if stat.S_ISDIR(os.stat(entry.path).st_mode):  # follows a symlink; a loop raises
                classes.append(entry.name)
        except OSError as err:
            raise UserFacingError(f"cannot follow {entry.path}: {err.strerror}") from None
    return classes


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
            classes_per_split[split] = _class_dirs(d)
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
        splits = {split: _image_files(self.root / split, train_c) for split in ("train", "test")}
        for split, files in splits.items():
            counts = np.bincount([label for _, label in files], minlength=len(train_c))
            if (empty := [c for c, n in zip(train_c, counts) if n == 0]):
                raise UserFacingError(f"class folder {self.root / split / empty[0]} holds no images"
                                      f"{f' (nor do {len(empty) - 1} more)' if len(empty) > 1 else ''}; a class "
                                      f"without {split} images is never {'learnt' if split == 'train' else 'tested'}")
        return train_c, splits

    def _cache_key(self, splits) -> str:
        """A hash of every file's relative path, label, size and mtime, ``image_size`` and :data:`CACHE_VERSION`."""
        h = hashlib.sha256(f"v{CACHE_VERSION} size={self.image_size}".encode())
        for split, files in splits.items():
            for path, label in files:
                st = path.stat()
                h.update(f"{split}/{path.relative_to(self.root)}:{label}:{st.st_size}:{st.st_mtime_ns}\n".encode())
        return h.hexdigest()

    def _cache_path(self, key: str) -> Path:
        name = f"{self.root.name}-{key[:16]}.npz"
        from_env = os.environ.get(CACHE_ENV)
        base = self.cache_dir or (Path(from_env).expanduser() if from_env else self.root / ".residual_lab_cache")
        if self.cache_dir is None and not from_env and not os.access(self.root, os.W_OK):
            base = Path("~/.cache/residual_lab").expanduser()
        return base / name

    def _decode(self, files: list[tuple[Path, int]], progress: _DecodeProgress,
                like: tuple[Path, tuple[int, ...]] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(images N x 3 x H x W uint8, labels)`` of ``files``; every image the size of the first,
        or of ``like`` (a file of the other split and its H x W x 3 shape): one size across splits."""
        if not files:
            raise UserFacingError("an image folder split has no images")
        first = like[1] if like else None
        images = None
        size = (self.image_size, self.image_size) if self.image_size else None
        for i, (path, _) in enumerate(files):
            try:
                with Image.open(path) as im:
                    im = _to_rgb(im, path)
                    arr = np.asarray(im.resize(size, Image.BILINEAR) if size and im.size != size else im)
            except UserFacingError:
                raise
            except Exception as err:
                raise UserFacingError(f"cannot read image {path}: {err}") from None
            if first is None:
                first = arr.shape
            if images is None and arr.shape == first:
                images = np.empty((len(files), *first), dtype=np.uint8)
            if arr.shape != first:
                raise UserFacingError(f"image {path} is {arr.shape[1]}x{arr.shape[0]} but {(like or files[0])[0]} is "
                                      f"{first[1]}x{first[0]}; set data.source.image_size=N to resize every "
                                      f"image to N x N (e.g. 32)")
            images[i] = arr
            progress.step()
        labels = np.fromiter((label for _, label in files), dtype=np.int64, count=len(files))
        return images.transpose(0, 3, 1, 2).copy(), labels

    def load(self) -> ImageArrays:
        classes, splits = self._scan()
        key = self._cache_key(splits)
        cache = self._cache_path(key)
        total = sum(len(files) for files in splits.values())
        if cache.exists():
            arrays, why = _read_cache(cache, key, {split: len(files) for split, files in splits.items()})
            if arrays is not None:
                say(f"image folder {self.root}: decoded images read from the cache {cache}")
                return ImageArrays(classes=classes, **arrays)
            say(f"the image cache {cache} is unusable ({why}): decoding the {total} images again and "
                f"rewriting it")
        else:
            say(f"decoding the {total} images under {self.root} once; the arrays go to {cache} "
                f"({CACHE_ENV}=<dir> puts them elsewhere)")
        progress = _DecodeProgress(total)
        arrays, like = {}, None
        for split, files in splits.items():
            x, y = self._decode(files, progress, like)
            like = like or (files[0][0], (x.shape[2], x.shape[3], x.shape[1]))
            arrays[f"{split}_images"], arrays[f"{split}_labels"] = torch.from_numpy(x), torch.from_numpy(y)
        try:
            stored = {k: v.numpy() for k, v in arrays.items()} | {"key": np.array(key)}
            atomic_write(cache, lambda f: np.savez(f, **stored), "wb")
            say(f"decoded {total} images in {progress.elapsed():.1f} s; cache {cache} "
                f"({cache.stat().st_size / 1e6:.0f} MB), reused until the files change")
        except OSError as err:
            # A cache we cannot write only costs a re-decode next time.
            say(f"decoded {total} images in {progress.elapsed():.1f} s; no cache ({cache}: {err.strerror}), "
                f"so the next run decodes them again")
        return ImageArrays(classes=classes, **arrays)


def _read_cache(cache: Path, key: str, counts: dict[str, int]) -> tuple[dict[str, torch.Tensor] | None, str]:
    """``(arrays, "")`` from a cache that holds ``key`` and ``counts[split]`` images and labels per
    split, else ``(None, why)``: a truncated or overwritten file, or one of another version."""
    try:
        with np.load(cache) as z:
            if "key" not in z.files or str(z["key"]) != key:
                return None, "written for other files or by another version"
            arrays = {k: torch.from_numpy(z[k]) for k in z.files if k != "key"}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as err:
        return None, f"not a readable cache: {err}"
    for split, n in counts.items():
        images, labels = arrays.get(f"{split}_images"), arrays.get(f"{split}_labels")
        if images is None or labels is None or len(images) != n or len(labels) != n or images.ndim != 4:
            return None, f"{split} split does not hold {n} images"
    return arrays, ""


def _image_files(directory: Path, classes: list[str]) -> list[tuple[Path, int]]:
    """``(path, label)`` of every image in ``directory/<class>/``, classes in the given order."""
    files = []
    for label, cls in enumerate(classes):
        for entry in _entries(directory / cls):
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
    classes = _class_dirs(directory)
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
