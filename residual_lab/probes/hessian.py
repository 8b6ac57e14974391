"""Hessian of the training loss: top eigenvalues, trace and spectral density (Yao, Gholami,
Keutzer, Mahoney 2020, "PyHessian: Neural Networks Through the Lens of the Hessian",
arXiv:1912.07145, sec. III; Ghorbani, Krishnan, Xiao 2019, arXiv:1901.10159, sec. 2).

The loss is the mean cross-entropy of the net on ``images`` training images (a seeded
subset, no augmentation), the net in eval mode so that the loss is a fixed function of the
weights (BatchNorm uses running statistics; a fresh net's are first set to those of the
same images, :func:`~residual_lab.probes.common.calibrate_batch_norm`, else eval mode would
not normalize at all). Weight decay is not part of it (it adds ``weight_decay`` to every
eigenvalue). H is the Hessian with respect to every parameter (BN scales and shifts too, as
PyHessian does).

Everything uses Hessian-vector products Hv = d(g . v)/dw by double backward
(``torch.autograd.grad`` of the gradient, kept with ``create_graph``), never H itself:

- ``top``: the ``top_k`` largest Ritz values of a ``lanczos_steps``-step Lanczos run from a
  Rademacher vector (PyHessian uses power iteration with deflation, one run per
  eigenvalue; one Lanczos run gives all k, and ``top_residual`` bounds the distance of each
  to an eigenvalue of H);
- ``trace``: Hutchinson's estimate, the mean of v^T H v over ``trace_probes`` Rademacher v,
  with its standard error; per block the same probes give tr(H_bb) (the diagonal block of
  the block's parameters: E[v_b^T (Hv)_b] = tr H_bb because the v_c of other blocks are
  independent of v_b), so the per-block traces cost nothing extra and sum to ``trace``;
- ``density``: stochastic Lanczos quadrature, ``slq_runs`` runs (the first is the run that
  gave ``top``) of ``lanczos_steps`` steps, nodes broadened by a Gaussian of width
  ``sigma_rel`` times the nodes' range (PyHessian's ``density_generate`` broadens by a
  relative width too).

Cost: ``lanczos_steps * slq_runs + trace_probes`` Hessian-vector products, each about two
forward-backward passes on the images. Defaults (conf/analyze/hessian.yaml): 64 images,
top 4, 16 Lanczos steps, 2 SLQ runs, 16 trace probes: 48 products. Measured on one thread
of a shared 2-core CPU (experiments/analysis/README.md sec. 6): ResNet-20 4-6 min wall
under load; ResNet-56 8.5 s wall per product at load 5 (so ~7 min for the 48, projected),
but 31 min wall at load 13-15, where the process got ~10 % of a core. On a trained net
these are the standard estimates; at this budget the density's resolution is coarse (16
nodes per run, where Ghorbani et al. use 90 steps): it shows where the mass and the
outliers are, not fine structure.

``hessian.json``: ``{"images": int, "split": str, "params": int, "loss": float, "top":
[k largest eigenvalue estimates, descending], "top_residual": [...], "trace": float,
"trace_stderr": float, "trace_probes": [v^T H v per probe], "blocks": [group tag...] (stem,
each block in network order, head), "block_params": [...], "block_trace": [...],
"block_trace_stderr": [...], "density": {"grid": [...], "density": [...], "sigma": float,
"nodes": [[...] per run], "weights": [[...] per run]}, "lanczos_steps": int, "slq_runs":
int}``; eigenvalues and traces in units of the loss (nats) per parameter squared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from residual_lab.probes import curvature
from residual_lab.probes.common import Positive, SampledOptions, calibrate_batch_norm, images, progress
from residual_lab.schema import PositiveInt


class LossHessian:
    """v -> H v for the mean cross-entropy of ``net`` on ``(x, y)``, on flat vectors.

    With one chunk (``len(y) <= batch_size``) the gradient graph is built once and each
    product is one double-backward; otherwise each product runs every chunk again, weighted
    by its share of the images (memory of one chunk, as PyHessian's data-loader mode).
    """

    def __init__(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                 on_product: Callable[[], object] | None = None) -> None:
        self.net = net
        self.on_product = on_product  # called once per product (a progress bar's update)
        self.params = [p for p in net.parameters() if p.requires_grad]
        self.numel = [p.numel() for p in self.params]
        self.n = sum(self.numel)
        self.chunks = [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(y), batch_size)]
        self.total = len(y)
        self._grads = self._gradient(*self.chunks[0]) if len(self.chunks) == 1 else None

    def _gradient(self, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
        loss = F.cross_entropy(self.net(x), y)
        return list(torch.autograd.grad(loss, self.params, create_graph=True))

    def loss(self) -> float:
        with torch.no_grad():
            return sum(F.cross_entropy(self.net(x), y, reduction="sum").item() for x, y in self.chunks) / self.total

    def _hvp(self, grads: list[torch.Tensor], v: torch.Tensor) -> torch.Tensor:
        vs = [u.view_as(p) for u, p in zip(torch.split(v, self.numel), self.params)]
        pairs = [(g, u) for g, u in zip(grads, vs) if g.requires_grad]
        hv = torch.autograd.grad([g for g, _ in pairs], self.params, [u for _, u in pairs],
                                 retain_graph=True, allow_unused=True)
        return torch.cat([torch.zeros(n, dtype=v.dtype, device=v.device) if h is None else h.reshape(-1)
                          for h, n in zip(hv, self.numel)])

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        if self.on_product is not None:
            self.on_product()
        if self._grads is not None:
            return self._hvp(self._grads, v)
        out = torch.zeros_like(v)
        for x, y in self.chunks:
            out += self._hvp(self._gradient(x, y), v) * (len(y) / self.total)
        return out


def _groups(net: nn.Module) -> tuple[list[str], list[int], torch.Tensor]:
    """Group names in network order, parameters per group, and each flat entry's group index."""
    tags = curvature.parameter_groups(net)
    names = list(dict.fromkeys(tags))
    index = torch.cat([torch.full((p.numel(),), names.index(t)) for t, p in zip(tags, net.parameters())
                       if p.requires_grad])
    counts = torch.bincount(index, minlength=len(names)).tolist()
    return names, counts, index


def trace_estimate(op, probes: list[torch.Tensor], index: torch.Tensor, groups: int) -> tuple[list[float], list[list[float]]]:
    """v^T H v for every probe, and per probe the groups' v_b^T (Hv)_b (``index``: each flat
    entry's group); with the n basis vectors as probes their sums are tr(H) and tr(H_bb)."""
    per_probe, per_group = [], []
    for v in probes:
        vhv = (v * op(v)).double()
        per_probe.append(vhv.sum().item())
        per_group.append(torch.zeros(groups, dtype=torch.float64, device=v.device).index_add_(0, index, vhv).tolist())
    return per_probe, per_group


def _mean_stderr(xs: list[float]) -> tuple[float | None, float | None]:
    if not xs:
        return None, None
    mean = sum(xs) / len(xs)
    if len(xs) < 2:
        return mean, None
    return mean, math.sqrt(sum((a - mean) ** 2 for a in xs) / (len(xs) - 1) / len(xs))


def measure(op: LossHessian, net: nn.Module, options, generator: torch.Generator) -> dict:
    """The three estimates of the module doc from the operator ``op``: first the trace
    probes, then the SLQ runs, all drawn from ``generator`` in that order."""
    dtype, device = op.params[0].dtype, op.params[0].device
    names, counts, index = _groups(net)
    probes = [curvature.rademacher(op.n, generator, dtype, device) for _ in range(options.trace_probes)]
    per_probe, per_group = trace_estimate(op, probes, index.to(device), len(names))
    trace, trace_err = _mean_stderr(per_probe)
    blocks = [_mean_stderr(list(col)) for col in zip(*per_group)] or [(None, None)] * len(names)

    spec = curvature.slq(op, op.n, options.slq_runs, options.lanczos_steps, generator, dtype, device)
    theta, res = spec["nodes"][0], spec["residuals"][0]
    order = sorted(range(len(theta)), key=lambda j: -theta[j])[:options.top_k]
    density = curvature.density_on_grid(spec["nodes"], spec["weights"], options.density_points, options.sigma_rel)
    return {"params": op.n, "top": [theta[j] for j in order], "top_residual": [res[j] for j in order],
            "trace": trace, "trace_stderr": trace_err, "trace_probes": per_probe,
            "blocks": names, "block_params": counts,
            "block_trace": [m for m, _ in blocks], "block_trace_stderr": [e for _, e in blocks],
            "density": {**density, "nodes": spec["nodes"], "weights": spec["weights"]},
            "lanczos_steps": options.lanczos_steps, "slq_runs": options.slq_runs}


@dataclass
class Options(SampledOptions):
    """conf/analyze/hessian.yaml's keys with their types and ranges (the values and their meaning are there)."""

    top_k: PositiveInt
    lanczos_steps: PositiveInt
    slq_runs: PositiveInt
    trace_probes: PositiveInt
    density_points: PositiveInt
    sigma_rel: Positive


def analyze(net: nn.Module, datamodule, options: Options, trained: bool) -> dict:
    x, y = images(datamodule, options.split, options.images, seed=options.seed)
    if not trained:
        calibrate_batch_norm(net, x)
    net.eval()
    generator = torch.Generator().manual_seed(options.seed)
    with progress(options.trace_probes + options.slq_runs * options.lanczos_steps, "hessian") as bar:
        op = LossHessian(net, x, y, options.batch_size, on_product=bar.update)
        return {"images": len(y), "split": options.split, "loss": op.loss(), **measure(op, net, options, generator)}


def figures(result: dict) -> dict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    d = result["density"]
    axes[0].semilogy(d["grid"], [max(v, 1e-12) for v in d["density"]])
    for t in result["top"]:
        axes[0].axvline(t, color="C3", lw=0.6, ls=":")
    axes[0].set_xlabel("eigenvalue")
    axes[0].set_ylabel("density (SLQ, Gaussian-broadened)")
    axes[0].set_ylim(bottom=1e-8)
    axes[0].set_title(f"{result['slq_runs']} runs x {result['lanczos_steps']} steps, {result['images']} "
                      f"{result['split']} images; dotted: top {len(result['top'])}", fontsize=8)
    bt = [float("nan") if v is None else v for v in result["block_trace"]]
    axes[1].bar(range(len(bt)), bt)
    axes[1].set_xticks(range(len(bt)), result["blocks"], rotation=90, fontsize=6)
    axes[1].set_ylabel("tr(H) of the group's parameters")
    axes[1].set_title(f"trace {result['trace']:.4g} +- {result['trace_stderr'] or 0:.2g} "
                      f"({len(result['trace_probes'])} Rademacher probes)", fontsize=8)
    fig.tight_layout()
    return {"spectrum": fig}


def scalars(result: dict) -> dict:
    return {"hessian/top": result["top"], "hessian/block_trace": result["block_trace"]}


def headline(result: dict) -> dict:
    """The report's row: the top eigenvalue, the k-th, the trace and its standard error, the
    loss, and how many images and products it took."""
    return {"λ max": result["top"][0], f"λ {len(result['top'])}": result["top"][-1],
            "trace": result["trace"], "trace s.e.": result["trace_stderr"], "loss": result["loss"],
            "images": result["images"]}
