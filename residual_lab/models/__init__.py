"""Plain ``nn.Module`` networks (no Lightning): blocks, shortcuts and the CIFAR ResNet."""

from residual_lab.models.blocks import BLOCKS
from residual_lab.models.layers import NORM_LAYERS
from residual_lab.models.resnet import CifarResNet, blocks_per_stage
from residual_lab.models.shortcuts import SHORTCUTS, ProjectionShortcut, ZeroPadShortcut

__all__ = ["BLOCKS", "NORM_LAYERS", "SHORTCUTS", "CifarResNet", "ProjectionShortcut",
           "ZeroPadShortcut", "blocks_per_stage"]
