"""signal: the four statistics equal a hand computation on a 2-block net."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from residual_lab.models.blocks import BasicBlock
from residual_lab.probes import signal

from probe_helpers import options, tiny_net


class TwoBlockNet(nn.Module):
    """stem conv -> two basic blocks (identity shortcuts, BN) -> pool -> linear."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.stages = nn.Sequential(nn.Sequential(*(BasicBlock(4, 4, shortcut="identity", norm=nn.BatchNorm2d)
                                                    for _ in range(2))))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))

    def named_blocks(self):
        for j, blk in enumerate(self.stages[0]):
            yield f"stages.0.blocks.{j}", blk

    def forward(self, x):
        return self.head(self.stages(self.stem(x)))


def _hand(net: TwoBlockNet, x, y):
    x0 = net.stem(x)
    b0, b1 = net.stages[0]
    x1 = b0(x0)
    x2 = b1(x1)
    loss = F.cross_entropy(net.head(x2), y)
    g0, g1 = torch.autograd.grad(loss, [x0, x1])
    mean_sq = lambda t: t.mean((0, 2, 3)).pow(2).mean().item()  # noqa: E731
    var = lambda t: t.var((0, 2, 3), unbiased=False).mean().item()  # noqa: E731
    rms = lambda g: g.pow(2).mean().sqrt().item()  # noqa: E731
    return {"mean_sq": [mean_sq(x1), mean_sq(x2)], "var": [var(x1), var(x2)],
            "branch_var": [var(b0.residual(x0)), var(b1.residual(x1))], "grad_rms": [rms(g0), rms(g1)],
            "loss": loss.item()}


def test_statistics_equal_a_hand_computation_on_two_blocks():
    net = TwoBlockNet().train()
    x, y = torch.randn(6, 3, 8, 8) * 2 + 0.5, torch.tensor([0, 1, 2, 0, 1, 2])
    hand = _hand(net, x, y)
    got = signal.measure(net, x, y)
    assert got["blocks"] == ["s1.b0", "s1.b1"] and got["stages"] == [0, 0]
    for key in (*signal.KEYS, "loss"):
        assert got[key] == pytest.approx(hand[key], rel=1e-5), key
    assert all(p.grad is None for p in net.parameters())  # the probe leaves no gradients behind


def test_branch_variance_is_measured_before_the_gate():
    """Brock et al. 2021 (nfnets/skipinit_resnet.py, ``res_avg_var``): the branch's average channel
    variance before ``skip_gain``, so SkipInit's branches read their real size at init; the
    gated value, what the block adds to x, is ``branch_var_gated``."""
    net = tiny_net(norm="none", init="skipinit").train()
    x, y = torch.randn(4, 3, 16, 16), torch.arange(4)
    var = lambda t: t.var((0, 2, 3), unbiased=False).mean().item()  # noqa: E731
    for gate in (0.0, -0.5):
        with torch.no_grad():
            for _, blk in net.named_blocks():
                blk.gate.fill_(gate)
            inputs = [net.stem(x)]
            for _, blk in net.named_blocks():
                inputs.append(blk(inputs[-1]))
            hand = [var(blk.residual(h)) for (_, blk), h in zip(net.named_blocks(), inputs)]
        got = signal.measure(net, x, y)
        assert all(v > 0 for v in hand)
        assert got["branch_var"] == pytest.approx(hand, rel=1e-6)
        assert got["branch_var_gated"] == pytest.approx([gate**2 * v for v in hand], rel=1e-6, abs=0)


@pytest.mark.parametrize("shortcut,norm", [("identity", "batch"), ("none", "none")])
def test_analyze_is_finite_with_one_value_per_block(data, shortcut, norm):
    net = tiny_net(shortcut=shortcut, norm=norm)
    out = signal.analyze(net, data, options("signal", batch_size=8), trained=False)
    assert out["bn_mode"] == "train" and out["batch_size"] == 8
    for key in signal.KEYS:
        assert len(out[key]) == 3 and all(math.isfinite(v) for v in out[key])
    assert set(signal.figures(out)) == {"plot"}
