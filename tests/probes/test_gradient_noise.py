"""gradient_noise: McCandlish et al.'s |G|^2 and tr(Sigma) estimates against dense per-example
gradients (torch.func.vmap of torch.func.grad) of a tiny net without normalization."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from probe_helpers import FakeData, options, tiny_net
from torch.func import functional_call, grad, vmap

from residual_lab.probes import gradient_noise
from residual_lab.probes.common import images


@pytest.fixture(scope="module")
def setup():
    """norm=none (examples independent, so a batch gradient is the mean of its examples'),
    24 images, per-example gradients flattened (24, n) and each parameter's slice."""
    net = tiny_net(width=2, norm="none").double()
    x, y = images(FakeData(n=24, size=8), "train", 24)
    x = x.double()
    params = {k: p.detach() for k, p in net.named_parameters()}

    def loss(p, xi, yi):
        return F.cross_entropy(functional_call(net, p, (xi[None],)), yi[None])

    per = vmap(grad(loss), in_dims=(None, 0, 0))(params, x, y)
    G = torch.cat([per[k].reshape(24, -1) for k in params], 1)
    slices, i = {}, 0
    for k, p in params.items():
        slices[k] = slice(i, i + p.numel())
        i += p.numel()
    return net, x, y, G, slices


def _reference(G: torch.Tensor, b: int) -> tuple[float, float]:
    """From per-example gradients: batch gradients of b consecutive examples, then
    tr(Sigma) = b * trace of their sample covariance, |G|^2 = |mean|^2 - tr(Sigma)/(K b)."""
    batches = G.view(-1, b, G.shape[1]).mean(1)
    k = len(batches)
    trace_cov = b * torch.cov(batches.T).trace().item() if G.shape[1] > 1 else b * batches.var().item()
    grad_sq = batches.mean(0).pow(2).sum().item() - trace_cov / (k * b)
    return grad_sq, trace_cov


@pytest.mark.parametrize("b", [1, 4])
def test_whole_net_estimates_match_per_example_gradients(setup, b):
    net, x, y, G, _ = setup
    out = gradient_noise.measure(net, x, y, b)
    grad_sq, trace_cov = _reference(G, b)
    assert out["batches"] == 24 // b
    assert out["net"]["grad_sq"] == pytest.approx(grad_sq, rel=1e-8)
    assert out["net"]["trace_cov"] == pytest.approx(trace_cov, rel=1e-8)
    if grad_sq > 0:
        assert out["net"]["b_simple"] == pytest.approx(trace_cov / grad_sq, rel=1e-8)
        assert out["net"]["snr"] == pytest.approx(b * grad_sq / trace_cov, rel=1e-8)
    if b == 1:  # per-example: tr(Sigma) is the unbiased covariance trace of the 24 gradients
        assert out["net"]["trace_cov"] == pytest.approx(torch.cov(G.T).trace().item(), rel=1e-8)


def test_per_block_and_per_layer_estimates_use_their_parameters(setup):
    net, x, y, G, slices = setup
    out = gradient_noise.measure(net, x, y, 4)
    assert out["blocks"] == ["stem", "s1.b0", "s2.b0", "s3.b0", "head"]
    assert out["layers"] == ["stem.conv", "s1.b0.conv1", "s1.b0.conv2", "s2.b0.conv1", "s2.b0.conv2",
                             "s3.b0.conv1", "s3.b0.conv2", "head.fc"]
    cols = lambda *keys: torch.cat([G[:, slices[k]] for k in keys], 1)  # noqa: E731
    block = cols("stages.1.blocks.0.residual.conv1.weight", "stages.1.blocks.0.residual.conv2.weight")
    grad_sq, trace_cov = _reference(block, 4)
    assert out["block_grad_sq"][2] == pytest.approx(grad_sq, rel=1e-8)
    assert out["block_trace_cov"][2] == pytest.approx(trace_cov, rel=1e-8)
    grad_sq, trace_cov = _reference(cols("head.fc.weight"), 4)  # the layer: its weight, not its bias
    assert out["layer_grad_sq"][-1] == pytest.approx(grad_sq, rel=1e-8)
    assert out["layer_trace_cov"][-1] == pytest.approx(trace_cov, rel=1e-8)
    assert sum(out["block_trace_cov"]) == pytest.approx(out["net"]["trace_cov"], rel=1e-8)


def test_noise_dominated_signal_has_no_noise_scale():
    """|mean g|^2 below what the noise alone gives: |G|^2 estimate <= 0, B_simple null."""
    est = gradient_noise.noise_scale(sum_g_sq=0.1, mean_sq=1.0, batches=4, batch_size=8)
    assert est["grad_sq"] == pytest.approx((4 * 0.1 - 1.0) / 3) and est["b_simple"] is None
    assert est["trace_cov"] == pytest.approx(8 * 4 / 3 * 0.9)


def test_train_mode_batch_norm_statistics_are_restored(data):
    net = tiny_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    out = gradient_noise.analyze(net, data, options("gradient_noise", batch_size=4, batches=3), trained=True)
    assert out["batches"] == 3 and out["bn_mode"] == "train"
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    assert all(p.grad is None for p in net.parameters())
    assert set(gradient_noise.figures(out)) == {"noise"}


def test_headline_keys_fit_a_markdown_table():
    """The report's table splits cells on "|": a key like "|G|²" would shift every column."""
    result = {"net": {"b_simple": 10.0, "grad_sq": 1.0, "trace_cov": 10.0, "snr": 12.8},
              "layer_b_simple": [5.0, None, 20.0], "batch_size": 128, "batches": 16}
    head = gradient_noise.headline(result)
    assert not any("|" in k for k in head)
    assert head["layer B_simple min"] == 5.0 and head["layer B_simple max"] == 20.0


def test_a_subset_of_a_class_sorted_split_comes_in_random_order():
    """Image folders load class by class. A subset kept in the split's order made
    gradient_noise's consecutive batches one or two classes each (training-mode BN on one
    class, per-batch gradients that differ by class): every batch must mix the classes."""
    data = FakeData(n=400, size=4)
    x, y = data.splits["train"]
    order = y.argsort(stable=True)
    data.splits["train"] = (x[order], y[order])  # class-sorted, as an image folder loads
    _, sub = images(data, "train", 100, seed=0)
    classes_per_batch = [len(set(sub[i:i + 20].tolist())) for i in range(0, 100, 20)]
    assert min(classes_per_batch) >= 4, classes_per_batch
