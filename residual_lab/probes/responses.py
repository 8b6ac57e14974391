"""Layer responses (He et al. 2015, "Deep Residual Learning for Image Recognition", sec. 4.2
and fig. 7): the standard deviation of every 3x3 layer's output, after its BN and before
the ReLU or the addition, on the test set. The paper's reading: residual functions are
closer to zero than plain layers' (smaller responses), the more so the deeper the net.

A "response" is the output of the norm that follows a 3x3 conv in its ``nn.Sequential``
(the conv's own output when no norm follows, e.g. ``norm=none`` or pre-activation units),
the net in eval mode. Its std is over all elements (images, channels, positions) of the
layer's output, accumulated in float64 over the whole split.

``responses.json``: ``{"layers": [tag...] (network order), "std": [...], "sorted_std":
[...] (descending, the paper's lower panel), "images": int, "split": str}``.
"""

from __future__ import annotations


import torch
from torch import nn

from residual_lab.models.layer_names import short_name
from residual_lab.probes.common import SampledOptions, images


def response_layers(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name of the 3x3 conv, module whose output is its response)`` in network order."""
    found = []
    for parent_name, parent in net.named_modules():
        if not isinstance(parent, nn.Sequential):
            continue
        children = list(parent.named_children())
        for i, (name, m) in enumerate(children):
            if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3):
                nxt = children[i + 1][1] if i + 1 < len(children) else None
                target = nxt if isinstance(nxt, nn.modules.batchnorm._BatchNorm) else m
                found.append((f"{parent_name}.{name}" if parent_name else name, target))
    order = {name: i for i, (name, _) in enumerate(net.named_modules())}
    return sorted(found, key=lambda item: order[item[0]])


@torch.no_grad()
def measure(net: nn.Module, x: torch.Tensor, batch_size: int = 500) -> dict:
    """Std of each response over the images ``x``, net mode as is."""
    layers = response_layers(net)
    sums = torch.zeros(len(layers), 3, dtype=torch.float64)  # count, sum, sum of squares
    handles = []
    for i, (_, m) in enumerate(layers):
        def hook(module, args, out, i=i):
            o = out.detach().double()
            sums[i] += torch.stack([torch.tensor(float(o.numel()), dtype=torch.float64), o.sum(), o.pow(2).sum()])
        handles.append(m.register_forward_hook(hook))
    try:
        for j in range(0, len(x), batch_size):
            net(x[j:j + batch_size])
    finally:
        for h in handles:
            h.remove()
    n, s, ss = sums.unbind(1)
    std = (ss / n - (s / n) ** 2).clamp_min(0).sqrt()
    return {"layers": [short_name(name) for name, _ in layers], "std": std.tolist(),
            "sorted_std": sorted(std.tolist(), reverse=True)}


#: conf/analyze/responses.yaml's keys: the shared ones alone.
Options = SampledOptions


def analyze(net: nn.Module, datamodule, options: Options, trained: bool) -> dict:
    x, _ = images(datamodule, options.split, options.images, seed=options.seed)
    net.eval()
    return {**measure(net, x, options.batch_size), "images": len(x), "split": options.split}


def figures(result: dict) -> dict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(7, 5))
    axes[0].plot(result["std"], marker=".")
    axes[0].set_xlabel("layer index (original)")
    axes[1].plot(result["sorted_std"], marker=".")
    axes[1].set_xlabel("layer index (sorted by magnitude)")
    for ax in axes:
        ax.set_ylabel("std")
    fig.tight_layout()
    return {"std": fig}


def scalars(result: dict) -> dict:
    return {"responses/std": result["std"], "responses/sorted_std": result["sorted_std"]}


def headline(result: dict) -> dict:
    """The report's row: He et al.'s Fig. 7 in three numbers (mean, largest, smallest std)."""
    std = result["std"]
    return {"layers": len(std), "mean std": sum(std) / len(std), "max std": max(std),
            "min std": min(std), "images": result["images"]}
