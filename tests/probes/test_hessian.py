"""hessian: Hessian-vector products, Lanczos eigenvalues, Hutchinson traces and the SLQ density
against the dense Hessian of a 395-parameter net (torch.func.hessian), in float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from probe_helpers import FakeData, options, tiny_net
from torch.func import functional_call

from residual_lab.probes import curvature, hessian
from residual_lab.probes.common import images


@pytest.fixture(scope="module")
def setup():
    """A width-1 depth-8 ResNet (395 parameters) in eval mode, 8 images of 8x8, its loss Hessian."""
    net = tiny_net(width=1).double()
    x, y = images(FakeData(n=8, size=8), "train", 8)
    x = x.double()
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for _, p in net.named_parameters()]
    buffers = dict(net.named_buffers())

    def loss(flat: torch.Tensor) -> torch.Tensor:
        params, i = {}, 0
        for n, s in zip(names, shapes):
            params[n] = flat[i:i + s.numel()].view(s)
            i += s.numel()
        return F.cross_entropy(functional_call(net, (params, buffers), (x,)), y)

    flat = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    H = torch.func.hessian(loss)(flat)
    return net, x, y, (H + H.T) / 2


def test_hessian_vector_products_are_the_dense_hessians(setup):
    net, x, y, H = setup
    assert H.shape == (395, 395)
    g = torch.Generator().manual_seed(1)
    for batch_size in (8, 3):  # one chunk (graph kept) and three chunks (recomputed, weighted)
        op = hessian.LossHessian(net, x, y, batch_size)
        for _ in range(3):
            v = torch.randn(op.n, generator=g, dtype=torch.float64)
            torch.testing.assert_close(op(v), H @ v, rtol=1e-8, atol=1e-10)


def test_lanczos_top_eigenvalues_equal_the_dense_ones(setup):
    """A full Lanczos run (steps >= n) from the probe's own code: its top 4 Ritz values are H's
    top 4 eigenvalues to 1e-4 relative, with residual bounds ~0."""
    net, x, y, H = setup
    opts = options("hessian", top_k=4, lanczos_steps=400, slq_runs=1, trace_probes=0)
    out = hessian.measure(hessian.LossHessian(net, x, y, 8), net, opts, torch.Generator().manual_seed(0))
    dense = torch.linalg.eigvalsh(H).flip(0)[:4]
    torch.testing.assert_close(torch.tensor(out["top"], dtype=torch.float64), dense, rtol=1e-4, atol=0)
    assert max(out["top_residual"]) < 1e-6 * dense[0]


def test_hutchinson_with_basis_probes_is_the_exact_trace_per_block(setup):
    net, x, y, H = setup
    names, counts, index = hessian._groups(net)
    assert names == ["stem", "s1.b0", "s2.b0", "s3.b0", "head"] and counts == [29, 22, 62, 232, 50]
    op = hessian.LossHessian(net, x, y, 8)
    basis = list(torch.eye(op.n, dtype=torch.float64))
    per_probe, per_group = hessian.trace_estimate(op, basis, index, len(names))
    assert sum(per_probe) == pytest.approx(torch.trace(H).item(), rel=1e-4)
    diag = H.diagonal()
    for b, col in enumerate(zip(*per_group)):
        assert sum(col) == pytest.approx(diag[index == b].sum().item(), rel=1e-4, abs=1e-9), names[b]


def test_rademacher_trace_is_the_mean_of_the_probes_quadratic_forms(setup):
    """The probe's trace and per-block traces are the mean of v^T H v and v_b^T (Hv)_b over
    exactly the Rademacher probes drawn from the seeded generator (checked densely)."""
    net, x, y, H = setup
    opts = options("hessian", trace_probes=6, slq_runs=1, lanczos_steps=3)
    out = hessian.measure(hessian.LossHessian(net, x, y, 8), net, opts, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    vs = [curvature.rademacher(395, g) for _ in range(6)]
    assert all(set(v.tolist()) == {-1.0, 1.0} for v in vs)
    expected = [(v @ H @ v).item() for v in vs]
    assert out["trace_probes"] == pytest.approx(expected, rel=1e-8)
    assert out["trace"] == pytest.approx(sum(expected) / 6, rel=1e-8)
    _, _, index = hessian._groups(net)
    for b in range(5):
        mask = index == b
        ref = sum((v[mask] @ (H @ v)[mask]).item() for v in vs) / 6
        assert out["block_trace"][b] == pytest.approx(ref, rel=1e-8, abs=1e-10)
    assert sum(out["block_trace"]) == pytest.approx(out["trace"], rel=1e-8)


def test_slq_quadrature_is_exact_for_low_moments(setup):
    """Each Lanczos run of m steps is a Gauss quadrature: sum_j w_j theta_j^k = q^T H^k q for
    k < 2m, on the real Hessian-vector products; weights sum to 1."""
    net, x, y, H = setup
    op = hessian.LossHessian(net, x, y, 8)
    spec = curvature.slq(op, op.n, runs=2, steps=4, generator=torch.Generator().manual_seed(5),
                         dtype=torch.float64)
    g = torch.Generator().manual_seed(5)
    for theta, w in zip(spec["nodes"], spec["weights"]):
        q = curvature.rademacher(395, g)
        q = q / q.norm()
        theta, w = torch.tensor(theta), torch.tensor(w)
        assert w.sum().item() == pytest.approx(1.0, abs=1e-12)
        for k in range(1, 8):
            exact = (q @ torch.linalg.matrix_power(H, k) @ q).item()
            assert (w * theta**k).sum().item() == pytest.approx(exact, rel=1e-6), k


def test_slq_density_integrates_to_one_and_has_the_spectrums_moments(setup):
    """SLQ started from all n basis vectors averages e_i^T H^k e_i = tr(H^k)/n: the dense
    spectrum's moments (3 steps per run are exact up to k = 5); the broadened density on the
    grid integrates to 1 and has the spectrum's mean."""
    _, _, _, H = setup
    n = H.shape[0]
    spec = curvature.slq(lambda v: H @ v, n, runs=n, steps=3, generator=torch.Generator().manual_seed(0),
                         dtype=torch.float64, starts=list(torch.eye(n, dtype=torch.float64)))
    eig = torch.linalg.eigvalsh(H)
    for k in (1, 2, 3):
        slq_moment = sum(sum(w * t**k for t, w in zip(th, ws)) for th, ws in zip(spec["nodes"], spec["weights"])) / n
        assert slq_moment == pytest.approx(eig.pow(k).mean().item(), rel=1e-4), k
    d = curvature.density_on_grid(spec["nodes"], spec["weights"], points=2000, sigma_rel=0.01)
    grid, dens = torch.tensor(d["grid"]), torch.tensor(d["density"])
    assert torch.trapezoid(dens, grid).item() == pytest.approx(1.0, abs=1e-3)
    mean = torch.trapezoid(dens * grid, grid).item()
    assert mean == pytest.approx(eig.mean().item(), rel=1e-3)


def test_analyze_calibrates_a_fresh_nets_batch_norm_and_restores_nothing_else(data):
    """A fresh net: BN statistics become the images' (eval mode then normalizes), the record's
    loss is the eval-mode loss on those images, and blocks/params are counted."""
    net = tiny_net()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
    opts = options("hessian", images=16, batch_size=16, lanczos_steps=4, slq_runs=1, trace_probes=2, top_k=2)
    out = hessian.analyze(net, data, opts, trained=False)
    x, y = images(data, "train", 16, seed=0)
    bn = net.stem.bn
    torch.testing.assert_close(bn.running_mean, net.stem.conv(x).mean((0, 2, 3)))
    assert out["loss"] == pytest.approx(F.cross_entropy(net.eval()(x), y).item(), rel=1e-6)
    assert out["params"] == sum(p.numel() for p in net.parameters()) == sum(out["block_params"])
    assert len(out["top"]) == 2 and out["top"][0] >= out["top"][1]
    assert set(hessian.figures(out)) == {"spectrum"}
