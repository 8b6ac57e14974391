"""Lightning callbacks, one file each."""

from residual_lab.callbacks.base import IntervalCallback
from residual_lab.callbacks.block_grad import BlockInputGradients
from residual_lab.callbacks.figures import DiagnosticFigures
from residual_lab.callbacks.grad_norm import GradNorms
from residual_lab.callbacks.progress import ProgressBar
from residual_lab.callbacks.resources import ResourceMonitor
from residual_lab.callbacks.block_rms import BlockRMS
from residual_lab.callbacks.train_speed import TrainSpeed
from residual_lab.callbacks.train_split_error import TrainSplitError
from residual_lab.callbacks.update_ratio import UpdateRatio

__all__ = ["BlockInputGradients", "DiagnosticFigures", "BlockRMS", "GradNorms", "IntervalCallback",
           "ProgressBar", "ResourceMonitor", "TrainSpeed", "TrainSplitError", "UpdateRatio"]
