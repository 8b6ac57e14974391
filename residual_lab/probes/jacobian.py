"""Singular values of the input-output Jacobian and of each block's Jacobian: dynamical
isometry (Pennington, Schoenholz, Ganguli 2017, "Resurrecting the sigmoid in deep
learning through dynamical isometry", arXiv:1711.04735, sec. 2; Xiao et al. 2018,
"Dynamical Isometry and a Mean Field Theory of CNNs", arXiv:1806.05393, sec. 2.3): a deep
net trains fast when the singular values of its input-output Jacobian concentrate near 1,
i.e. the squared singular values have mean chi ~ 1 and a small spread.

The net is in eval mode, so each image's output depends on that image alone and the
Jacobian of a batch is block-diagonal, one d_out x d_in block per image; a fresh net's
BatchNorm statistics are first set to those of ``calibration_images`` training images
(:func:`~residual_lab.probes.common.calibrate_batch_norm`), the normalisation training
mode would apply. Spectra below pool the singular values of the ``images`` images.
Three Jacobians:

- ``io``: of the logits with respect to the input image, d_out = classes: computed
  exactly (one vector-Jacobian product per class), its singular values per image;
- ``features``: of ``forward_features`` (the last block's output, 64 x 8 x 8 for CIFAR
  ResNets) with respect to the input image, too large to form: mean squared singular
  value chi = ||J||_F^2 / min(d_in, d_out) from Hutchinson probes (E|Jv|^2 = ||J||_F^2 for
  Rademacher v), the top singular values from a Lanczos run on J^T J (v -> J^T J v by a
  JVP then a VJP, :class:`JacobianOperator`), and that run's
  stochastic Lanczos quadrature as the density of the squared singular values;
- per block: chi and the top singular value of the block's Jacobian at the input the net
  gives it; with BN and option-A shortcuts a residual block's chi stays near 1 while a
  plain block's is set by its branch alone. The product of the blocks' chi is the
  end-to-end growth of ||J||_F^2 when consecutive blocks' Jacobians are free (Pennington et
  al. sec. 2.2), the depth trend the figure shows.

Cost: per block and for ``features``, ``probes`` JVPs plus ``lanczos_steps`` JVP-VJP
pairs; defaults (conf/analyze/jacobian.yaml) 16 images, 8 probes, 12 steps.

``jacobian.json``: ``{"images": int, "split": str, "io": {"singular_values": [[...] per
image, descending], "chi": float, "max": float, "min": float, "median_condition": float},
"features": {"dim_in", "dim_out", "chi", "chi_stderr", "top": [...], "top_residual": [...],
"density": {"grid", "density", "sigma", "nodes", "weights"}} (density of sigma^2), "blocks":
[tag...], "block_dim_in": [...], "block_dim_out": [...], "block_chi": [...],
"block_chi_stderr": [...], "block_top": [...], "probes": int, "lanczos_steps": int}``;
dimensions per image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from residual_lab.models.layer_names import short_name
from residual_lab.probes import curvature
from residual_lab.probes.common import Images, Positive, Seed, Split, calibrate_batch_norm, images
from residual_lab.schema import PositiveInt

#: The net's methods this probe calls: ``forward_features`` (the last block's output), which
#: residual_lab's own families have and an external model (model=external) does not.
REQUIRES = ("forward_features", "named_blocks")


class JacobianOperator:
    """J v, J^T u and J^T J v of ``f`` at ``x`` (a batch), on flat tensors.

    One forward builds the graph; J^T u is a backward through it, and J v the backward of
    that backward with respect to u (the "double-VJP" trick: J^T u is linear in u, so
    d(J^T u . v)/du = J v), so no product runs the forward again. ``f`` must treat the
    images of the batch independently (eval mode), so J is block-diagonal and its singular
    values are those of every image's Jacobian together.
    """

    def __init__(self, f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> None:
        self.x = x.detach().clone().requires_grad_(True)
        self.y = f(self.x)
        self.u = torch.zeros_like(self.y, requires_grad=True)
        (self.g,) = torch.autograd.grad(self.y, self.x, self.u, create_graph=True)
        self.shape_in, self.shape_out, self.dtype = self.x.shape, self.y.shape, self.x.dtype
        self.n_in, self.n_out = self.x.numel(), self.y.numel()

    def jvp(self, v: torch.Tensor) -> torch.Tensor:
        return torch.autograd.grad(self.g, self.u, v.view(self.shape_in), retain_graph=True)[0].reshape(-1)

    def vjp(self, u: torch.Tensor) -> torch.Tensor:
        return torch.autograd.grad(self.y, self.x, u.view(self.shape_out), retain_graph=True)[0].reshape(-1)

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        return self.vjp(self.jvp(v))


def chi(op: JacobianOperator, probes: list[torch.Tensor], per_image_rank: int, batch: int) -> tuple[float, float | None]:
    """Mean squared singular value ||J||_F^2 / (batch * rank) from ``probes`` (E|Jv|^2 =
    ||J||_F^2 for Rademacher v; exactly, summed over the basis vectors), and its standard error."""
    values = [op.jvp(v).double().pow(2).sum().item() / (batch * per_image_rank) for v in probes]
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((a - mean) ** 2 for a in values) / (len(values) - 1) / len(values))


def top_singular_values(op: JacobianOperator, steps: int, generator: torch.Generator, k: int = 1) -> dict:
    """The ``k`` largest singular values of J (square roots of J^T J's top Ritz values) and
    one SLQ run's nodes and weights (the spectrum of sigma^2 over the pooled images)."""
    v0 = curvature.rademacher(op.n_in, generator, op.dtype)
    theta, w, res = curvature.ritz(*curvature.lanczos(op, v0, steps))
    order = sorted(range(len(theta)), key=lambda j: -float(theta[j]))[:k]
    return {"top": [math.sqrt(max(float(theta[j]), 0.0)) for j in order],
            "top_residual": [float(res[j]) for j in order],
            "nodes": theta.tolist(), "weights": w.tolist()}


def io_singular_values(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Singular values (batch, classes) of each image's logits-by-input Jacobian, exactly:
    one VJP per class with the class's unit vector on every image (the images are independent)."""
    x = x.detach().requires_grad_(True)
    out = net(x)
    rows = []
    for c in range(out.shape[1]):
        u = torch.zeros_like(out)
        u[:, c] = 1.0
        rows.append(torch.autograd.grad(out, x, u, retain_graph=c < out.shape[1] - 1)[0].flatten(1))
    return torch.linalg.svdvals(torch.stack(rows, 1).double())


def block_inputs(net: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The input each block receives when the net runs on ``x``."""
    seen, handles = {}, []
    for name, blk in net.named_blocks():
        handles.append(blk.register_forward_pre_hook(lambda m, args, name=name: seen.__setitem__(name, args[0].detach().clone())))
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in handles:
            h.remove()
    return seen


@dataclass
class Options:
    """conf/analyze/jacobian.yaml's keys with their types and ranges (the values and their meaning are there)."""

    name: str
    split: Split
    images: Images
    calibration_images: PositiveInt
    seed: Seed
    probes: PositiveInt
    lanczos_steps: PositiveInt
    top_k: PositiveInt
    density_points: PositiveInt
    sigma_rel: Positive


def analyze(net: nn.Module, datamodule, options: Options, trained: bool) -> dict:
    x, _ = images(datamodule, options.split, options.images, seed=options.seed)
    if not trained:
        calibrate_batch_norm(net, images(datamodule, options.split, options.calibration_images, seed=options.seed)[0])
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    try:
        return {"images": len(x), "split": options.split, **measure(net, x, options)}
    finally:
        for p in net.parameters():
            p.requires_grad_(True)


def _probes(op: JacobianOperator, count: int, generator: torch.Generator) -> list[torch.Tensor]:
    return [curvature.rademacher(op.n_in, generator, op.dtype) for _ in range(count)]


def measure(net: nn.Module, x: torch.Tensor, options) -> dict:
    """The module doc's three Jacobians of ``net`` (eval mode) at the images ``x``."""
    generator = torch.Generator().manual_seed(options.seed)
    b = len(x)
    sv = io_singular_values(net, x)
    io = {"singular_values": sv.tolist(), "chi": sv.pow(2).mean().item(), "max": sv.max().item(),
          "min": sv.min().item(), "median_condition": (sv[:, 0] / sv[:, -1]).median().item()}

    op = JacobianOperator(net.forward_features, x)
    rank = min(op.n_in, op.n_out) // b
    c, c_err = chi(op, _probes(op, options.probes, generator), rank, b)
    top = top_singular_values(op, options.lanczos_steps, generator, k=options.top_k)
    density = curvature.density_on_grid([top["nodes"]], [top["weights"]], options.density_points, options.sigma_rel)
    features = {"dim_in": op.n_in // b, "dim_out": op.n_out // b, "chi": c, "chi_stderr": c_err,
                "top": top["top"], "top_residual": top["top_residual"],
                "density": {**density, "nodes": [top["nodes"]], "weights": [top["weights"]]}}

    inputs = block_inputs(net, x)
    blocks = {"blocks": [], "block_dim_in": [], "block_dim_out": [], "block_chi": [], "block_chi_stderr": [],
              "block_top": []}
    for name, blk in net.named_blocks():
        op = JacobianOperator(blk, inputs[name])
        c, c_err = chi(op, _probes(op, options.probes, generator), min(op.n_in, op.n_out) // b, b)
        blocks["blocks"].append(short_name(name))
        blocks["block_dim_in"].append(op.n_in // b)
        blocks["block_dim_out"].append(op.n_out // b)
        blocks["block_chi"].append(c)
        blocks["block_chi_stderr"].append(c_err)
        blocks["block_top"].append(top_singular_values(op, options.lanczos_steps, generator)["top"][0])
    return {"io": io, "features": features, **blocks, "probes": options.probes,
            "lanczos_steps": options.lanczos_steps}


def figures(result: dict) -> dict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 3.6))
    sv = [s for row in result["io"]["singular_values"] for s in row]
    axes[0].hist(sv, bins=30)
    axes[0].set_xlabel("singular value, logits by input")
    axes[0].set_title(f"{result['images']} images x {len(result['io']['singular_values'][0])} values; "
                      f"chi = {result['io']['chi']:.3g}", fontsize=8)
    d = result["features"]["density"]
    axes[1].semilogy(d["grid"], [max(v, 1e-12) for v in d["density"]])
    axes[1].set_ylim(bottom=1e-8)
    axes[1].set_xlabel("squared singular value, features by input")
    axes[1].set_title(f"SLQ ({result['lanczos_steps']} steps); chi = {result['features']['chi']:.3g}, "
                      f"top sigma = {result['features']['top'][0]:.3g}", fontsize=8)
    n = range(len(result["blocks"]))
    axes[2].semilogy(n, result["block_chi"], marker=".", label="chi (mean sigma^2)")
    axes[2].semilogy(n, [t ** 2 for t in result["block_top"]], marker=".", ls="--", label="top sigma^2")
    cum = [math.prod(result["block_chi"][:i + 1]) for i in n]
    axes[2].semilogy(n, cum, color="k", lw=0.8, label="product of chi")
    axes[2].axhline(1.0, color="gray", lw=0.5)
    axes[2].set_xlabel("block")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    return {"spectra": fig}


def scalars(result: dict) -> dict:
    return {"jacobian/block_chi": result["block_chi"], "jacobian/block_top": result["block_top"]}


def headline(result: dict) -> dict:
    """The report's row: the logits Jacobian's chi and extreme singular values, the feature
    Jacobian's chi and top singular value, the product of the blocks' chi (depth growth)."""
    return {"io chi": result["io"]["chi"], "io σ max": result["io"]["max"], "io σ min": result["io"]["min"],
            "features chi": result["features"]["chi"], "features σ max": result["features"]["top"][0],
            "Π block chi": math.prod(result["block_chi"]), "images": result["images"]}
