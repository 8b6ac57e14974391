"""Gradient noise scale and per-layer gradient signal-to-noise ratio (McCandlish, Kaplan,
Amodei et al. 2018, "An Empirical Model of Large-Batch Training", arXiv:1812.06162, sec. 2.2
and appendix A.1).

The simple noise scale B_simple = tr(Sigma) / |G|^2, with G the true gradient and Sigma the
per-example gradient covariance, is the batch size at which the noise of a minibatch
gradient (tr(Sigma) / B) equals the signal |G|^2: SGD with batches much smaller than
B_simple is noise-dominated. From ``batches`` gradients g_1..g_K of disjoint batches of
``batch_size`` = b training images (seeded, no augmentation) the unbiased estimates of
their appendix A.1 (two batch sizes, B_small = b and B_big = K b, the mean of the g_i) are

    |G|^2 ~ (K |mean g|^2 - mean |g_i|^2) / (K - 1),
    tr(Sigma) ~ b K / (K - 1) (mean |g_i|^2 - |mean g|^2)   (= b times the sample variance),

and SNR = |G|^2 / (tr(Sigma) / b) = b / B_simple, the signal-to-noise ratio of one batch's
gradient. Both are computed for the whole net, per block (stem, blocks, head) and per
weighted layer (conv, linear). |G|^2 can come out <= 0 where noise dominates: then
B_simple is reported as null (not measurable with these K batches) and the SNR as
estimated (<= 0), which says the same.

The net runs as SGD sees it: in training mode (``bn_mode: train``, BatchNorm normalizes by
each batch's statistics; its running statistics are restored afterwards), so the "per-
example" covariance is b times the covariance of batch-b gradients, the quantity the
estimator measures in practice (McCandlish et al. measure batch gradients too).
``bn_mode: eval`` uses running statistics (a fresh net's set from all K b images first).

``gradient_noise.json``: ``{"batch_size": int, "batches": int, "split": str, "bn_mode": str,
"loss": float (mean batch loss), "net": {"grad_sq", "trace_cov", "b_simple", "snr"},
"blocks": [tag...], "block_grad_sq", "block_trace_cov", "block_b_simple", "block_snr",
"layers": [tag...], "layer_grad_sq", "layer_trace_cov", "layer_b_simple", "layer_snr"}``
(lists per block/layer in network order; b_simple in images).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from residual_lab.models.layer_names import WEIGHTED, short_name
from residual_lab.probes import curvature
from residual_lab.probes.common import Seed, Split, calibrate_batch_norm, images
from residual_lab.schema import PositiveInt


def noise_scale(sum_g_sq: float, mean_sq: float, batches: int, batch_size: int) -> dict:
    """McCandlish et al. appendix A.1 from |mean g|^2 (``sum_g_sq``) and mean |g_i|^2 (``mean_sq``)
    of ``batches`` gradients of ``batch_size`` examples each."""
    k, b = batches, batch_size
    grad_sq = (k * sum_g_sq - mean_sq) / (k - 1)
    trace_cov = b * k / (k - 1) * (mean_sq - sum_g_sq)
    ok = grad_sq > 0
    return {"grad_sq": grad_sq, "trace_cov": trace_cov, "b_simple": trace_cov / grad_sq if ok else None,
            "snr": grad_sq / (trace_cov / b) if trace_cov > 0 else None}


def _index(net: nn.Module) -> tuple[list[str], list[int], list[str], list[int]]:
    """Per parameter (``net.parameters()`` order): its block group, and its weighted layer
    (or -1); the group and layer names in network order."""
    groups = curvature.parameter_groups(net)
    block_names = list(dict.fromkeys(groups))
    layer_of = {id(m.weight): short_name(n) for n, m in net.named_modules() if isinstance(m, WEIGHTED)}
    layer_tags = [layer_of.get(id(p)) for p in net.parameters()]
    layer_names = [t for t in layer_tags if t is not None]
    return (block_names, [block_names.index(g) for g in groups], layer_names,
            [-1 if t is None else layer_names.index(t) for t in layer_tags])


def batch_gradients(net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int):
    """Yield (loss, [grad per parameter]) of each consecutive batch of ``batch_size`` images."""
    params = list(net.parameters())
    for i in range(0, len(y) - batch_size + 1, batch_size):
        out = net(x[i:i + batch_size])
        loss = F.cross_entropy(out.float() if out.dtype in (torch.float16, torch.bfloat16) else out, y[i:i + batch_size])
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        yield loss.item(), [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]


def measure(net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> dict:
    """The noise scales of the module doc from the gradients of the consecutive batches of ``(x, y)``."""
    block_names, block_of, layer_names, layer_of = _index(net)
    params = list(net.parameters())
    total = [torch.zeros_like(p, dtype=torch.float64) for p in params]
    sq_block = torch.zeros(len(block_names), dtype=torch.float64)
    sq_layer = torch.zeros(len(layer_names), dtype=torch.float64)
    losses = []
    for loss, grads in batch_gradients(net, x, y, batch_size):
        losses.append(loss)
        for j, g in enumerate(grads):
            total[j] += g.double()
            s = g.double().pow(2).sum().cpu()
            sq_block[block_of[j]] += s
            if layer_of[j] >= 0:
                sq_layer[layer_of[j]] += s
    k = len(losses)
    if k < 2:
        raise ValueError(f"gradient_noise needs at least 2 batches of {batch_size} images; got {len(y)} images")
    mean_sq_block, mean_sq_layer = sq_block / k, sq_layer / k
    g_block = torch.zeros(len(block_names), dtype=torch.float64)
    g_layer = torch.zeros(len(layer_names), dtype=torch.float64)
    for j, t in enumerate(total):
        s = (t / k).pow(2).sum().cpu()
        g_block[block_of[j]] += s
        if layer_of[j] >= 0:
            g_layer[layer_of[j]] += s

    def table(prefix: str, names: list[str], g: torch.Tensor, m: torch.Tensor) -> dict:
        rows = [noise_scale(float(a), float(b), k, batch_size) for a, b in zip(g, m)]
        return {prefix + "s": names, **{f"{prefix}_{key}": [r[key] for r in rows]
                                        for key in ("grad_sq", "trace_cov", "b_simple", "snr")}}

    return {"batch_size": batch_size, "batches": k, "loss": sum(losses) / k,
            "net": noise_scale(float(g_block.sum()), float(mean_sq_block.sum()), k, batch_size),
            **table("block", block_names, g_block, mean_sq_block),
            **table("layer", layer_names, g_layer, mean_sq_layer)}


@dataclass
class Options:
    """conf/analyze/gradient_noise.yaml's keys with their types and ranges (the values and their meaning are there)."""

    name: str
    split: Split
    batch_size: PositiveInt
    batches: PositiveInt
    seed: Seed
    bn_mode: Literal["train", "eval"]


def analyze(net: nn.Module, datamodule, options: Options, trained: bool) -> dict:
    x, y = images(datamodule, options.split, options.batch_size * options.batches, seed=options.seed)
    saved = copy.deepcopy(dict(net.named_buffers()))
    if options.bn_mode == "eval" and not trained:
        calibrate_batch_norm(net, x)
    net.train(options.bn_mode == "train")
    try:
        result = measure(net, x, y, options.batch_size)
    finally:
        with torch.no_grad():  # training-mode forwards moved the BN running statistics
            for name, buf in net.named_buffers():
                buf.copy_(saved[name])
        net.zero_grad(set_to_none=True)
    return {**result, "split": options.split, "bn_mode": options.bn_mode}


def figures(result: dict) -> dict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nan = lambda xs: [float("nan") if v is None else v for v in xs]  # noqa: E731
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
    for ax, prefix in zip(axes, ("block", "layer")):
        ax.semilogy(nan(result[f"{prefix}_b_simple"]), marker=".", label="B_simple (images)")
        ax.semilogy(nan(result[f"{prefix}_snr"]), marker=".", ls="--", label=f"SNR at b = {result['batch_size']}")
        ax.set_xticks(range(len(result[f"{prefix}s"])), result[f"{prefix}s"], rotation=90, fontsize=5)
        ax.set_title(f"per {prefix}; whole net B_simple = {result['net']['b_simple'] or float('nan'):.3g} "
                     f"({result['batches']} batches of {result['batch_size']}, BN {result['bn_mode']})", fontsize=8)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return {"noise": fig}


def scalars(result: dict) -> dict:
    return {"gradient_noise/block_b_simple": result["block_b_simple"], "gradient_noise/block_snr": result["block_snr"]}


def headline(result: dict) -> dict:
    """The report's row: the whole net's B_simple, |G|^2 and tr(Sigma), the SNR at the
    measured batch size, the largest and smallest per-layer B_simple, and the budget (keys
    hold no "|": they head a markdown table)."""
    layer = [v for v in result["layer_b_simple"] if v is not None]
    return {"B_simple": result["net"]["b_simple"], "‖G‖²": result["net"]["grad_sq"],
            "tr Σ": result["net"]["trace_cov"], "SNR": result["net"]["snr"],
            "layer B_simple min": min(layer, default=None), "layer B_simple max": max(layer, default=None),
            "batch": result["batch_size"], "batches": result["batches"]}
