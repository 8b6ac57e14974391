"""lesion: removing a block equals zeroing its residual branch; reorders restore; tau by hand."""

from __future__ import annotations

import math

import pytest
import torch
from probe_helpers import options, tiny_net
from torch import nn

from residual_lab.probes import lesion


def _zero_last_layer(blk: nn.Module) -> None:
    """Make F(x) = 0: zero the scale and shift of the branch's last BN (or its last conv)."""
    last = [m for m in blk.residual if isinstance(m, (nn.BatchNorm2d, nn.Conv2d))][-1]
    for p in last.parameters():
        p.data.zero_()


@pytest.mark.parametrize("shortcut,block,norm", [("identity", "basic", "batch"), ("projection", "basic", "batch"),
                                                 ("identity", "preact", "batch"), ("identity", "basic", "none")])
@pytest.mark.parametrize("index", [0, 1])  # stage 1's first block; stage 2's, which downsamples
def test_removing_a_block_equals_zeroing_its_branch(shortcut, block, norm, index):
    net = tiny_net(shortcut=shortcut, block=block, norm=norm)
    name = list(dict(net.named_blocks()))[index]
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        before = net(x)
        with lesion.removed(net, [name]):
            lesioned = net(x)
        assert torch.equal(net(x), before)  # the context restores the block
        _zero_last_layer(dict(net.named_blocks())[name])
        zeroed = net(x)
    assert not torch.allclose(lesioned, before)
    torch.testing.assert_close(lesioned, zeroed, rtol=0, atol=1e-6)


def test_plain_blocks_are_removed_as_identity_only_where_the_shape_allows():
    net = tiny_net(shortcut="none")
    assert [lesion.removable(b) for _, b in net.named_blocks()] == [True, False, False]
    with pytest.raises(ValueError, match="changes the shape"):
        with lesion.removed(net, ["stages.1.blocks.0"]):
            pass


def test_reordered_swaps_and_restores():
    net = tiny_net(depth=14)  # 2 blocks per stage
    names = [n for n, _ in net.named_blocks()]
    blocks = dict(net.named_blocks())
    order = [names[1], names[0], *names[2:]]
    with lesion.reordered(net, order):
        now = dict(net.named_blocks())
        assert now[names[0]] is blocks[names[1]] and now[names[1]] is blocks[names[0]]
    assert all(dict(net.named_blocks())[n] is blocks[n] for n in names)


def test_kendall_tau_by_hand():
    assert lesion.kendall_tau([0, 1, 2, 3]) == 1
    assert lesion.kendall_tau([3, 2, 1, 0]) == -1
    assert lesion.kendall_tau([1, 0, 2, 3]) == pytest.approx(4 / 6)  # 5 concordant, 1 discordant of 6


@pytest.mark.parametrize("shortcut", ["identity", "none"])
def test_analyze_is_finite_and_shaped(data, shortcut):
    net = tiny_net(depth=14, shortcut=shortcut)
    out = lesion.analyze(net, data, options("lesion", draws=2), trained=True)
    n = 6
    assert len(out["single"]) == n and out["images"] == 24
    removable = sum(out["removable"])
    assert removable == (n if shortcut == "identity" else 4)
    assert [e is None for e in out["single"]] == [not r for r in out["removable"]]
    assert out["random"]["k"] == list(range(1, removable + 1))
    assert all(math.isfinite(e) for row in out["random"]["errors"] for e in row)
    assert len(out["swap"]["tau"]) == len(out["swap"]["error"]) > 0
    assert all(-1 <= t <= 1 for t in out["swap"]["tau"]) and min(out["swap"]["tau"]) < 1  # k swaps may undo each other
    assert set(lesion.figures(out)) == {"errors"}
