"""CifarResNet: the paper's parameter counts, every option's shapes, and clear errors."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from residual_lab.models import BLOCKS, NORM_LAYERS, SHORTCUTS, CifarResNet, ZeroPadShortcut

# He et al. 2015 Table 6 (option A): 0.27M, 0.46M, 0.66M, 0.85M, 1.7M, 19.4M. Exact counts for
# 10 classes; each rounds to the paper's figure at the digits it shows.
PAPER_PARAMS = {20: (269_722, "0.27M"), 32: (464_154, "0.46M"), 44: (658_586, "0.66M"),
                56: (853_018, "0.85M"), 110: (1_727_962, "1.7M"), 1202: (19_421_274, "19.4M")}

SMALLEST_DEPTH = {"basic": 8, "preact": 8, "bottleneck": 11, "preact_bottleneck": 11}


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("depth", PAPER_PARAMS)
def test_parameter_counts_match_the_paper(depth):
    exact, paper = PAPER_PARAMS[depth]
    count = n_params(CifarResNet(depth=depth, shortcut="identity"))
    assert count == exact
    digits = len(paper.split(".")[1]) - 1
    assert f"{count / 1e6:.{digits}f}M" == paper


@pytest.mark.parametrize("block,shortcut,norm",
                         list(itertools.product(BLOCKS, SHORTCUTS, NORM_LAYERS)))
def test_every_option_runs_forward_and_backward(block, shortcut, norm):
    net = CifarResNet(depth=SMALLEST_DEPTH[block], shortcut=shortcut, block=block, norm=norm,
                      num_classes=7, zero_init_residual=shortcut != "none")
    x = torch.randn(2, 3, 32, 32)
    out = net(x)
    assert out.shape == (2, 7)
    assert net.forward_features(x).shape == (2, net.num_features, 8, 8)
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    has_bn = any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert has_bn == (norm == "batch")


def test_depth_is_6n_plus_2_and_stages_have_paper_widths():
    net = CifarResNet(depth=56, shortcut="none")
    assert [len(s.blocks) for s in net.stages] == [9, 9, 9]
    weighted = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(weighted) == 56
    x = net.stem(torch.randn(1, 3, 32, 32))
    shapes = []
    for stage in net.stages:
        x = stage(x)
        shapes.append(tuple(x.shape[1:]))
    assert shapes == [(16, 32, 32), (32, 16, 16), (64, 8, 8)]


def test_bottleneck_depth_is_9n_plus_2_with_4x_expansion():
    net = CifarResNet(depth=164, shortcut="projection", block="preact_bottleneck")
    assert [len(s.blocks) for s in net.stages] == [18, 18, 18]
    assert net.num_features == 256
    assert round(n_params(net) / 1e6, 1) == 1.7  # He et al. 2016 Table 3: 1.7M


def test_option_a_has_no_shortcut_parameters():
    net = CifarResNet(depth=20, shortcut="identity")
    shortcuts = [b.shortcut for _, b in net.named_blocks()]
    assert all(n_params(s) == 0 for s in shortcuts)
    assert sum(isinstance(s, ZeroPadShortcut) for s in shortcuts) == 2  # first block of stages 2, 3


def test_zero_pad_shortcut_subsamples_and_pads_with_zeros():
    x = torch.arange(2 * 4 * 6 * 6, dtype=torch.float32).reshape(2, 4, 6, 6)
    out = ZeroPadShortcut(4, 8, stride=2)(x)
    assert out.shape == (2, 8, 3, 3)
    assert torch.equal(out[:, :4], x[:, :, ::2, ::2])
    assert torch.equal(out[:, 4:], torch.zeros(2, 4, 3, 3))


@pytest.mark.parametrize("shortcut,extra", [("identity", 0), ("projection", 2), ("full_projection", 9)])
def test_plain_and_residual_have_identical_layers_apart_from_projections(shortcut, extra):
    plain = {k: v.shape for k, v in CifarResNet(depth=20, shortcut="none").state_dict().items()}
    res = {k: v.shape for k, v in CifarResNet(depth=20, shortcut=shortcut).state_dict().items()}
    shared = {k: v for k, v in res.items() if ".shortcut." not in k}
    assert shared == plain
    projections = {k.rsplit(".shortcut.", 1)[0] for k in res if ".shortcut." in k}
    assert len(projections) == extra


def test_zero_init_residual_makes_every_block_start_as_its_shortcut():
    net = CifarResNet(depth=20, shortcut="identity", zero_init_residual=True).eval()
    for _, blk in net.named_blocks():
        x = torch.randn(2, blk.residual[0].in_channels, 8, 8)
        assert torch.equal(blk.residual(x), torch.zeros_like(blk.residual(x)))
        assert torch.equal(blk(x), torch.relu(blk.shortcut(x)))


def test_zero_init_is_refused_by_plain_blocks():
    net = CifarResNet(depth=8, shortcut="none")
    with pytest.raises(RuntimeError, match="plain block"):
        next(net.named_blocks())[1].zero_init_last()


def test_init_is_kaiming_normal_and_bn_is_one_zero():
    torch.manual_seed(0)
    net = CifarResNet(depth=56, shortcut="identity")
    conv = net.stages[1].blocks[0].residual.conv1  # 16 -> 32 channels: fan_in = 16 * 3 * 3
    assert conv.weight.std().item() == pytest.approx((2 / (16 * 9)) ** 0.5, rel=0.05)
    assert net.head.fc.weight.std().item() == pytest.approx((2 / 64) ** 0.5, rel=0.1)
    bn = net.stages[0].blocks[0].residual.bn2
    assert torch.equal(bn.weight, torch.ones(16)) and torch.equal(bn.bias, torch.zeros(16))


@pytest.mark.parametrize("kwargs,message", [
    (dict(depth=57, shortcut="identity"), "depth 57 is not 6n+2 for block=basic; nearest valid depths: 56, 62"),
    (dict(depth=3, shortcut="identity"), "depth 3 is not 6n+2 for block=basic; nearest valid depths: 8"),
    (dict(depth=50, shortcut="identity", block="bottleneck"),
     "depth 50 is not 9n+2 for block=bottleneck; nearest valid depths: 47, 56"),
    (dict(depth=20, shortcut="skip"), "unknown shortcut 'skip'; valid choices: full_projection, identity, none, projection"),
    (dict(depth=20, shortcut="none", block="dense"),
     "unknown block 'dense'; valid choices: basic, bottleneck, preact, preact_bottleneck"),
    (dict(depth=20, shortcut="none", norm="layer"), "unknown norm 'layer'; valid choices: batch, none"),
])
def test_invalid_configs_raise_value_errors_naming_the_choices(kwargs, message):
    with pytest.raises(ValueError) as err:
        CifarResNet(**kwargs)
    assert str(err.value).startswith(message)


def test_constructor_is_keyword_only():
    with pytest.raises(TypeError):
        CifarResNet(20, "identity")  # type: ignore[misc]
