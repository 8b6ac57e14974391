"""Shared by the probe tests: tiny nets (width 4, 16x16 images), a fake in-memory data module, and each
probe's real options (conf/analyze/<name>.yaml) shrunk."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from residual_lab.models import CifarResNet
from residual_lab.run import CONFIG_DIR


class FakeData:
    """What the probes read of an InMemoryDataModule: ``setup()``, ``splits``, ``mean``, ``std``."""

    def __init__(self, n: int = 24, size: int = 16, num_classes: int = 10) -> None:
        g = torch.Generator().manual_seed(0)
        self.splits = {s: (torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8),
                           torch.arange(n) % num_classes) for s in ("train", "val", "test")}
        self.mean, self.std = torch.full((3,), 0.5), torch.full((3,), 0.25)

    def setup(self, stage: str | None = None) -> None:
        pass


def options(name: str, **overrides) -> DictConfig:
    """conf/analyze/<name>.yaml with ``overrides``."""
    cfg = OmegaConf.load(Path(CONFIG_DIR) / "analyze" / f"{name}.yaml")
    for k, v in overrides.items():
        OmegaConf.update(cfg, k, v)
    return cfg


def tiny_net(**kw) -> CifarResNet:
    """A depth-8 (3 blocks), width-4 net with non-trivial BN statistics, in eval mode."""
    torch.manual_seed(0)
    net = CifarResNet(**{"depth": 8, "shortcut": "identity", "width": 4, **kw})
    for m in net.modules():  # as if trained: BN affine parameters and statistics away from 1/0
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    return net.eval()
