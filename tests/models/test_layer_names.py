"""Short tags: one mapping from module names, used by every diagnostic."""

from __future__ import annotations

import pytest

from residual_lab.models import CifarResNet
from residual_lab.models.layer_names import blocks, group_of, short_name, weighted_layers
from tests.helpers import RESNET20_LAYERS


@pytest.mark.parametrize("name, tag", [
    ("stem.conv", "stem.conv"),
    ("head.fc", "head.fc"),
    ("stages.0.blocks.0.residual.conv1", "s1.b0.conv1"),
    ("stages.2.blocks.8.residual.bn2", "s3.b8.bn2"),
    ("stages.1.blocks.0.shortcut.conv", "s2.b0.shortcut.conv"),
    ("stages.1.blocks.4", "s2.b4"),
])
def test_short_name(name, tag):
    assert short_name(name) == tag


def test_resnet20_option_a_has_19_convs_and_1_linear_in_network_order():
    net = CifarResNet(depth=20, shortcut="identity")
    tags = [tag for tag, _ in weighted_layers(net)]
    assert tags == RESNET20_LAYERS and len(tags) == 20
    assert [tag for tag, _ in blocks(net)] == [f"s{s}.b{b}" for s in (1, 2, 3) for b in range(3)]
    assert [group_of(t) for t in ("stem.conv", "s2.b0.shortcut.conv", "head.fc")] == ["stem", "s2", "head"]


def test_projection_shortcut_follows_its_residual_branch():
    tags = [tag for tag, _ in weighted_layers(CifarResNet(depth=8, shortcut="projection"))]
    assert tags == ["stem.conv", "s1.b0.conv1", "s1.b0.conv2",
                    "s2.b0.conv1", "s2.b0.conv2", "s2.b0.shortcut.conv",
                    "s3.b0.conv1", "s3.b0.conv2", "s3.b0.shortcut.conv", "head.fc"]


def test_compiled_nets_are_recognised_so_hook_diagnostics_can_stand_down():
    from residual_lab.models.layer_names import compiled

    net = CifarResNet(depth=8, shortcut="identity")
    assert not compiled(net)
    net.compile()  # lazy: nothing is traced until the first forward
    assert compiled(net)
