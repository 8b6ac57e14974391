"""The fx plain twin computes exactly what a plain net written by hand computes.

The proof that the pass is right: same weights, same input, bitwise equal outputs
(the assertion prints the largest absolute difference), and one removed addition per block.
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock

from residual_lab.models import CifarResNet, plain_twin
from residual_lab.models.plain_twin import ResidualAdd, TraceError, find_residual_adds


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


class HandPlainBasicBlock(nn.Module):
    """torchvision's BasicBlock with the shortcut deleted in code: no ``downsample``, no ``+= identity``."""

    def __init__(self, block: BasicBlock) -> None:
        super().__init__()
        self.conv1, self.bn1, self.relu = block.conv1, block.bn1, block.relu
        self.conv2, self.bn2 = block.conv2, block.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))


def hand_plain_resnet18(net: torchvision.models.ResNet) -> torchvision.models.ResNet:
    """A copy of ``net`` whose blocks are :class:`HandPlainBasicBlock` (same weight tensors)."""
    import copy

    plain = copy.deepcopy(net)
    for layer in (plain.layer1, plain.layer2, plain.layer3, plain.layer4):
        for i, block in enumerate(layer):
            layer[i] = HandPlainBasicBlock(block)
    return plain


def randomize_batch_norm(net: nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics and affine parameters, so eval mode is not an identity."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_torchvision_resnet18_twin_equals_the_hand_built_plain_net(mode):
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10)
    randomize_batch_norm(net)
    twin, hand = plain_twin(net), hand_plain_resnet18(net)
    assert hand.load_state_dict(twin.state_dict(), strict=True)  # same parameters, same names
    x = torch.randn(4, 3, 64, 64)
    for m in (twin, hand, net):
        m.train(mode == "train")
    with torch.no_grad():
        out_twin, out_hand, out_net = twin(x), hand(x), net(x)
    diff = max_abs_diff(out_twin, out_hand)
    assert torch.equal(out_twin, out_hand), f"fx twin vs hand-built plain ResNet-18: max |diff| = {diff:.3e}"
    # ... and it is not simply the residual net: the skips mattered.
    assert max_abs_diff(out_twin, out_net) > 1e-3, "the twin computes what the residual net computes"


@pytest.mark.parametrize("block,depth", [("basic", 14), ("bottleneck", 11), ("preact", 8)])
def test_cifar_resnet_twin_equals_our_shortcut_none_net(block, depth):
    torch.manual_seed(0)
    residual = CifarResNet(depth=depth, shortcut="identity", block=block)  # option A: zero-pad skips
    plain = CifarResNet(depth=depth, shortcut="none", block=block)
    randomize_batch_norm(residual)
    assert plain.load_state_dict(residual.state_dict(), strict=True)
    twin = plain_twin(residual)
    x = torch.randn(4, 3, 32, 32)
    for mode in (True, False):
        for m in (twin, plain):
            m.train(mode)
        with torch.no_grad():
            out_twin, out_plain = twin(x), plain(x)
        diff = max_abs_diff(out_twin, out_plain)
        assert torch.equal(out_twin, out_plain), \
            f"fx twin of {block} ResNet-{depth} (identity) vs shortcut=none, train={mode}: max |diff| = {diff:.3e}"


def test_option_a_zero_pad_skips_are_found_and_removed():
    net = CifarResNet(depth=14, shortcut="identity")  # 2 blocks per stage; stages 2 and 3 start with zero-pad
    adds = find_residual_adds(net)
    skips = [a.skip for a in adds]
    assert skips.count("projection") == 2, skips  # ZeroPadShortcut is traced into slicing and F.pad
    # option A's zero-pad holds no parameters and is traced into functions; the nn.Identity
    # skips of the other 4 blocks are modules the twin no longer calls
    assert plain_twin(net).residual_adds.removed_modules == tuple(
        f"stages.{i}.blocks.{j}.shortcut" for i, j in [(0, 0), (0, 1), (1, 1), (2, 1)])


@pytest.mark.parametrize("factory,blocks", [("resnet18", 8), ("resnet50", 16)])
def test_removed_additions_equal_the_number_of_blocks_torchvision(factory, blocks):
    net = getattr(torchvision.models, factory)(num_classes=10)
    report = plain_twin(net).residual_adds
    assert len(report.removed) == len(report.blocks) == blocks
    assert report.blocks == [f"layer{i}.{j}" for i, layer in enumerate(
        (net.layer1, net.layer2, net.layer3, net.layer4), 1) for j in range(len(layer))]
    # the projections (downsample) are deleted: 3 in ResNet-18, 4 in ResNet-50 (layer1 too)
    assert list(report.removed_modules) == [f"layer{i}.0.downsample" for i in
                                            (range(2, 5) if factory == "resnet18" else range(1, 5))]


def test_removed_additions_equal_the_number_of_blocks_cifar_resnet():
    net = CifarResNet(depth=20, shortcut="identity")
    report = plain_twin(net).residual_adds
    assert len(report.removed) == len(list(net.named_blocks())) == 9
    assert report.blocks == [name for name, _ in net.named_blocks()]


def test_plain_net_has_nothing_to_remove():
    assert find_residual_adds(CifarResNet(depth=20, shortcut="none")) == []


def test_timm_resnet_and_vit():
    timm = pytest.importorskip("timm")
    resnet = timm.create_model("resnet18", num_classes=10)
    report = plain_twin(resnet).residual_adds
    assert len(report.removed) == len(report.blocks) == 8
    vit = timm.create_model("vit_tiny_patch16_224", num_classes=10, img_size=32, patch_size=4, depth=3)
    twin = plain_twin(vit)
    report = twin.residual_adds
    # each Transformer layer holds two residual additions (attention, MLP); x + pos_embed is not one
    assert len(report.removed) == 6 and report.blocks == ["blocks.0", "blocks.1", "blocks.2"]
    assert report.removed[1] == ResidualAdd("blocks.0", 1, "identity", "blocks.0.drop_path2")
    assert twin.state_dict().keys() == vit.state_dict().keys()
    vit.eval(), twin.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert max_abs_diff(twin(x), vit(x)) > 1e-3


class DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # control flow on a value: fx cannot trace it
            return x + self.fc(x)
        return self.fc(x)


def test_untraceable_model_says_why_and_how_to_write_the_twin():
    with pytest.raises(TraceError, match=r"torch.fx cannot trace DataDependent \(TraceError: symbolically traced "
                                         r"variables cannot be used as inputs to control flow\).*by hand"):
        plain_twin(DataDependent())


def test_untraceable_top_level_falls_back_to_its_children():
    class Wrapper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = CifarResNet(depth=8, shortcut="identity")

        def forward(self, x):
            return self.body(x) if x.sum() != 0 else self.body(-x)

    net = Wrapper()
    twin = plain_twin(net)
    assert twin.residual_adds.blocks == [f"body.stages.{i}.blocks.0" for i in range(3)]
    assert twin.residual_adds.untraced == ("Wrapper: TraceError: symbolically traced variables cannot be used "
                                           "as inputs to control flow",)
    plain = CifarResNet(depth=8, shortcut="none")
    plain.load_state_dict(net.body.state_dict())
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(twin(x), plain(x))


class NotResiduals(nn.Module):
    """Additions that are not residual joins, and one that is (the last)."""

    def __init__(self) -> None:
        super().__init__()
        self.pos = nn.Parameter(torch.zeros(4))
        self.a, self.b, self.c = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos                                  # no common fork
        x = x + 1                                         # a constant
        x = x + 0.044715 * x * x * x                      # computed from x, but nothing learned
        x = torch.add(x, self.a(x), alpha=2)              # a scaled sum
        x = self.a(x) + self.b(x)                         # two equally long branches
        return x + self.c(x)                              # the residual


def test_only_residual_joins_are_found():
    assert find_residual_adds(NotResiduals()) == [ResidualAdd("", 0, "identity", "c")]
