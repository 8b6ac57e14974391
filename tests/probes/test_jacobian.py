"""jacobian: JVPs/VJPs, chi and top singular values against dense Jacobians (torch.func.jacrev)
of a tiny net (width 1, 8x8 images) and of each of its blocks, in float64."""

from __future__ import annotations

import math

import pytest
import torch
from probe_helpers import FakeData, options, tiny_net
from torch.func import jacrev

from residual_lab.probes import curvature, jacobian
from residual_lab.probes.common import images


@pytest.fixture(scope="module")
def setup():
    net = tiny_net(width=1).double()
    for p in net.parameters():
        p.requires_grad_(False)
    x, _ = images(FakeData(n=8, size=8), "train", 2)
    return net, x.double()


def _dense(f, x: torch.Tensor) -> list[torch.Tensor]:
    """Each image's Jacobian (d_out x d_in) by jacrev of ``f`` on that image alone."""
    return [jacrev(lambda z: f(z[None])[0])(xi).reshape(f(xi[None]).numel(), xi.numel()) for xi in x]


def test_io_singular_values_are_the_dense_jacobians(setup):
    net, x = setup
    sv = jacobian.io_singular_values(net, x)
    assert sv.shape == (2, 10)
    for i, J in enumerate(_dense(net, x)):
        torch.testing.assert_close(sv[i], torch.linalg.svdvals(J), rtol=1e-8, atol=1e-12)


def test_jvp_and_vjp_are_the_dense_block_diagonal_jacobian(setup):
    net, x = setup
    op = jacobian.JacobianOperator(net.forward_features, x)
    Js = _dense(net.forward_features, x)
    J = torch.block_diag(*Js)  # the batch's Jacobian: images are independent in eval mode
    assert op.n_in == J.shape[1] == 2 * 192 and op.n_out == J.shape[0] == 2 * 16
    g = torch.Generator().manual_seed(0)
    v, u = torch.randn(op.n_in, generator=g, dtype=torch.float64), torch.randn(op.n_out, generator=g, dtype=torch.float64)
    torch.testing.assert_close(op.jvp(v), J @ v)
    torch.testing.assert_close(op.vjp(u), J.T @ u)
    torch.testing.assert_close(op(v), J.T @ (J @ v))


def test_chi_with_basis_probes_is_the_mean_squared_singular_value(setup):
    """||J||_F^2 / (images * min(d_in, d_out)) exactly, for the features map and every block."""
    net, x = setup
    maps = [("features", net.forward_features, x)]
    inputs = jacobian.block_inputs(net, x)
    maps += [(name, blk, inputs[name]) for name, blk in net.named_blocks()]
    for name, f, z in maps:
        op = jacobian.JacobianOperator(f, z)
        rank = min(op.n_in, op.n_out) // 2
        basis = list(torch.eye(op.n_in, dtype=torch.float64))
        got, _ = jacobian.chi(op, basis, rank, 2)
        got *= op.n_in  # chi() averages over the probes; basis vectors sum ||J e_i||^2
        sv = torch.cat([torch.linalg.svdvals(J) for J in _dense(f, z)])
        assert got == pytest.approx(sv.pow(2).sum().item() / (2 * rank), rel=1e-8), name


def test_measure_top_singular_values_and_block_chi_match_dense(setup):
    """With Lanczos steps >= d_in (full Krylov space) the probe's top singular values of the
    features map and of every block are the dense ones to 1e-4; its chi (Rademacher probes)
    is within the estimator's spread of the exact value, and the logits spectrum is exact."""
    net, x = setup
    opts = options("jacobian", probes=64, lanczos_steps=400, top_k=3)
    out = jacobian.measure(net, x, opts)
    sv = torch.cat([torch.linalg.svdvals(J) for J in _dense(net.forward_features, x)]).sort(descending=True).values
    assert out["features"]["top"] == pytest.approx(sv[:3].tolist(), rel=1e-4)
    inputs = jacobian.block_inputs(net, x)
    assert out["blocks"] == ["s1.b0", "s2.b0", "s3.b0"]
    assert out["block_dim_in"] == [64, 64, 32] and out["block_dim_out"] == [64, 32, 16]
    for i, (name, blk) in enumerate(net.named_blocks()):
        s = torch.cat([torch.linalg.svdvals(J) for J in _dense(blk, inputs[name])])
        assert out["block_top"][i] == pytest.approx(s.max().item(), rel=1e-4), name
        exact = s.pow(2).sum().item() / (2 * min(out["block_dim_in"][i], out["block_dim_out"][i]))
        assert abs(out["block_chi"][i] - exact) < 4 * out["block_chi_stderr"][i] + 1e-12, name
    io = torch.cat([torch.linalg.svdvals(J) for J in _dense(net, x)])
    assert out["io"]["chi"] == pytest.approx(io.pow(2).mean().item(), rel=1e-8)
    assert out["io"]["max"] == pytest.approx(io.max().item(), rel=1e-8)


def test_analyze_restores_requires_grad_and_figures(data):
    net = tiny_net()
    opts = options("jacobian", images=2, calibration_images=8, probes=2, lanczos_steps=3)
    out = jacobian.analyze(net, data, opts, trained=True)
    assert all(p.requires_grad for p in net.parameters())
    assert out["images"] == 2 and len(out["io"]["singular_values"]) == 2
    assert math.isfinite(jacobian.headline(out)["Π block chi"])
    assert set(jacobian.figures(out)) == {"spectra"}


def test_lanczos_without_reorthogonalisation_would_repeat_ritz_values():
    """Why :func:`curvature.lanczos` reorthogonalises: on a matrix with one dominant eigenvalue
    a long run keeps distinct Ritz values (each eigenvalue once), equal to the dense ones."""
    g = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(60, 60, generator=g, dtype=torch.float64))
    eig = torch.cat([torch.tensor([100.0]), torch.linspace(0.0, 1.0, 59, dtype=torch.float64)])
    A = Q @ torch.diag(eig) @ Q.T
    theta, w, res = curvature.ritz(*curvature.lanczos(lambda v: A @ v, torch.ones(60, dtype=torch.float64), 60))
    torch.testing.assert_close(theta, eig.sort().values, rtol=1e-8, atol=1e-8)
    assert w.sum().item() == pytest.approx(1.0, abs=1e-12)
