"""Shattered gradients (Balduzzi et al. 2017, "The Shattered Gradients Problem",
arXiv:1702.08591, sec. 2 and figs. 1-3): how correlated df/dx is between nearby inputs.

At initialisation, scalar-input scalar-output fully connected nets of ``width`` units and
``depth`` hidden ReLU layers (:class:`ScalarNet`: the first ReLU(w x + b), the others
Linear-BN-ReLU): plain (h <- layer(h)) and residual (h <- h + layer(h)), differing only in
the skip; at depth 1 the two are the same net. The gradient
df/dx is taken at ``points`` inputs evenly spaced on ``x_range``. BatchNorm uses the
statistics of those grid points (set once, then frozen in eval mode, so each point's
output and gradient depend on that point alone); weights are He-normal (fan_in), biases
N(0, 1) on the first layer (kinks spread over the grid) and N(0, 0.1^2) elsewhere. Per depth and kind,
``draws`` nets (draw k has the same weights in both kinds); the normalized autocorrelation of the gradient sequence,
``ac[k] = sum_i g'_i g'_{i+k} / sum_i g'_i^2`` (g' = g minus its mean), is averaged over
draws. White noise has ac[k] ~ 0 for k > 0; brown noise (a random walk) decays slowly.

With ``cnn: true`` the configured net is measured too, along the line x(t) = a + t (b - a)
between two test images a, b of different classes: d logit_{y_a} / dt at ``cnn_points``
values of t in [0, 1] (a fresh net's BatchNorm statistics set on a training batch first).

``shatter.json``: ``{"x": [...], "fc": {"plain"|"residual": {"<depth>": {"gradients":
[[...] per draw], "autocorrelation": [...] (lag 0..points-1), "lag1": float,
"corr_length": float}}}, "lag_dx": float, "cnn": null | {"t": [...], "gradient": [...],
"autocorrelation": [...], "lag1": float, "corr_length": float, "images": [i_a, i_b]}}``.
``corr_length`` is the input distance (x units; t units for the CNN) at which the mean
autocorrelation first drops below 0.5; ``lag1`` is ac[1].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, List, Literal

import torch
from torch import nn

from residual_lab.probes.common import LinePoints, Seed, calibrate_batch_norm, images
from residual_lab.schema import PositiveInt, Range


class ScalarNet(nn.Module):
    """R -> R with ``depth`` hidden ReLU layers of ``width`` units, then Linear(width, 1).

    The first hidden layer is ReLU(w x + b): its kinks sit at -b_i / w_i, spread over the
    input range, which makes a one-layer net's gradient a sum of steps (brown noise,
    Balduzzi et al. fig. 1a). The other ``depth - 1`` are Linear-BN-ReLU, stacked plain
    (h <- layer(h)) or residual (h <- h + layer(h)).

    Args:
        residual: add each later hidden layer's output to its input (the skip).
        norm: ``batch`` or ``none``.
    """

    def __init__(self, depth: int, width: int = 200, *, residual: bool, norm: str = "batch") -> None:
        super().__init__()
        self.residual = residual
        self.inp = nn.Sequential(nn.Linear(1, width), nn.ReLU())
        self.layers = nn.ModuleList(
            nn.Sequential(nn.Linear(width, width), nn.BatchNorm1d(width) if norm == "batch" else nn.Identity(), nn.ReLU())
            for _ in range(depth - 1))
        self.out = nn.Linear(width, 1)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                nn.init.normal_(m.bias, std=0.1)
        nn.init.normal_(self.inp[0].bias, std=1.0)  # kinks -b/w spread over the input range

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        for layer in self.layers:
            h = h + layer(h) if self.residual else layer(h)
        return self.out(h)


def input_gradients(f: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """df(x_i)/dx_i for every row of ``x`` in one backward pass: ``f`` must treat rows
    independently (eval mode), so d sum_j f(x_j) / dx_i = df(x_i)/dx_i."""
    x = x.detach().requires_grad_(True)
    return torch.autograd.grad(f(x).sum(), x)[0]


def autocorrelation(g: torch.Tensor) -> torch.Tensor:
    """Normalized autocorrelation of a 1-D sequence at lags 0..n-1 (ac[0] = 1)."""
    g = g.double() - g.double().mean()
    n = len(g)
    ac = torch.stack([(g[: n - k] * g[k:]).sum() for k in range(n)])
    return ac / ac[0].clamp_min(1e-300)


def _summary(ac: torch.Tensor, dx: float) -> dict:
    below = torch.nonzero(ac < 0.5).flatten()
    return {"autocorrelation": ac.tolist(), "lag1": ac[1].item(),
            "corr_length": (below[0].item() if len(below) else len(ac)) * dx}


def fc_gradients(depth: int, *, width: int, residual: bool, norm: str, x: torch.Tensor) -> torch.Tensor:
    """df/dx of one freshly drawn :class:`ScalarNet` at the points ``x`` (N, 1)."""
    net = ScalarNet(depth, width, residual=residual, norm=norm).double()
    calibrate_batch_norm(net, x)
    net.eval()
    return input_gradients(net, x).flatten()


def line_gradients(net: nn.Module, a: torch.Tensor, b: torch.Tensor, cls: int, t: torch.Tensor,
                   batch_size: int = 64) -> torch.Tensor:
    """d logit_cls(a + t (b - a)) / dt at every t; ``net`` in eval mode."""
    grads = []
    for i in range(0, len(t), batch_size):
        tt = t[i:i + batch_size].detach().clone().requires_grad_(True)
        x = a + tt.view(-1, 1, 1, 1) * (b - a)
        grads.append(torch.autograd.grad(net(x)[:, cls].sum(), tt)[0])
    return torch.cat(grads)


@dataclass
class Options:
    """conf/analyze/shatter.yaml's keys with their types and ranges (the values and their meaning are there)."""

    name: str
    depths: Annotated[List[int], Range(lambda v: len(v) > 0 and all(d >= 1 for d in v), "a list of depths >= 1")]
    width: PositiveInt
    points: LinePoints
    x_range: Annotated[List[float], Range(lambda v: len(v) == 2 and v[0] < v[1], "[low, high] with low < high")]
    norm: Literal["batch", "none"]
    draws: PositiveInt
    seed: Seed
    cnn: bool
    cnn_points: LinePoints


def analyze(net: nn.Module, datamodule, options: Options, trained: bool) -> dict:
    torch.manual_seed(options.seed)
    x = torch.linspace(*options.x_range, options.points, dtype=torch.float64).view(-1, 1)
    dx = (options.x_range[1] - options.x_range[0]) / (options.points - 1)
    fc = {}
    for kind in ("plain", "residual"):
        fc[kind] = {}
        for depth in options.depths:
            grads = []
            for draw in range(options.draws):  # the same weights for plain and residual: only the skip differs
                torch.manual_seed(options.seed * 1000 + draw)
                grads.append(fc_gradients(depth, width=options.width, residual=kind == "residual", norm=options.norm, x=x))
            ac = torch.stack([autocorrelation(g) for g in grads]).mean(0)
            fc[kind][str(depth)] = {"gradients": [g.tolist() for g in grads], **_summary(ac, dx)}
    result = {"x": x.flatten().tolist(), "lag_dx": dx, "fc": fc, "cnn": None}
    if options.cnn:
        xs, ys = images(datamodule, "test", None)
        g = torch.Generator().manual_seed(options.seed)
        i_a = torch.randint(len(ys), (1,), generator=g).item()
        others = torch.nonzero(ys != ys[i_a]).flatten()
        i_b = others[torch.randint(len(others), (1,), generator=g)].item()
        if not trained:
            train_x, _ = images(datamodule, "train", 256, seed=options.seed)
            calibrate_batch_norm(net, train_x)
        net.eval()
        t = torch.linspace(0, 1, options.cnn_points)
        grad = line_gradients(net, xs[i_a:i_a + 1], xs[i_b:i_b + 1], int(ys[i_a]), t)
        result["cnn"] = {"t": t.tolist(), "gradient": grad.tolist(), "images": [i_a, i_b],
                         **_summary(autocorrelation(grad), 1.0 / (options.cnn_points - 1))}
    return result


def figures(result: dict) -> dict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds, depths = list(result["fc"]), sorted(result["fc"]["plain"], key=int)  # JSON keys sort as strings
    fig, axes = plt.subplots(len(kinds), len(depths), figsize=(3.2 * len(depths), 2.6 * len(kinds)), squeeze=False)
    for r, kind in enumerate(kinds):
        for c, d in enumerate(depths):
            axes[r, c].plot(result["x"], result["fc"][kind][d]["gradients"][0], lw=0.8)
            axes[r, c].set_title(f"{kind}, depth {d}", fontsize=9)
    for ax in axes[-1]:
        ax.set_xlabel("x")
    fig.suptitle("df/dx at initialisation (one draw)")
    fig.tight_layout()
    figs = {"gradients": fig}

    fig, axes = plt.subplots(1, len(kinds), figsize=(10, 3.4), sharey=True)
    lags = [k * result["lag_dx"] for k in range(len(result["x"]))]
    for ax, kind in zip(axes, kinds):
        for d in depths:
            ax.plot(lags[:64], result["fc"][kind][d]["autocorrelation"][:64], label=f"depth {d}")
        ax.axhline(0, color="k", lw=0.5)
        ax.set_title(f"{kind}: gradient autocorrelation", fontsize=9)
        ax.set_xlabel("input distance")
        ax.legend(fontsize=7)
    fig.tight_layout()
    figs["autocorrelation"] = fig

    fig, axes = plt.subplots(len(kinds), len(depths), figsize=(2.6 * len(depths), 2.6 * len(kinds)), squeeze=False)
    for r, kind in enumerate(kinds):
        for c, d in enumerate(depths):
            g = torch.tensor(result["fc"][kind][d]["gradients"][0])
            g = g - g.mean()
            cov = torch.outer(g, g)
            axes[r, c].imshow(cov / cov.abs().max().clamp_min(1e-30), cmap="RdBu_r", vmin=-1, vmax=1)
            axes[r, c].set_title(f"{kind}, depth {d}", fontsize=9)
            axes[r, c].axis("off")
    fig.suptitle("gradient covariance g'g'^T (one draw, normalized)")
    fig.tight_layout()
    figs["covariance"] = fig

    if result["cnn"]:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3))
        axes[0].plot(result["cnn"]["t"], result["cnn"]["gradient"])
        axes[0].set_xlabel("t (a + t(b - a))")
        axes[0].set_title("d logit / dt along a line between two images", fontsize=9)
        axes[1].plot(result["cnn"]["autocorrelation"][:64])
        axes[1].set_xlabel("lag (points)")
        axes[1].set_title("its autocorrelation", fontsize=9)
        fig.tight_layout()
        figs["cnn"] = fig
    return figs


def scalars(result: dict) -> dict:
    out = {f"shatter/{kind}/lag1": [v["lag1"] for v in result["fc"][kind].values()] for kind in result["fc"]}
    out.update({f"shatter/{kind}/corr_length": [v["corr_length"] for v in result["fc"][kind].values()]
                for kind in result["fc"]})
    if result["cnn"]:
        out["shatter/cnn/gradient"] = result["cnn"]["gradient"]
    return out


def headline(result: dict) -> dict:
    """The report's row: the correlation length (input distance where the gradient's
    autocorrelation drops below 0.5) of the plain and residual FC nets at the shallowest and
    deepest depth measured, and of the CNN along its image line if measured."""
    out = {}
    for kind, by_depth in result["fc"].items():
        depths = sorted(by_depth, key=int)
        for d in dict.fromkeys((depths[0], depths[-1])):
            out[f"{kind}-{d} corr. length"] = by_depth[d]["corr_length"]
    if result["cnn"]:
        out["CNN corr. length (t)"] = result["cnn"]["corr_length"]
    return out
