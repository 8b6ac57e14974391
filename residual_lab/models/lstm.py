"""A stack of LSTM layers reading an image row by row, plain or residual.

The image is a sequence of its 32 rows, each row's 3 x 32 pixels one 96-feature step; a
linear layer embeds them into ``width`` features, ``depth`` LSTM layers follow, and the
classifier reads the last step. ``shortcut=identity`` adds each layer's input to its output
(Wu et al. 2016, GNMT sec. 3.1, eq. 6), ``shortcut=none`` is the plain stack whose training,
GNMT reports, "works well up to 4 layers, barely with 6, and very poorly beyond 8".
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Iterator

import torch
from torch import nn

from residual_lab.models.blocks import _Block
from residual_lab.models.layers import check_choice

LSTM_SHORTCUTS = ("none", "identity")


class LSTMLayer(nn.Module):
    """One LSTM layer over a whole sequence: ``nn.LSTM``'s equations, kernel and initialisation.

    The gate weights live in two ``nn.Linear`` (``ih``: input, ``hh``: recurrent; gates
    i, f, g, o as in ``nn.LSTM``) so the diagnostics track them like any layer (``nn.LSTM``
    keeps them as loose parameters); the forward passes them to the fused kernel
    ``nn.LSTM`` itself calls (``torch._VF.lstm``), about 4x faster on a CPU than a Python
    loop over the steps (151 vs 579 ms forward+backward, batch 128, 32 steps, width 128,
    1 thread, on our loaded 2-core CPU).

    Args:
        width: input and hidden features (equal, so the identity shortcut fits).
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width = width
        # nn.Linear's default init, U(+-1/sqrt(width)) on weights and biases, is nn.LSTM's.
        self.ih = nn.Linear(width, 4 * width)
        self.hh = nn.Linear(width, 4 * width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h0 = x.new_zeros(1, x.shape[0], self.width)  # (layers, batch, width), as are c0
        weights = [self.ih.weight, self.hh.weight, self.ih.bias, self.hh.bias]
        # Arguments as nn.LSTM.forward passes them: has_biases, num_layers, dropout, train,
        # bidirectional, batch_first. Returns (output, h_n, c_n).
        return torch._VF.lstm(x, (h0, h0), weights, True, 1, 0.0, self.training, False, True)[0]


class LSTMStack(nn.Module):
    """Plain or residual LSTM stack on images read as sequences of rows.

    Args:
        depth: LSTM layers (each one block ``blocks.<j>``, tag ``b<j>``).
        shortcut: ``none`` (plain stack) or ``identity`` (GNMT's residual connections).
        block: ``basic`` only.
        width: hidden features of every layer.
        norm: ``none`` only (GNMT's stacks have no normalisation).
        num_classes: classifier outputs.
        row_features: features per step (3 channels x 32 pixels = 96).
    """

    def __init__(self, *, depth: int, shortcut: str, block: str, width: int, norm: str,
                 num_classes: int = 10, row_features: int = 3 * 32) -> None:
        super().__init__()
        check_choice("shortcut", shortcut, LSTM_SHORTCUTS)
        check_choice("block", block, {"basic"})
        check_choice("norm", norm, {"none"})
        if depth < 1:
            raise ValueError(f"depth {depth} must be >= 1 LSTM layer")
        self.depth, self.shortcut, self.block, self.norm = depth, shortcut, block, norm
        self.stem = nn.Sequential(OrderedDict(proj=nn.Linear(row_features, width)))
        self.blocks = nn.Sequential(*[_Block(None if shortcut == "none" else nn.Identity(), LSTMLayer(width), None)
                                      for _ in range(depth)])
        self.head = nn.Sequential(OrderedDict(fc=nn.Linear(width, num_classes)))
        self.num_features = width

    def named_blocks(self) -> Iterator[tuple[str, nn.Module]]:
        """LSTM layers in network order, named ``blocks.<j>`` (tags ``b0``, ``b1``, ...)."""
        for j, blk in enumerate(self.blocks):
            yield f"blocks.{j}", blk

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.permute(0, 2, 1, 3).flatten(2)  # (batch, 32 rows, 3 * 32 features), NCHW order
        return self.blocks(self.stem(rows))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x[:, -1])  # the last step has read the whole image

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def extra_repr(self) -> str:
        return f"depth={self.depth}, shortcut={self.shortcut}"
