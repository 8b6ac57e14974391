"""Pre-activation nets as He et al. 2016 built them (appendix; the authors' resnet-1k-layers code)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from residual_lab.models import CifarResNet

EPS = 1e-5  # BatchNorm2d's default; in eval mode with fresh running stats BN(x) = x / sqrt(1 + eps)


def fresh_bn_relu(x: torch.Tensor) -> torch.Tensor:
    return torch.relu(x / (1 + EPS) ** 0.5)


def zero_last_conv(block: nn.Module) -> None:
    convs = [m for m in block.residual if isinstance(m, nn.Conv2d)]
    nn.init.zeros_(convs[-1].weight)


@pytest.mark.parametrize("block,depth", [("preact", 8), ("preact_bottleneck", 11)])
def test_first_unit_shortcut_carries_the_activated_conv1_output(block, depth):
    # He et al. 2016 appendix: "for the first Residual Unit (that follows a stand-alone
    # convolutional layer, conv1), we adopt the first activation right after conv1 and before
    # splitting into two paths". With the residual branch silenced, the first unit outputs
    # what its shortcut carries: BN-ReLU(conv1), not the raw conv1 output.
    net = CifarResNet(depth=depth, shortcut="identity", block=block).eval()
    first = net.stages[0].blocks[0]
    zero_last_conv(first)
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        out = first(x)
    expected = fresh_bn_relu(x)
    if out.shape[1] > x.shape[1]:  # bottleneck: option A zero-pads 16 -> 64 channels
        expected = torch.cat([expected, torch.zeros(2, out.shape[1] - 16, 8, 8)], 1)
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("block,depth,stage", [("preact", 8, 1), ("preact_bottleneck", 11, 0),
                                               ("preact_bottleneck", 11, 1)])
def test_projection_shortcut_is_a_plain_conv_on_the_shared_preactivation(block, depth, stage):
    # He et al. 2016 appendix: projection shortcuts are "also with pre-activation": the 1x1 conv
    # reads the block's BN-ReLU output and has no BN after it (resnet-pre-act.lua).
    net = CifarResNet(depth=depth, shortcut="projection", block=block).eval()
    unit = net.stages[stage].blocks[0]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in unit.shortcut.modules())
    (proj,) = [m for m in unit.shortcut.modules() if isinstance(m, nn.Conv2d)]
    zero_last_conv(unit)
    x = torch.randn(2, proj.in_channels, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(unit(x), proj(fresh_bn_relu(x)))


def test_identity_units_keep_the_raw_signal_on_the_shortcut():
    # Every other unit: BN-ReLU sits on the residual branch only; the shortcut is a pure identity.
    net = CifarResNet(depth=20, shortcut="identity", block="preact").eval()
    unit = net.stages[0].blocks[1]
    zero_last_conv(unit)
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(unit(x), x)


def test_bottleneck_unit_strides_its_first_1x1_conv_as_the_authors_code_does():
    net = CifarResNet(depth=11, shortcut="projection", block="preact_bottleneck")
    unit = net.stages[1].blocks[0]
    assert unit.residual.conv1.stride == (2, 2) and unit.residual.conv2.stride == (1, 1)
    assert unit.shortcut.conv.stride == (2, 2)


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_preact_164_with_projection_shortcuts_has_the_papers_1_7M_parameters():
    # He et al. 2016 Table 3 / the appendix: ResNet-164 1.7M parameters, projection shortcuts
    # for increasing dimensions, plain 1x1 convs (no BN) on them.
    net = CifarResNet(depth=164, shortcut="projection", block="preact_bottleneck")
    assert n_params(net) == PREACT_164_PARAMS
    assert f"{n_params(net) / 1e6:.1f}M" == "1.7M"


# By hand, n = 18 units a stage (bottleneck planes 16/32/64, outputs 64/128/256):
#   stem conv 3*16*9 = 432
#   stage 1: first unit 256 + 2304 + 1024 convs + 3 BN(16) 96 + projection 16*64 1024 = 4704;
#            17 units x (1024 + 2304 + 1024 + BN 128 + 32 + 32) = 77,248           -> 81,952
#   stage 2: first 2048 + 9216 + 4096 + BN 128 + 64 + 64 + proj 8192 = 23,808;
#            17 x (4096 + 9216 + 4096 + 256 + 64 + 64) = 302,464                   -> 326,272
#   stage 3: first 8192 + 36864 + 16384 + BN 256 + 128 + 128 + proj 32768 = 94,720;
#            17 x (16384 + 36864 + 16384 + 512 + 128 + 128) = 1,196,800            -> 1,291,520
#   head BN(256) 512 + fc 256*10 + 10 = 3,082
# A BN after each of the 3 projections (the code before this fix) adds 896.
PREACT_164_PARAMS = 432 + 81_952 + 326_272 + 1_291_520 + 3_082  # 1,703,258
