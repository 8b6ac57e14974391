"""Lightning callbacks, one file each."""

from residual_lab.callbacks.base import IntervalCallback
from residual_lab.callbacks.train_speed import TrainSpeed

__all__ = ["IntervalCallback", "TrainSpeed"]
