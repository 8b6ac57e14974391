"""shatter: batched input gradients equal per-point autograd; autocorrelation basics."""

from __future__ import annotations

import math

import pytest
import torch
from probe_helpers import options, tiny_net

from residual_lab.probes import shatter
from residual_lab.probes.common import calibrate_batch_norm


@pytest.mark.parametrize("residual", [False, True])
def test_fc_gradients_equal_autograd_point_by_point(residual):
    torch.manual_seed(0)
    x = torch.linspace(-2, 2, 16, dtype=torch.float64).view(-1, 1)
    net = shatter.ScalarNet(3, 8, residual=residual, norm="batch").double()
    calibrate_batch_norm(net, x)
    net.eval()
    batched = shatter.input_gradients(net, x)
    for i in range(len(x)):
        xi = x[i:i + 1].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(net(xi).sum(), xi)
        assert batched[i].item() == pytest.approx(g.item(), rel=1e-10, abs=1e-12)


def test_cnn_line_gradients_equal_autograd_point_by_point():
    net = tiny_net().double()
    a, b = torch.randn(1, 3, 16, 16, dtype=torch.float64), torch.randn(1, 3, 16, 16, dtype=torch.float64)
    t = torch.linspace(0, 1, 5, dtype=torch.float64)
    batched = shatter.line_gradients(net, a, b, 3, t, batch_size=2)
    for i, ti in enumerate(t):
        ti = ti.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(net(a + ti * (b - a))[0, 3], ti)
        assert batched[i].item() == pytest.approx(g.item(), rel=1e-8)


def test_autocorrelation_of_a_hand_sequence():
    ac = shatter.autocorrelation(torch.tensor([1.0, -1.0, 1.0, -1.0]))
    # centred already; lag k: sum_i g_i g_{i+k} / 4 = (4-k)(-1)^k / 4
    assert ac.tolist() == pytest.approx([1.0, -0.75, 0.5, -0.25])


def test_analyze_is_finite_and_shaped(data):
    opts = options("shatter", depths=[1, 3], width=8, points=16, draws=2, cnn_points=6)
    out = shatter.analyze(tiny_net(), data, opts, trained=False)
    assert len(out["x"]) == 16
    for kind in ("plain", "residual"):
        for d in ("1", "3"):
            r = out["fc"][kind][d]
            assert len(r["gradients"]) == 2 and len(r["gradients"][0]) == 16 and len(r["autocorrelation"]) == 16
            assert all(math.isfinite(v) for g in r["gradients"] for v in g) and r["autocorrelation"][0] == pytest.approx(1)
    assert len(out["cnn"]["gradient"]) == 6 and all(math.isfinite(v) for v in out["cnn"]["gradient"])
    assert set(shatter.figures(out)) == {"gradients", "autocorrelation", "covariance", "cnn"}
