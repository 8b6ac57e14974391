"""TensorBoard tags sort in network order; the heat map labels every layer, deep nets too."""

from __future__ import annotations

import numpy as np
import pytest

from residual_lab.callbacks.figures import ROW_INCHES, grad_norm_heatmap
from residual_lab.models import MLP, CifarResNet, ResNet18, VisionTransformer
from residual_lab.models.layer_names import blocks, sortable, weighted_layers


NETS = {
    "resnet110-projection": lambda: CifarResNet(depth=110, shortcut="projection"),
    "plain-56": lambda: CifarResNet(depth=56, shortcut="none"),
    "resnet18": lambda: ResNet18(depth=18, shortcut="projection"),
    "mlp-24": lambda: MLP(depth=24, shortcut="identity", block="basic", width=8, norm="batch"),
    "vit-12": lambda: VisionTransformer(depth=12, shortcut="identity", block="preln", width=32, norm="layer"),
}


@pytest.mark.parametrize("name", NETS)
def test_tensorboard_tags_sort_in_network_order(name):
    net = NETS[name]()
    for tags in ([t for t, _ in weighted_layers(net)], [t for t, _ in blocks(net)]):
        tb = sortable(tags)
        assert sorted(tb) == tb and len(set(tb)) == len(tb)


def test_sortable_tags_are_readable_and_the_same_for_plain_and_residual_twins():
    assert sortable(["stem.conv", "s1.b0.conv1", "s1.b10.conv2", "s2.b0.shortcut.conv", "head.fc"]) == [
        "0_stem.conv", "1_s1.b00.conv1", "1_s1.b10.conv2", "2_s2.b00.shortcut.conv", "9_head.fc"]
    # Projection shortcuts add layers; every layer the plain net also has keeps its tag, so the
    # two runs overlay in TensorBoard.
    plain = [t for t, _ in weighted_layers(CifarResNet(depth=56, shortcut="none"))]
    projection = [t for t, _ in weighted_layers(CifarResNet(depth=56, shortcut="projection"))]
    assert len(projection) == len(plain) + 2
    assert set(sortable(plain)) < set(sortable(projection))


@pytest.mark.parametrize("depth", [56, 110])
def test_heat_map_labels_every_layer_legibly(depth):
    layers = [t for t, _ in weighted_layers(CifarResNet(depth=depth, shortcut="none"))]
    fig = grad_norm_heatmap(list(range(0, 300, 50)), layers, np.full((6, len(layers)), 1e-2), "plain")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == layers
    assert fig.get_size_inches()[1] >= ROW_INCHES * len(layers)  # >= 0.12 in per label at 6 pt
    assert {t.get_fontsize() for t in ax.get_yticklabels()} == {6.0}
