"""Matrix-free spectral estimators shared by the ``hessian`` and ``jacobian`` probes.

Every estimator here sees a symmetric linear operator only through ``matvec(v) -> A v`` on
flat 1-D tensors (a Hessian-vector product, or J^T J v from a JVP and a VJP), so no
n x n matrix is ever formed (n = 0.85M parameters for ResNet-56).

- :func:`lanczos`: the Lanczos tridiagonalisation with full reorthogonalisation (Golub and
  Van Loan, "Matrix Computations", sec. 10.1; Ghorbani, Krishnan, Xiao 2019, "An
  Investigation into Neural Net Optimization via Hessian Eigenvalue Density", sec. 2). Its
  Ritz values give the top eigenvalues (they converge at the spectrum's ends first), and
  its Ritz weights the stochastic Lanczos quadrature of the spectral density.
- :func:`rademacher`: the probes of Hutchinson's trace estimate, mean v^T A v over
  Rademacher v (Hutchinson 1989; Avron and Toledo 2011); with the n basis vectors as probes
  it is tr(A) exactly (the tests use that).
- :func:`gaussian_density`: the Ritz nodes and weights of several runs, each node broadened
  by a Gaussian (Ghorbani et al. 2019 eq. 5; Yao et al. 2020 "PyHessian" sec. III-C).

Why our own ~100 lines and not a library: PyHessian (Yao et al.) is unmaintained since 2021
and GPL-licensed, and curvlinops-for-pytorch would add a dependency for what here is one
double-backward call (the Hessian-vector product, :mod:`residual_lab.probes.hessian`) and
one ``torch.func`` JVP/VJP pair (:mod:`residual_lab.probes.jacobian`); the estimators
themselves are short and are checked against dense matrices in tests/probes.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from residual_lab.models.external import named_blocks
from residual_lab.models.layer_names import short_name

Matvec = Callable[[torch.Tensor], torch.Tensor]


def rademacher(n: int, generator: torch.Generator, dtype: torch.dtype = torch.float64,
               device: torch.device | str = "cpu") -> torch.Tensor:
    """A vector of n independent +-1 entries (the Hutchinson probe of least variance)."""
    return (torch.randint(0, 2, (n,), generator=generator).to(device=device, dtype=dtype) * 2 - 1)


def lanczos(matvec: Matvec, v0: torch.Tensor, steps: int, tol: float = 1e-10) -> tuple[torch.Tensor, torch.Tensor]:
    """The Lanczos tridiagonal T of ``matvec`` in the Krylov space of ``v0``.

    Full reorthogonalisation against every previous Lanczos vector (in float64), so that
    the Ritz values are not duplicated by the loss of orthogonality of plain Lanczos. It
    stops early when the Krylov space is invariant (beta < ``tol`` times the largest
    |alpha|), i.e. after at most n steps on an n x n operator, where T's eigenvalues are
    A's eigenvalues exactly (those seen by ``v0``, each once).

    Args:
        matvec: v -> A v for a symmetric A, on flat tensors of v0's shape.
        v0: the start vector (need not be normalised).
        steps: the most Lanczos steps (matvecs).
    Returns:
        ``(alpha, beta)``: T's diagonal (m,) and the m betas, float64, m <= steps: beta[:m-1]
        is T's off-diagonal, beta[m-1] the norm of the residual left after the last step
        (about 0 when the space is invariant).
    """
    q = (v0 / v0.norm()).double()
    basis = torch.empty(steps, q.numel(), dtype=torch.float64, device=q.device)
    alpha, beta = [], []
    for i in range(steps):
        basis[i] = q
        w = matvec(q.to(v0.dtype)).double()
        a = torch.dot(w, q)
        alpha.append(a)
        Q = basis[:i + 1]
        for _ in range(2):  # twice is enough (Parlett, "The Symmetric Eigenvalue Problem", sec. 6.9)
            w = w - Q.T @ (Q @ w)
        b = w.norm()
        beta.append(b)
        if i == steps - 1 or b <= tol * max(abs(float(x)) for x in alpha) or b == 0:
            break
        q = w / b
    return torch.stack(alpha), torch.stack(beta)


def ritz(alpha: torch.Tensor, beta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ritz values (ascending), their Gauss quadrature weights and residual bounds.

    The weight of Ritz value theta_j is the squared first component of T's j-th
    eigenvector: sum_j w_j f(theta_j) = q0^T f(A) q0 for every polynomial f of degree
    < 2m (Golub and Meurant, "Matrices, Moments and Quadrature", ch. 6). The bound
    beta_m |last component| is ||A y - theta y|| of the Ritz pair (0 once the space is
    invariant): an eigenvalue of A lies within it of theta (Parlett, sec. 13.2).
    """
    m = len(alpha)
    T = torch.diag(alpha)
    if m > 1:
        T = T + torch.diag(beta[:m - 1], 1) + torch.diag(beta[:m - 1], -1)
    theta, y = torch.linalg.eigh(T)
    return theta, y[0] ** 2, (beta[m - 1] * y[-1]).abs()


def gaussian_density(nodes: list[list[float]], weights: list[list[float]], grid: torch.Tensor,
                     sigma: float) -> torch.Tensor:
    """The spectral density on ``grid``: the mean over runs of sum_j w_j N(x; theta_j, sigma^2).

    Each run's weights sum to 1, so the density integrates to 1 (up to the mass beyond the
    grid's ends, none when the grid extends several sigma past the extreme nodes).
    """
    density = torch.zeros_like(grid, dtype=torch.float64)
    for theta, w in zip(nodes, weights):
        theta, w = torch.tensor(theta, dtype=torch.float64), torch.tensor(w, dtype=torch.float64)
        z = (grid.double()[:, None] - theta[None, :]) / sigma
        density += (w[None, :] * torch.exp(-0.5 * z**2)).sum(1) / (sigma * math.sqrt(2 * math.pi))
    return density / len(nodes)


def slq(matvec: Matvec, n: int, runs: int, steps: int, generator: torch.Generator,
        dtype: torch.dtype, device: torch.device | str = "cpu",
        starts: list[torch.Tensor] | None = None) -> dict:
    """Stochastic Lanczos quadrature: ``runs`` Lanczos runs from Rademacher starts (or
    ``starts``), each giving Ritz nodes and weights; also their residual bounds.

    The quadrature of run r approximates q_r^T f(A) q_r with q_r = v_r/||v_r||; its mean
    over Rademacher v_r is tr f(A) / n, so the nodes and weights are a discrete spectral
    density of unit mass (Ubaru, Chen, Saad 2017; Ghorbani et al. 2019 sec. 2).
    """
    starts = starts or [rademacher(n, generator, dtype, device) for _ in range(runs)]
    out = {"nodes": [], "weights": [], "residuals": []}
    for v in starts:
        theta, w, res = ritz(*lanczos(matvec, v, steps))
        out["nodes"].append(theta.tolist())
        out["weights"].append(w.tolist())
        out["residuals"].append(res.tolist())
    return out


def density_on_grid(nodes: list[list[float]], weights: list[list[float]], points: int,
                    sigma_rel: float) -> dict:
    """``points`` grid points spanning the nodes plus 5 sigma each side, sigma = ``sigma_rel``
    times the nodes' range (PyHessian's default broadening is relative too), and the density."""
    lo = min(min(t) for t in nodes)
    hi = max(max(t) for t in nodes)
    sigma = sigma_rel * max(hi - lo, 1e-12)
    grid = torch.linspace(lo - 5 * sigma, hi + 5 * sigma, points, dtype=torch.float64)
    return {"grid": grid.tolist(), "density": gaussian_density(nodes, weights, grid, sigma).tolist(),
            "sigma": sigma}


def parameter_groups(net: nn.Module) -> list[str]:
    """The group tag of every parameter, in ``net.parameters()`` order: ``stem``, each
    block's short tag (``s1.b0`` ...), ``head``; a parameter outside every block is grouped
    under its top-level module's name. Any net: an external model's blocks are the ones its
    residual additions mark (:func:`residual_lab.models.external.named_blocks`)."""
    owner = {}
    for name, blk in named_blocks(net):
        for pname, _ in blk.named_parameters(prefix=name):
            owner[pname] = short_name(name)
    return [owner.get(n, n.split(".", 1)[0]) for n, _ in net.named_parameters()]
