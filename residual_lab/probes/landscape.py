"""Loss landscape along filter-normalised random directions (Li et al. 2018, "Visualizing
the Loss Landscape of Neural Nets", arXiv:1712.09913, sec. 4 and figs. 1, 5).

A direction d has the shape of the weights; it is drawn N(0, 1) and each filter d_{i} of a
conv or linear weight (index i along dim 0) is rescaled to the norm of the weight's filter
w_{i}: d_{i} <- d_{i} ||w_{i}|| / ||d_{i}||. Parameters of dim <= 1 (biases, BN scale and
shift, scalar gates) get a zero direction (sec. 4, "we set the direction to zero for BN
parameters"). The net is in eval mode (BN uses its running statistics), images come
without augmentation. Loss and error are evaluated at w + a d (line) and w + a d1 + b d2
(plane) for a, b on an evenly spaced grid over [-span, span].

On a CPU: ``images`` of the split (default 1000, seeded) and a coarse grid; both are stored
in the output so the figure states what was evaluated.

``landscape.json``: ``{"coords_1d": [...], "loss_1d": [...], "error_1d": [...], "coords_2d":
[...], "loss_2d": [[...] per a] (b along the inner index), "error_2d": [[...]], "images":
int, "split": str, "span": float}``; errors in %, loss is the mean cross-entropy.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Annotated, Iterator

import torch
from torch import nn

from residual_lab.probes.common import LinePoints, Positive, SampledOptions, evaluate, images, progress
from residual_lab.schema import Range


def filter_normalized_direction(net: nn.Module, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """A random direction, per parameter name, with each filter's norm equal to the weight's."""
    direction = {}
    for name, p in net.named_parameters():
        if p.dim() <= 1:
            direction[name] = torch.zeros_like(p)
            continue
        d = torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device)
        w_norm = p.detach().flatten(1).norm(dim=1)
        d_norm = d.flatten(1).norm(dim=1).clamp_min(1e-12)
        direction[name] = d * (w_norm / d_norm).view(-1, *[1] * (p.dim() - 1))
    return direction


@contextlib.contextmanager
def moved(net: nn.Module, steps: list[tuple[float, dict[str, torch.Tensor]]]) -> Iterator[None]:
    """Within the context the weights are w + sum_k a_k d_k; restored exactly afterwards."""
    saved = {n: p.detach().clone() for n, p in net.named_parameters()}
    with torch.no_grad():
        for name, p in net.named_parameters():
            for a, d in steps:
                p.add_(d[name], alpha=a)
    try:
        yield
    finally:
        with torch.no_grad():
            for name, p in net.named_parameters():
                p.copy_(saved[name])


@dataclass
class Options(SampledOptions):
    """conf/analyze/landscape.yaml's keys with their types and ranges (the values and their meaning are there)."""

    span: Positive
    points_1d: LinePoints
    points_2d: Annotated[int, Range(lambda v: v == 0 or v >= 2, "0 (no plane) or >= 2")]


def analyze(net: nn.Module, datamodule, options: Options, trained: bool) -> dict:
    x, y = images(datamodule, options.split, options.images, seed=options.seed)
    net.eval()
    gen = torch.Generator().manual_seed(options.seed)
    d1, d2 = filter_normalized_direction(net, gen), filter_normalized_direction(net, gen)
    result = {"images": len(y), "split": options.split, "span": options.span}
    coords = torch.linspace(-options.span, options.span, options.points_1d).tolist()
    coords2 = torch.linspace(-options.span, options.span, options.points_2d).tolist() if options.points_2d else []
    with progress(len(coords) + len(coords2) ** 2, "landscape") as bar:
        def ev() -> tuple[float, float]:
            bar.update()
            return evaluate(net, x, y, options.batch_size)

        line = []
        for a in coords:
            with moved(net, [(a, d1)]):
                line.append(ev())
        result.update(coords_1d=coords, loss_1d=[v[0] for v in line], error_1d=[v[1] for v in line])

        loss2, err2 = [], []
        for a in coords2:
            row = []
            for b in coords2:
                with moved(net, [(a, d1), (b, d2)]):
                    row.append(ev())
            loss2.append([v[0] for v in row])
            err2.append([v[1] for v in row])
    result.update(coords_2d=coords2, loss_2d=loss2, error_2d=err2)
    return result


def figures(result: dict) -> dict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(result["coords_1d"], result["loss_1d"], label="loss")
    ax.set_xlabel("alpha (filter-normalised direction)")
    ax.set_ylabel("loss")
    ax2 = ax.twinx()
    ax2.plot(result["coords_1d"], result["error_1d"], color="C1", ls="--", label="error (%)")
    ax2.set_ylabel("error (%)")
    ax.set_title(f"{result['images']} {result['split']} images", fontsize=9)
    fig.tight_layout()
    figs = {"line": fig}
    if result["coords_2d"]:
        fig, ax = plt.subplots(figsize=(4.5, 4))
        c = result["coords_2d"]
        cs = ax.contour(c, c, torch.tensor(result["loss_2d"]).T.numpy(), levels=20)
        ax.clabel(cs, fontsize=6)
        ax.set_xlabel("alpha (d1)")
        ax.set_ylabel("beta (d2)")
        ax.set_title(f"loss, {len(c)}x{len(c)} grid, {result['images']} {result['split']} images", fontsize=9)
        fig.tight_layout()
        figs["contour"] = fig
    return figs


def scalars(result: dict) -> dict:
    return {"landscape/loss_1d": result["loss_1d"], "landscape/error_1d": result["error_1d"]}


def headline(result: dict) -> dict:
    """The report's row: loss and error at the weights (the line's middle point) and the
    largest loss on the line (how steep the walls are within +-span), and what was evaluated."""
    mid = min(range(len(result["coords_1d"])), key=lambda i: abs(result["coords_1d"][i]))
    return {"loss at weights": result["loss_1d"][mid], "error at weights %": result["error_1d"][mid],
            "max loss on line": max(result["loss_1d"]), "span": result["span"],
            "grid 2-D": len(result["coords_2d"]), "images": result["images"]}
