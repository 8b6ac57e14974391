"""responses: one std per 3x3 layer, equal to the std of the hooked layer output."""

from __future__ import annotations

import math

import pytest
import torch
from probe_helpers import options, tiny_net

from residual_lab.probes import responses


@pytest.mark.parametrize("norm,block", [("batch", "basic"), ("none", "basic"), ("batch", "preact")])
def test_one_response_per_3x3_conv(norm, block):
    net = tiny_net(norm=norm, block=block)
    layers = responses.response_layers(net)
    assert [n for n, _ in layers] == [n for n, m in net.named_modules()
                                      if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    bn = sum(isinstance(m, torch.nn.BatchNorm2d) for _, m in layers)
    assert bn == {("batch", "basic"): 7, ("none", "basic"): 0, ("batch", "preact"): 3}[(norm, block)]


def test_std_equals_the_std_of_the_layer_output():
    net = tiny_net()
    x = torch.randn(10, 3, 16, 16)
    got = responses.measure(net, x, batch_size=4)  # batches accumulate
    seen = {}
    h = net.stages[1].blocks[0].residual.bn2.register_forward_hook(lambda m, a, o: seen.setdefault("o", o))
    with torch.no_grad():
        net(x)
    h.remove()
    i = got["layers"].index("s2.b0.conv2")
    assert got["std"][i] == pytest.approx(seen["o"].double().std(unbiased=False).item(), rel=1e-9)
    assert got["sorted_std"] == sorted(got["std"], reverse=True)


def test_analyze_is_finite(data):
    out = responses.analyze(tiny_net(), data, options("responses"), trained=True)
    assert out["images"] == 24 and len(out["std"]) == 7 and all(math.isfinite(v) and v > 0 for v in out["std"])
    assert set(responses.figures(out)) == {"std"}
