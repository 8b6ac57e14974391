"""Data sources and the in-memory DataModule."""

from residual_lab.data.arrays import ImageArrays
from residual_lab.data.datamodule import InMemoryDataModule
from residual_lab.data.image_folder import ImageFolderSource
from residual_lab.data.synthetic import SyntheticSource
from residual_lab.data.torchvision_cifar import TorchvisionCIFAR

__all__ = ["ImageArrays", "ImageFolderSource", "InMemoryDataModule", "SyntheticSource", "TorchvisionCIFAR"]
