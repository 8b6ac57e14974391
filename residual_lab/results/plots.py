"""Figures of a sweep: He et al. 2015 Fig. 6-style curves and per-layer gradient profiles.

Every function returns a matplotlib Figure (the caller saves it), so notebooks draw the
same figures as the report. :func:`gradient_profiles` is the one drawing of per-layer
gradient profiles: the report draws it for a sweep, the training callback
(:class:`~residual_lab.callbacks.figures.DiagnosticFigures`) for one run as it trains.
Figures are built with the object API (no pyplot state), safe inside a training process.
"""

from __future__ import annotations

from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")  # files, not windows: reports run headless
import numpy as np  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from residual_lab.results.loading import Run  # noqa: E402

#: Diagnostics drawn as per-layer profiles: (summary key, names key, values key, y label).
PROFILES = (
    ("grad_norm", "layers", "grad_norm", "weight-gradient norm ||dL/dW||"),
    ("block_grad", "blocks", "grad_norm", "block-input gradient dL/dx_l"),
)


def _colours(runs: Sequence[Run]) -> dict[Any, Any]:
    """One colour per depth (Fig. 6), shared by both panels so plain-56 and resnet-56 match."""
    depths = sorted({r.get("depth") for r in runs}, key=lambda d: int(d or 0))
    if len(depths) <= 10:
        return {d: colormaps["tab10"](i) for i, d in enumerate(depths)}
    return {d: colormaps["viridis"](i / (len(depths) - 1)) for i, d in enumerate(depths)}


def _seed_groups(runs: Sequence[Run]) -> list[tuple[str, list[Run]]]:
    """(label, runs) per experiment: completed runs grouped over seeds as the table groups them,
    every other run alone (its curve is drawn as it is)."""
    from residual_lab.results.tables import aggregate  # tables imports nothing from here

    groups = []
    for row in aggregate(list(runs)):
        label = row.runs[0].name + ("" if row.label == "–" else f" [{row.label}]")
        groups.append((label + (f" (n={row.n})" if row.n > 1 else ""), row.runs))
    groups += [(f"{r.name} ({r.status})", [r]) for r in runs if r.status != "completed"]
    return groups


def _mean_band(curves: list[tuple[list[int], list[float]]]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Steps all seeds logged, their mean and sample std (None for one seed)."""
    common = sorted(set.intersection(*(set(steps) for steps, _ in curves)))
    if not common:  # seeds logged at different steps: draw the first as it is
        steps, values = curves[0]
        return np.asarray(steps), np.asarray(values), None
    table = np.array([[dict(zip(steps, values))[s] for s in common] for steps, values in curves])
    std = table.std(axis=0, ddof=1) if len(curves) > 1 else None
    return np.asarray(common), table.mean(axis=0), std


def curves_figure(runs: list[Run]) -> Figure:
    """Training error (thin, dashed) and validation error (bold) against optimizer steps.

    Plain nets (``shortcut=none``) on the left, residual nets on the right, one colour per
    depth. An experiment with several seeds is drawn as the mean over its seeds with a band
    of ± one sample std; one seed, or a run that did not complete, as its own line. The
    paper's Fig. 6 plots test error; our heldout runs evaluate the 5k validation split during
    training (``val/error``) and the test set once at the end, drawn as a star at the last step.
    """
    colours = _colours(runs)
    fig = Figure(figsize=(11, 4.2), constrained_layout=True)
    axes = fig.subplots(1, 2, sharey=True)
    groups = _seed_groups(runs)
    for ax, plain, title in ((axes[0], True, "plain"), (axes[1], False, "residual")):
        drawn = 0
        for label, members in groups:
            if members[0].is_plain != plain:
                continue
            c = colours[members[0].get("depth")]
            for tag, style in (("val/error", dict(lw=2.2, marker="o", ms=3)),
                               ("test/error", dict(marker="*", ms=10, ls="none")),
                               ("train/error", dict(lw=0.8, ls="--", alpha=0.8))):
                curves = [m.scalars[tag] for m in members if tag in m.scalars]
                if not curves:
                    continue
                steps, mean, std = _mean_band(curves)
                ax.plot(steps, mean, color=c, label=label, **style)
                label = None  # one legend entry per experiment
                if std is not None:
                    if tag == "test/error":
                        ax.errorbar(steps, mean, yerr=std, color=c, ls="none", capsize=3)
                    else:
                        ax.fill_between(steps, mean - std, mean + std, color=c, alpha=0.15, lw=0)
                drawn += 1
        ax.set_title(f"{title} nets")
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, f"no {title} runs", ha="center", va="center", transform=ax.transAxes)
    axes[0].set_ylabel("error (%)")
    fig.suptitle("thin dashed: train error (window mean); bold: val error; star: final test error; "
                 "several seeds: mean, band ± 1 sample std", fontsize=9)
    return fig


def profile(run: Run, key: str, names_key: str, values_key: str) -> tuple[list[str], list[float]] | None:
    """(names, values) of a per-layer diagnostic in summary.json, or None if the run has none."""
    diag = run.diagnostics.get(key) or {}
    names, values = diag.get(names_key), diag.get(values_key)
    if not names or not values or len(names) != len(values):
        return None
    return list(names), [float(v) for v in values]


#: One line of a profile panel: (label, layer names, values, matplotlib style).
ProfileLine = tuple[str, Sequence[str], Sequence[float], dict]


def gradient_profiles(panels: Sequence[tuple[str, str, Sequence[ProfileLine]]], title: str = "",
                      panel_size: tuple[float, float] = (5.5, 4.2)) -> Figure:
    """Per-layer gradient profiles against relative depth (0: first layer, 1: last), log scale.

    A plain net's gradient that shrinks towards the input shows as a line falling to the left.
    With one line in a panel, its layer names label the x axis.

    Args:
        panels: ``(panel title, y label, lines)`` per panel, side by side.
        title: the figure's title (e.g. the run's name).
        panel_size: inches per panel (width, height).
    """
    fig = Figure(figsize=(panel_size[0] * len(panels), panel_size[1]), dpi=80, constrained_layout=True)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (panel_title, ylabel, lines) in zip(axes, panels):
        for label, names, values, style in lines:
            x = [i / max(1, len(values) - 1) for i in range(len(values))]
            ax.plot(x, values, marker=".", label=label, **style)
        if len(lines) == 1:
            names = lines[0][1]
            every = max(1, len(names) // 12)
            ax.set_xticks([i / max(1, len(names) - 1) for i in range(0, len(names), every)], list(names)[::every],
                          fontsize=6, rotation=60)
        ax.set_yscale("log")
        ax.set_xlabel("relative depth (0 = first layer, 1 = last)")
        ax.set_ylabel(ylabel)
        ax.set_title(panel_title, fontsize=9)
        ax.grid(alpha=0.3, which="both")
        if any(line[0] for line in lines):
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def profiles_figure(runs: list[Run]) -> Figure | None:
    """The last measured per-layer gradient profiles of every run in summary.json (:data:`PROFILES`).

    One line per run, dotted for plain nets, one colour per depth. None when no run has any.
    """
    colours = _colours(runs)
    panels = []
    for key, names_key, values_key, ylabel in PROFILES:
        lines = []
        for run in runs:
            if (p := profile(run, key, names_key, values_key)) is None:
                continue
            step = run.diagnostics[key].get("step")
            lines.append((f"{run.name} (step {step})" if step is not None else run.name, p[0], p[1],
                          dict(color=colours[run.get("depth")], ls=":" if run.is_plain else "-")))
        if lines:
            panels.append((f"diagnostics.{key} (dotted: plain)", ylabel, lines))
    return gradient_profiles(panels) if panels else None
