"""Lesion study (Veit, Wilber, Belongie 2016, "Residual Networks Behave Like Ensembles of
Relatively Shallow Networks", arXiv:1605.06431, sec. 4 and figs. 3-5), on a trained net at
test time:

(a) ``single``: remove each block in turn, test error per block;
(b) ``random``: remove k random blocks, k = 1..max_k, ``draws`` draws each, error against k;
(c) ``swap``: swap k random pairs of same-shaped blocks within a stage, error against the
    Kendall tau of the new block order.

Removing a residual block keeps its shortcut and drops its branch: ``act(shortcut(x))``
(``preact`` applied first where the block has one), which is exactly the block with its
branch output zeroed (tests/probes check it). Removing a plain block replaces it by the
identity, possible only where its input and output shapes agree (stride 1, same channels);
other plain blocks are not removable (``null`` in (a), never drawn in (b)). A residual
block that downsamples is removable with any shortcut (its shortcut keeps the shapes right).

``lesion.json``: ``{"blocks": [tag...], "removable": [bool...], "base_error": float,
"single": [error % or null per block], "random": {"k": [...], "errors": [[...] per k]},
"swap": {"tau": [...], "error": [...], "k": [...]}, "images": int, "split": str}``;
errors in %.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass
from typing import Annotated, Iterator, Optional

import torch
from torch import nn

from residual_lab.models.layer_names import short_name
from residual_lab.probes.common import SampledOptions, evaluate, images, progress
from residual_lab.schema import PositiveInt, at_least

#: The net's methods this probe calls: it removes and reorders blocks through ``named_blocks()``
#: and the block protocol of :mod:`residual_lab.models`; an external model's blocks are found by
#: tracing (model=external) and cannot be taken out of its forward.
REQUIRES = ("named_blocks",)


def removable(blk: nn.Module) -> bool:
    """A residual block always; a plain block if it keeps the shape (stride 1, in = out channels)."""
    if blk.shortcut is not None:
        return True
    convs = [m for m in blk.residual.modules() if isinstance(m, nn.Conv2d)]
    return all(c.stride == (1, 1) for c in convs) and convs[0].in_channels == convs[-1].out_channels


def _without_branch(blk: nn.Module):
    preact, act = getattr(blk, "preact", None), getattr(blk, "act", None)

    def forward(x: torch.Tensor) -> torch.Tensor:
        if preact is not None:
            x = preact(x)
        if blk.shortcut is None:
            return x
        out = blk.shortcut(x)
        return out if act is None else act(out)
    return forward


@contextlib.contextmanager
def removed(net: nn.Module, names: list[str]) -> Iterator[None]:
    """Within the context, the blocks ``names`` (``stages.i.blocks.j``) are removed."""
    blocks = dict(net.named_blocks())
    for name in names:
        if not removable(blocks[name]):
            raise ValueError(f"block {name} is plain and changes the shape: it cannot be removed")
        blocks[name].forward = _without_branch(blocks[name])
    try:
        yield
    finally:
        for name in names:
            del blocks[name].forward


@contextlib.contextmanager
def reordered(net: nn.Module, order: list[str]) -> Iterator[None]:
    """Within the context, block position p holds the block originally named ``order[p]``."""
    names = [n for n, _ in net.named_blocks()]
    blocks = dict(net.named_blocks())

    def place(assignment: dict[str, nn.Module]) -> None:
        for name, blk in assignment.items():
            parent, child = name.rsplit(".", 1)
            setattr(net.get_submodule(parent), child, blk)

    place({pos: blocks[src] for pos, src in zip(names, order)})
    try:
        yield
    finally:
        place(blocks)


def kendall_tau(order: list[int]) -> float:
    """Kendall's tau between ``order`` and 0..n-1 (1: unchanged, -1: reversed)."""
    n = len(order)
    s = sum((1 if order[j] > order[i] else -1) for i in range(n) for j in range(i + 1, n))
    return s / (n * (n - 1) / 2)


def _swappable(net: nn.Module) -> list[list[int]]:
    """Per stage, the indices (network order) of blocks that keep the shape and may trade places."""
    groups: dict[str, list[int]] = {}
    for i, (name, blk) in enumerate(net.named_blocks()):
        convs = [m for m in blk.residual.modules() if isinstance(m, nn.Conv2d)]
        same = all(c.stride == (1, 1) for c in convs) and convs[0].in_channels == convs[-1].out_channels
        same = same and getattr(blk, "preact", None) is None and not any(isinstance(m, nn.Conv2d) for m in (blk.shortcut or nn.Identity()).modules())
        if same:
            groups.setdefault(name.rsplit(".blocks.", 1)[0], []).append(i)
    return [g for g in groups.values() if len(g) > 1]


@dataclass
class Options(SampledOptions):
    """conf/analyze/lesion.yaml's keys with their types and ranges (the values and their meaning are there)."""

    draws: PositiveInt
    max_k: Annotated[Optional[int], at_least(1)]
    max_swaps: Annotated[Optional[int], at_least(1)]


def analyze(net: nn.Module, datamodule, options: Options, trained: bool) -> dict:
    x, y = images(datamodule, options.split, options.images, seed=options.seed)
    net.eval()
    rng = random.Random(options.seed)
    names = [n for n, _ in net.named_blocks()]
    can = [removable(b) for _, b in net.named_blocks()]
    draws = [(k, options.draws if k < sum(can) else 1) for k in range(1, (options.max_k or sum(can)) + 1)]
    groups = _swappable(net)
    n_swaps = (options.max_swaps or max((len(g) for g in groups), default=0)) if groups else 0
    # passes: the intact net, each removable block alone, the random sets, the swaps
    with progress(1 + sum(can) + sum(d for _, d in draws) + n_swaps * options.draws, "lesion") as bar:
        def err() -> float:
            bar.update()
            return evaluate(net, x, y, options.batch_size)[1]

        return _measure(net, names, can, err, rng, options, len(y), draws, groups, n_swaps)


def _measure(net: nn.Module, names: list[str], can: list[bool], err, rng: random.Random, options,
             n_images: int, draws: list[tuple[int, int]], groups: list, n_swaps: int) -> dict:
    result = {"blocks": [short_name(n) for n in names], "removable": can, "base_error": err(),
              "images": n_images, "split": options.split}

    single = []
    for name, ok in zip(names, can):
        with (removed(net, [name]) if ok else contextlib.nullcontext()):
            single.append(err() if ok else None)
    result["single"] = single

    pool = [n for n, ok in zip(names, can) if ok]
    errors = []
    for k, n_draws in draws:
        row = []
        for _ in range(n_draws):
            with removed(net, rng.sample(pool, min(k, len(pool)))):
                row.append(err())
        errors.append(row)
    result["random"] = {"k": [k for k, _ in draws], "errors": errors}

    swap = {"k": [], "tau": [], "error": []}
    for k in range(1, n_swaps + 1):
        for _ in range(options.draws):
            order = list(range(len(names)))
            for _ in range(k):
                g = rng.choice(groups)
                i, j = rng.sample(g, 2)
                order[i], order[j] = order[j], order[i]
            with reordered(net, [names[i] for i in order]):
                swap["error"].append(err())
            swap["k"].append(k)
            swap["tau"].append(kendall_tau(order))
    result["swap"] = swap
    return result


def figures(result: dict) -> dict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 3.5))
    single = [float("nan") if e is None else e for e in result["single"]]
    axes[0].plot(single, marker="o")
    axes[0].axhline(result["base_error"], color="k", ls="--", lw=0.8, label="no lesion")
    axes[0].set_xlabel("block removed")
    axes[0].set_ylabel("test error (%)")
    axes[0].legend(fontsize=7)
    rnd = result["random"]
    means = [sum(r) / len(r) for r in rnd["errors"]]
    axes[1].plot(rnd["k"], means, marker=".")
    for k, row in zip(rnd["k"], rnd["errors"]):
        axes[1].scatter([k] * len(row), row, s=4, color="gray")
    axes[1].set_xlabel("blocks removed (k)")
    axes[1].set_ylabel("error (%)")
    if result["swap"]["tau"]:
        axes[2].scatter(result["swap"]["tau"], result["swap"]["error"], s=8)
    axes[2].set_xlabel("Kendall tau of the block order")
    axes[2].set_ylabel("error (%)")
    fig.tight_layout()
    return {"errors": fig}


def scalars(result: dict) -> dict:
    rnd = result["random"]
    return {"lesion/single": result["single"],
            "lesion/random_mean": [sum(r) / len(r) for r in rnd["errors"]]}


def headline(result: dict) -> dict:
    """The report's row: intact error, the median and worst single-block removal (Veit et al.
    fig. 3), and the mean error with one and with the most blocks removed (fig. 5a)."""
    single = sorted(e for e in result["single"] if e is not None)
    rnd = result["random"]
    mean = lambda row: sum(row) / len(row)  # noqa: E731
    return {"intact %": result["base_error"],
            "one removed, median %": single[len(single) // 2] if single else None,
            "one removed, worst %": single[-1] if single else None,
            "removable": len(single),
            "k=1 mean %": mean(rnd["errors"][0]) if rnd["errors"] else None,
            "largest k": rnd["k"][-1] if rnd["k"] else None,
            "largest k mean %": mean(rnd["errors"][-1]) if rnd["errors"] else None,
            "images": result["images"]}
