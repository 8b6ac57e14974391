"""Norm-free inits (model.init=skipinit|rezero|fixup): what each starts as, and that other
nets' state_dict keys (so their checkpoints) do not change."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from residual_lab.models import CifarResNet
from residual_lab.models.init import ScalarBias, ScalarScale
from residual_lab.probes import lesion


def test_default_nets_keep_their_state_dict_keys():
    net = CifarResNet(depth=8, shortcut="identity", width=4)
    assert not any("gate" in k or "bias_" in k or "scale" in k for k in net.state_dict())
    CifarResNet(depth=8, shortcut="identity", width=4).load_state_dict(net.state_dict(), strict=True)


@pytest.mark.parametrize("init", ["skipinit", "rezero"])
def test_gated_nets_start_as_their_shortcuts(init):
    torch.manual_seed(0)
    net = CifarResNet(depth=14, shortcut="identity", width=4, norm="none", init=init).eval()
    gates = [blk.gate for _, blk in net.named_blocks()]
    assert len(gates) == 6 and all(g.item() == 0 and g.requires_grad for g in gates)
    # Nothing after the sum in either (SkipInit since 2026-12-03, as the reference SkipInit ResNet).
    assert all(blk.act is None for _, blk in net.named_blocks())
    x = torch.randn(2, 3, 16, 16)
    if init == "skipinit":  # the reference's zero classifier: logits 0, no gradient reaches the gates
        out = net(x)
        out.sum().backward()
        assert torch.equal(out, torch.zeros_like(out)) and all(g.grad.item() == 0 for g in gates)
        with torch.no_grad():  # as after the first step, which moves the classifier only
            net.head.fc.weight.normal_()
    with lesion.removed(net, [n for n, _ in net.named_blocks()]):
        bare = net(x)
    out = net(x)
    torch.testing.assert_close(out, bare)
    net.zero_grad()
    out.sum().backward()
    assert all(g.grad.abs().item() > 0 for g in gates)  # the gates learn once the classifier is non-zero


@pytest.mark.parametrize("norm", ["none", "batch"])
def test_rezero_block_is_the_authors_alpha_times_relu_of_the_branch_plus_x(norm):
    """The ReZero authors' CIFAR ResNet (tbachlechner/ReZero-examples, ReZNet notebook):
    ``resweight * relu(bn2(conv2(relu(bn1(conv1(x)))))) + shortcut(x)``, the skip *after* the
    nonlinearity and none after the sum, so a negative gate makes the output negative."""
    torch.manual_seed(0)
    net = CifarResNet(depth=8, shortcut="identity", width=4, norm=norm, init="rezero").eval()
    net.reset_parameters()  # idempotent: one ReLU at the end of each branch, not two
    _, blk = next(iter(net.named_blocks()))  # stage 1, block 0: 4 -> 4 channels, identity shortcut
    with torch.no_grad():
        blk.gate.fill_(-0.5)
    x = torch.randn(2, 4, 8, 8)
    r = blk.residual
    bn1, bn2 = (nn.Identity(), nn.Identity()) if norm == "none" else (r.bn1, r.bn2)
    by_hand = x + -0.5 * torch.relu(bn2(r.conv2(torch.relu(bn1(r.conv1(x))))))
    torch.testing.assert_close(blk(x), by_hand)
    assert (blk(x) < 0).any()


def test_fixup_follows_the_papers_three_rules():
    torch.manual_seed(0)
    net = CifarResNet(depth=56, shortcut="identity", norm="none", init="fixup")
    blocks = [blk for _, blk in net.named_blocks()]
    L = len(blocks)
    assert L == 27
    for blk in blocks:
        # The first bias sits before the split where the shortcut reshapes (the authors'
        # downsample(x + bias1a); tests/models/test_reference_inits.py), on the branch elsewhere.
        shared = [type(m).__name__ for m in (blk.preact or [])]
        assert shared == ([] if isinstance(blk.shortcut, nn.Identity) else ["ScalarBias"])
        kinds = shared + [type(m).__name__ for m in blk.residual]
        assert kinds == ["ScalarBias", "Conv2d", "ScalarBias", "ReLU", "ScalarBias", "Conv2d", "ScalarScale", "ScalarBias"]
        assert torch.count_nonzero(blk.residual.conv2.weight) == 0  # rule 1: last layer of the branch
    assert torch.count_nonzero(net.head.fc.weight) == 0 and torch.count_nonzero(net.head.fc.bias) == 0
    # rule 2: He-normal (fan_out, as the authors' code) scaled by L^(-1/(2m-2)), m = 2:
    # std sqrt(2 / fan_out) / sqrt(L)
    w = torch.cat([blk.residual.conv1.weight.flatten() for blk in blocks[:9]])  # stage 1: fan_out 16*9
    assert w.std().item() == pytest.approx((2 / 144) ** 0.5 / L ** 0.5, rel=0.03)
    # rule 3: scalar biases at 0, multipliers at 1
    assert all(m.bias.item() == 0 for m in net.modules() if isinstance(m, ScalarBias))
    assert all(m.weight.item() == 1 for m in net.modules() if isinstance(m, ScalarScale))
    assert isinstance(net.head.bias_fc, ScalarBias)
    net.reset_parameters()  # idempotent: no second set of biases
    assert sum(isinstance(m, ScalarBias) for m in blocks[0].residual) == 4


@pytest.mark.parametrize("init", ["skipinit", "rezero", "fixup"])
def test_norm_free_inits_refuse_plain_nets(init):
    with pytest.raises(ValueError, match="plain net"):
        CifarResNet(depth=8, shortcut="none", width=4, norm="none", init=init)


def test_fixup_refuses_batch_norm():
    with pytest.raises(ValueError, match="norm=none"):
        CifarResNet(depth=8, shortcut="identity", width=4, init="fixup")


def test_fixup_trains_a_step():
    torch.manual_seed(0)
    net = CifarResNet(depth=8, shortcut="identity", width=4, norm="none", init="fixup")
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y = torch.randn(8, 3, 16, 16), torch.arange(8)
    losses = []
    for _ in range(3):
        loss = nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(torch.log(torch.tensor(10.0)).item())  # zero classifier: uniform
    assert losses[-1] < losses[0]
