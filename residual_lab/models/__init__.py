"""Plain ``nn.Module`` networks (no Lightning): blocks, shortcuts and the model families.

Every family is a :class:`BlockNet` of :class:`ResidualBlock` (``named_blocks()``, each block's
``residual`` and ``shortcut``, ``forward_features``/``forward_head``;
:mod:`residual_lab.models.protocol`): CifarResNet, ResNet18, MLP, VisionTransformer, LSTMStack. Any other ``nn.Module`` gets its blocks from the residual
additions :func:`plain_twin` finds (:mod:`residual_lab.models.plain_twin`), and runs as
``model=external`` (:mod:`residual_lab.models.external`).
"""

from residual_lab.models.blocks import BLOCKS
from residual_lab.models.layers import NORM_LAYERS
from residual_lab.models.lstm import LSTMStack
from residual_lab.models.mlp import MLP
from residual_lab.models.plain_twin import TwinReport, find_residual_adds, plain_twin
from residual_lab.models.protocol import BlockNet, ResidualBlock
from residual_lab.models.resnet import CifarResNet, blocks_per_stage
from residual_lab.models.resnet18 import ResNet18
from residual_lab.models.shortcuts import SHORTCUTS, ProjectionShortcut, ZeroPadShortcut
from residual_lab.models.vit import VisionTransformer

__all__ = ["BLOCKS", "MLP", "NORM_LAYERS", "SHORTCUTS", "BlockNet", "CifarResNet", "LSTMStack",
           "ProjectionShortcut", "ResNet18", "ResidualBlock", "TwinReport", "VisionTransformer", "ZeroPadShortcut",
           "blocks_per_stage", "find_residual_adds", "plain_twin"]
