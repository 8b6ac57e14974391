"""CIFAR-10/100 through torchvision, with an offline failure that says what to do."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from residual_lab.data.arrays import ImageArrays
from residual_lab.errors import DataUnavailableError

_DATASETS = {"cifar10": "CIFAR10", "cifar100": "CIFAR100"}
_CLASSES = {"cifar10": 10, "cifar100": 100}


class TorchvisionCIFAR:
    """CIFAR-10 or CIFAR-100 in torchvision's pickled format, downloaded when missing.

    Args:
        name: ``cifar10`` or ``cifar100``.
        root: directory holding (or to receive) ``cifar-10-batches-py``.
        download: fetch the archive when it is not under ``root``.
    """

    def __init__(self, name: str, root: str, download: bool = True) -> None:
        if name not in _DATASETS:
            raise ValueError(f"unknown torchvision dataset {name!r}; valid: {', '.join(_DATASETS)}")
        self.name, self.root, self.download = name, Path(root).expanduser(), download

    @property
    def num_classes(self) -> int:
        """Classes, known from the name (``data.num_classes`` reads it; nothing is loaded)."""
        return _CLASSES[self.name]

    def _split(self, train: bool):
        import torchvision.datasets as tvd

        cls = getattr(tvd, _DATASETS[self.name])
        try:
            ds = cls(str(self.root), train=train, download=self.download)
        except Exception as err:  # URLError, socket errors, RuntimeError("Dataset not found")
            raise DataUnavailableError(
                f"{self.name} was not found under data.root={self.root} and could not be "
                f"downloaded ({type(err).__name__}: {err}). If you have a copy, point data.root "
                f"at the directory that holds it (e.g. data.root=/path/to/dir containing "
                f"{cls.base_folder}); for an image-folder copy (train/<class>/*.jpg, "
                f"test/<class>/*.jpg) use data=imagefolder data.root=/path/to/copy; to try "
                f"the pipeline offline use data=synthetic or experiment=smoke."
            ) from None
        images = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
        return images, torch.as_tensor(ds.targets, dtype=torch.int64), list(ds.classes)

    def load(self) -> ImageArrays:
        train_x, train_y, classes = self._split(True)
        test_x, test_y, _ = self._split(False)
        return ImageArrays(train_x, train_y, test_x, test_y, classes)
