"""Helpers every probe shares: test/train images as normalized tensors, error and loss of a
net on them, and BatchNorm statistics for a freshly initialised net."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Annotated, Literal, Optional

import torch
import torch.nn.functional as F
from torch import nn

from residual_lab.data.augment import normalize
from residual_lab.schema import POSITIVE, PositiveInt, Range, at_least

# Types of the options the probes share. Each probe's ``Options`` dataclass lists its keys with
# these (checked before it measures: residual_lab.analyze); conf/analyze/<probe>.yaml holds
# the values and says what they mean.
Split = Literal["train", "val", "test"]
Images = Annotated[Optional[int], at_least(1)]  # null: the whole split
Seed = Annotated[int, at_least(0)]
Positive = Annotated[float, POSITIVE]
#: Points on a line with both its ends: one point has no line (linspace gives the low end alone).
LinePoints = Annotated[int, Range(lambda v: v >= 2, ">= 2 (a line needs both ends)")]


@dataclass
class SampledOptions:
    """The keys of a probe that measures on a seeded subset of a split's images, in batches."""

    name: str
    split: Split
    images: Images
    seed: Seed
    batch_size: PositiveInt


def images(datamodule, split: str = "test", n: int | None = None, seed: int = 0,
           device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images of ``split`` (all if None; a seeded random subset otherwise, in random
    order), normalized with the training split's statistics as in training, no augmentation.

    The subset keeps its random order: image folders load class by class, so a subset in the
    split's order would cut into batches of one or two classes, and a probe that measures per
    batch in training mode (``gradient_noise``) would measure those instead of SGD's batches.

    Args:
        datamodule: an :class:`~residual_lab.data.InMemoryDataModule` (``setup()`` is called).
        split: ``train``, ``val`` or ``test``.
    """
    datamodule.setup()
    x, y = datamodule.splits[split]
    if n is not None and n < len(y):
        idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:n]
        x, y = x[idx.to(x.device)], y[idx.to(y.device)]
    mean, std = datamodule.mean.to(device), datamodule.std.to(device)
    return normalize(x.to(device), mean, std), y.to(device)


def progress(total: int, what: str):
    """A bar on stderr counting an analysis's ``total`` passes over its images (``with
    progress(n, "lesion") as bar: ... bar.update()``): lesion, landscape and hessian run tens to
    hundreds of them, minutes on a CPU, and a silent command looks hung."""
    from tqdm import tqdm

    return tqdm(total=total, desc=what, unit="pass", file=sys.stderr, mininterval=1.0, dynamic_ncols=True)


@torch.no_grad()
def evaluate(net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> tuple[float, float]:
    """Mean cross-entropy loss and top-1 error (%) of ``net`` as it is (train/eval mode untouched)."""
    loss, wrong = 0.0, 0
    for i in range(0, len(y), batch_size):
        out = net(x[i:i + batch_size]).float()
        loss += F.cross_entropy(out, y[i:i + batch_size], reduction="sum").item()
        wrong += (out.argmax(1) != y[i:i + batch_size]).sum().item()
    return loss / len(y), 100.0 * wrong / len(y)


@torch.no_grad()
def calibrate_batch_norm(net: nn.Module, x: torch.Tensor) -> None:
    """Set every BatchNorm's running statistics to those of the batch ``x`` (one train-mode
    forward with cumulative averaging), so eval mode normalizes a fresh net as training
    mode would and each input's output depends on that input alone."""
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    saved = [(m.momentum, m.training) for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: after one batch, exactly its statistics
        m.train()
    net(x)
    for m, (momentum, training) in zip(bns, saved):
        m.momentum = momentum
        m.train(training)
