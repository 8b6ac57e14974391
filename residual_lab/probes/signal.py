"""Signal propagation plots (Brock, De, Smith 2021, "Characterizing signal propagation to
close the performance gap in unnormalized ResNets", arXiv:2101.08692, sec. 3 and fig. 1).

One batch of real images, one forward and backward pass. For every block (network order):

- ``mean_sq``: average squared channel mean of the block's output, mean_c (mean_{n,h,w} x)^2;
- ``var``: average channel variance of the block's output, mean_c var_{n,h,w}(x);
- ``branch_var``: the same of the residual branch's output F(x), *before* its gate (SkipInit,
  ReZero), as Brock et al. define it (their ``res_avg_var`` in google-deepmind/deepmind-research
  ``nfnets/skipinit_resnet.py`` and ``nf_resnet.py``: measured after the branch's last conv,
  before ``skip_gain``), so a gated branch shows its real scale even while its gate is 0;
  Fixup's multiplier and last bias sit inside the branch (``blk.residual``) and count;
- ``branch_var_gated``: the same of gate * F(x), what the block adds to its shortcut (equal to
  ``branch_var`` for blocks without a gate);
- ``grad_rms``: RMS of dL/dx at the block's input, L the batch-mean cross-entropy.

Changed on 2026-12-03: ``branch_var`` was the gated value until then (0 at initialisation for
SkipInit and ReZero); records written before that date hold the gated value under ``branch_var``.

A fresh net runs in training mode (BatchNorm uses the batch's statistics, as in training
and in Brock et al.); a trained one in eval mode (``bn_mode`` overrides).

``signal.json``: ``{"blocks": [tag...], "stages": [int...], "mean_sq": [...], "var": [...],
"branch_var": [...], "branch_var_gated": [...], "grad_rms": [...], "loss": float (stages: 0-based stage index per block), "batch_size": int, "bn_mode": str,
"split": str}``; lists are per block, input to output; tags as in
:mod:`residual_lab.models.layer_names`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from residual_lab.models.external import named_blocks
from residual_lab.models.layer_names import short_name
from residual_lab.probes.common import Seed, Split, images
from residual_lab.schema import PositiveInt

KEYS = ("mean_sq", "var", "branch_var", "grad_rms")
#: The gated branch variance, measured beside the four statistics of Brock et al.
GATED_KEY = "branch_var_gated"


def _channel_stats(t: torch.Tensor) -> tuple[float, float]:
    """(mean_c mu_c^2, mean_c var_c) over every axis but 1 (channels); biased variance."""
    t = t.detach().double().transpose(0, 1).reshape(t.shape[1], -1)
    return t.mean(1).pow(2).mean().item(), t.var(1, unbiased=False).mean().item()


def measure(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict:
    """The four statistics (and ``branch_var_gated``) of every block of ``net`` on the batch
    ``(x, y)``, net mode as is.

    ``net`` is any module: a built-in family, or one whose blocks the fx pass finds
    (:func:`residual_lab.models.external.named_blocks`).
    """
    blocks = list(named_blocks(net))
    names = [name for name, _ in blocks]
    stats = {k: [None] * len(names) for k in (*KEYS, GATED_KEY)}
    handles = []
    for i, (_, blk) in enumerate(blocks):
        def on_output(module, args, out, i=i):
            stats["mean_sq"][i], stats["var"][i] = _channel_stats(out)

        def on_branch(module, args, out, i=i, blk=blk):
            stats["branch_var"][i] = _channel_stats(out)[1]  # F(x) before the gate (Brock et al.)
            gate = getattr(blk, "gate", None)  # only blocks of a norm-free init have one
            stats[GATED_KEY][i] = stats["branch_var"][i] if gate is None else _channel_stats(gate * out)[1]

        def on_input(module, args, i=i):
            if args[0].requires_grad:
                args[0].register_hook(lambda g, i=i: stats["grad_rms"].__setitem__(i, g.double().pow(2).mean().sqrt().item()))

        handles += [blk.register_forward_hook(on_output), blk.residual.register_forward_hook(on_branch),
                    blk.register_forward_pre_hook(on_input)]
    try:
        loss = F.cross_entropy(net(x).float(), y)
        loss.backward()
    finally:
        for h in handles:
            h.remove()
        net.zero_grad(set_to_none=True)
    # "stages.1." (CIFAR nets), "" (one stack), "layer2" (torchvision: the name minus the block's index)
    prefixes = [n.rsplit("blocks.", 1)[0] if "blocks." in n else n.rpartition(".")[0] for n in names]
    stage = {p: i for i, p in enumerate(dict.fromkeys(prefixes))}
    return {"blocks": [short_name(n) for n in names], "stages": [stage[p] for p in prefixes],
            **stats, "loss": loss.item(), "batch_size": len(y)}


@dataclass
class Options:
    """conf/analyze/signal.yaml's keys with their types and ranges (the values and their meaning are there)."""

    name: str
    split: Split
    batch_size: PositiveInt
    seed: Seed
    bn_mode: Literal["auto", "train", "eval"]


def analyze(net: nn.Module, datamodule, options: Options, trained: bool) -> dict:
    mode = options.bn_mode if options.bn_mode != "auto" else ("eval" if trained else "train")
    x, y = images(datamodule, options.split, options.batch_size, seed=options.seed)
    net.train(mode == "train")
    return {**measure(net, x, y), "bn_mode": mode, "split": options.split}


def figures(result: dict) -> dict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.2))
    titles = {"mean_sq": "avg squared channel mean", "var": "avg channel variance",
              "branch_var": "residual branch variance (before the gate)", "grad_rms": "RMS dL/dx at block input"}
    for ax, key in zip(axes, KEYS):
        ax.plot(range(len(result["blocks"])), result[key], marker=".", label="before the gate")
        if key == "branch_var" and GATED_KEY in result and result[GATED_KEY] != result[key]:
            ax.plot(range(len(result["blocks"])), result[GATED_KEY], ls="--", label="gate * F(x)")
            ax.legend(fontsize=7)
        ax.set_yscale("log")
        ax.set_title(titles[key], fontsize=9)
        ax.set_xlabel("block")
    fig.tight_layout()
    return {"plot": fig}


def scalars(result: dict) -> dict:
    return {f"signal/{k}": result[k] for k in (*KEYS, GATED_KEY) if k in result}


def headline(result: dict) -> dict:
    """The report's row: first and last block's variance, the last block's squared mean, the
    input-gradient RMS at the first and last block (their ratio is the vanishing), the loss."""
    return {"var first": result["var"][0], "var last": result["var"][-1],
            "mean² last": result["mean_sq"][-1], "grad RMS first": result["grad_rms"][0],
            "grad RMS last": result["grad_rms"][-1], "loss": result["loss"]}
