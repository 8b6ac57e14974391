"""The block protocol: every family is a BlockNet of ResidualBlocks and only builds its parts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from residual_lab.models import MLP, BlockNet, CifarResNet, LSTMStack, ResidualBlock, ResNet18, VisionTransformer
from residual_lab.models.lstm import LSTMLayer

FAMILIES = (CifarResNet, ResNet18, MLP, VisionTransformer, LSTMStack)


@pytest.mark.parametrize("cls", FAMILIES, ids=lambda c: c.__name__)
def test_families_build_stem_blocks_and_head_and_share_the_rest(cls):
    assert issubclass(cls, BlockNet)
    own = {name for klass in cls.__mro__[:cls.__mro__.index(BlockNet)] for name in vars(klass)}
    assert not own & {"forward", "forward_features", "forward_head", "named_blocks"}


@pytest.mark.parametrize("net, names", [
    (CifarResNet(depth=8, shortcut="identity", width=4), ["stages.0.blocks.0", "stages.1.blocks.0", "stages.2.blocks.0"]),
    (MLP(depth=6, shortcut="none", block="basic", width=4, norm="none"), ["blocks.0", "blocks.1"]),
    (VisionTransformer(depth=1, shortcut="identity", block="postln", width=4, norm="layer", heads=2),
     ["blocks.0.attn", "blocks.0.mlp"]),
    (LSTMStack(depth=2, shortcut="identity", block="basic", width=4, norm="none"), ["blocks.0", "blocks.1"]),
], ids=["cifar_resnet", "mlp", "vit", "lstm"])
def test_named_blocks_lists_every_residual_block_in_network_order(net, names):
    assert [n for n, _ in net.named_blocks()] == names
    assert all(isinstance(b, ResidualBlock) and net.get_submodule(n) is b for n, b in net.named_blocks())
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(net(x), net.forward_head(net.forward_features(x)), rtol=0, atol=0)


@pytest.mark.parametrize("init", ["skipinit", "rezero", "fixup"])
def test_variants_are_built_with_the_net_and_reset_parameters_only_redraws(init):
    torch.manual_seed(0)
    net = CifarResNet(depth=14, shortcut="projection", width=4, norm="none", init=init)
    layout = [(n, type(m).__name__) for n, m in net.named_modules()]
    state = {k: v.clone() for k, v in net.state_dict().items()}
    torch.manual_seed(0)
    net.reset_parameters()
    assert [(n, type(m).__name__) for n, m in net.named_modules()] == layout
    assert list(net.state_dict()) == list(state)


def test_lstm_layer_is_nn_lstm_bit_for_bit_forward_and_backward():
    torch.manual_seed(0)
    ref, layer = nn.LSTM(8, 8, batch_first=True), LSTMLayer(8)
    with torch.no_grad():
        for mine, theirs in ((layer.ih, "ih_l0"), (layer.hh, "hh_l0")):
            mine.weight.copy_(getattr(ref, f"weight_{theirs}"))
            mine.bias.copy_(getattr(ref, f"bias_{theirs}"))
    x = torch.randn(3, 32, 8)
    out, want = layer(x), ref(x)[0]
    assert torch.equal(out, want)
    out.square().sum().backward()
    want.square().sum().backward()
    for mine, theirs in ((layer.ih, "ih_l0"), (layer.hh, "hh_l0")):
        assert torch.equal(mine.weight.grad, getattr(ref, f"weight_{theirs}").grad)
        assert torch.equal(mine.bias.grad, getattr(ref, f"bias_{theirs}").grad)
    assert [n for n, _ in layer.named_parameters()] == ["ih.weight", "ih.bias", "hh.weight", "hh.bias"]
