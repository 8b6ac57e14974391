"""landscape: filter-normalised directions; moving and restoring the weights."""

from __future__ import annotations

import math

import torch
from probe_helpers import options, tiny_net

from residual_lab.probes import landscape
from residual_lab.probes.common import evaluate


def test_directions_have_the_weights_per_filter_norms():
    net = tiny_net(shortcut="projection")
    d = landscape.filter_normalized_direction(net, torch.Generator().manual_seed(0))
    assert set(d) == {n for n, _ in net.named_parameters()}
    checked = 0
    for name, p in net.named_parameters():
        if p.dim() <= 1:  # biases, BN scale and shift: zero direction
            assert torch.count_nonzero(d[name]) == 0, name
            continue
        torch.testing.assert_close(d[name].flatten(1).norm(dim=1), p.detach().flatten(1).norm(dim=1))
        assert not torch.allclose(d[name], p)
        checked += 1
    assert checked == 1 + 6 + 2 + 1  # stem, 6 branch convs, 2 projection convs, fc


def test_moved_adds_the_directions_and_restores_exactly():
    net = tiny_net()
    d1, d2 = (landscape.filter_normalized_direction(net) for _ in range(2))
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    with landscape.moved(net, [(0.5, d1), (-2.0, d2)]):
        for n, p in net.named_parameters():
            torch.testing.assert_close(p.detach(), before[n] + 0.5 * d1[n] - 2.0 * d2[n])
    assert all(torch.equal(p, before[n]) for n, p in net.named_parameters())


def test_analyze_is_finite_and_centre_is_the_net(data):
    net = tiny_net()
    opts = options("landscape", images=16, points_1d=3, points_2d=3)
    out = landscape.analyze(net, data, opts, trained=True)
    assert len(out["loss_1d"]) == 3 and len(out["loss_2d"]) == 3 and len(out["loss_2d"][0]) == 3
    assert all(math.isfinite(v) for v in out["loss_1d"] + sum(out["loss_2d"], []))
    from probe_helpers import FakeData  # same 16 images as the probe drew
    from residual_lab.probes.common import images
    x, y = images(FakeData(), "train", 16, seed=0)
    base = evaluate(net, x, y)[0]
    assert out["loss_1d"][1] == base and out["loss_2d"][1][1] == base
    assert set(landscape.figures(out)) == {"line", "contour"}
