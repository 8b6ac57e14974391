"""Figures of a sweep: He et al. 2015 Fig. 6-style curves and per-layer gradient profiles.

Every function takes :class:`~residual_lab.results.loading.Run` objects and returns a
matplotlib Figure (the caller saves it), so notebooks draw the same figures as the report.
"""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")  # files, not windows: reports run headless
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from residual_lab.results.loading import Run  # noqa: E402

#: Diagnostics drawn as per-layer profiles: (summary key, names key, values key, y label).
PROFILES = (
    ("grad_norm", "layers", "grad_norm", "weight-gradient norm ||dL/dW||"),
    ("block_grad", "blocks", "grad_norm", "block-input gradient ||dL/dx_l||"),
)


def _colours(runs: list[Run]) -> dict[Any, Any]:
    """One colour per depth (Fig. 6), shared by both panels so plain-56 and resnet-56 match."""
    depths = sorted({r.get("depth") for r in runs}, key=lambda d: int(d or 0))
    if len(depths) <= 10:
        return {d: plt.get_cmap("tab10")(i) for i, d in enumerate(depths)}
    return {d: plt.get_cmap("viridis")(i / (len(depths) - 1)) for i, d in enumerate(depths)}


def curves_figure(runs: list[Run]) -> Figure:
    """Training error (thin, dashed) and validation error (bold) against optimizer steps.

    Plain nets (``shortcut=none``) on the left, residual nets on the right, one colour per
    depth, one line per run (seeds share their net's colour). The paper's Fig. 6 plots test
    error; our runs evaluate the held-out 5k validation split during training (``val/error``)
    and the test set once at the end, drawn as a star at the last step.
    """
    colours = _colours(runs)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True, constrained_layout=True)
    for ax, plain, title in ((axes[0], True, "plain"), (axes[1], False, "residual")):
        labelled = set()
        for run in runs:
            if run.is_plain != plain:
                continue
            c = colours[run.get("depth")]
            label = None if run.name in labelled else run.name
            labelled.add(run.name)
            s = run.scalars
            if "train/error" in s:
                ax.plot(*s["train/error"], color=c, lw=0.8, ls="--", alpha=0.8)
            if "val/error" in s:
                ax.plot(*s["val/error"], color=c, lw=2.2, marker="o", ms=3, label=label)
                label = None
            if "test/error" in s:
                ax.plot(*s["test/error"], color=c, marker="*", ms=10, ls="none", label=label)
        ax.set_title(f"{title} nets")
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
        if labelled:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, f"no {title} runs", ha="center", va="center", transform=ax.transAxes)
    axes[0].set_ylabel("error (%)")
    fig.suptitle("thin dashed: train error (window mean); bold: val error; star: final test error", fontsize=9)
    return fig


def profile(run: Run, key: str, names_key: str, values_key: str) -> tuple[list[str], list[float]] | None:
    """(names, values) of a per-layer diagnostic in summary.json, or None if the run has none."""
    diag = run.diagnostics.get(key) or {}
    names, values = diag.get(names_key), diag.get(values_key)
    if not names or not values or len(names) != len(values):
        return None
    return list(names), [float(v) for v in values]


def profiles_figure(runs: list[Run]) -> Figure | None:
    """The last measured per-layer gradient profiles against relative depth (0: input, 1: output).

    One line per run, log scale: a plain net's gradient that shrinks towards the input shows
    as a line falling to the left. None when no run has any of :data:`PROFILES`.
    """
    present = [(spec, [(r, p) for r in runs if (p := profile(r, *spec[:3]))]) for spec in PROFILES]
    present = [(spec, rp) for spec, rp in present if rp]
    if not present:
        return None
    colours = _colours(runs)
    fig, axes = plt.subplots(1, len(present), figsize=(5.5 * len(present), 4.2), squeeze=False,
                             constrained_layout=True)
    for ax, ((key, _, _, ylabel), rp) in zip(axes[0], present):
        for run, (names, values) in rp:
            x = [i / max(1, len(values) - 1) for i in range(len(values))]
            step = run.diagnostics[key].get("step")
            ax.plot(x, values, color=colours[run.get("depth")], ls=":" if run.is_plain else "-",
                    marker=".", label=f"{run.name} (step {step})" if step is not None else run.name)
        ax.set_yscale("log")
        ax.set_xlabel("relative depth (0 = first layer, 1 = last)")
        ax.set_ylabel(ylabel)
        ax.set_title(f"diagnostics.{key} (dotted: plain)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    return fig
