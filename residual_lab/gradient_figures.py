"""The drawing of per-layer gradient profiles, shared by the report and the training callback.

The report (:func:`residual_lab.results.plots.profiles_figure`) draws a sweep's profiles
from summary.json; :class:`~residual_lab.callbacks.figures.DiagnosticFigures` draws one
run's as it trains. Both import this module, which imports only numpy and matplotlib, so
neither reaches up into the other's package. Figures are built with the object API (no
pyplot state), safe inside a training process.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")  # files and TensorBoard images, not windows: headless
from matplotlib.figure import Figure  # noqa: E402

#: One line of a profile panel: (label, layer names, values, matplotlib style).
ProfileLine = tuple[str, Sequence[str], Sequence[float], dict]


def profile_panel(ax, panel_title: str, ylabel: str, lines: Sequence[ProfileLine]) -> dict[str, Any]:
    """Draw one panel of per-layer profiles against relative depth; ``{label: line}`` of the labelled lines."""
    handles: dict[str, Any] = {}
    for label, names, values, style in lines:
        x = [i / max(1, len(values) - 1) for i in range(len(values))]
        line = ax.plot(x, values, marker=".", label=label, **style)[0]
        if label:
            handles.setdefault(label, line)
    if len(lines) == 1:
        names = lines[0][1]
        every = max(1, len(names) // 12)
        ax.set_xticks([i / max(1, len(names) - 1) for i in range(0, len(names), every)], list(names)[::every],
                      fontsize=6, rotation=60)
    if any(v > 0 and math.isfinite(v) for _, _, values, _ in lines for v in values):
        ax.set_yscale("log")  # a diverged run's profile (NaN, inf, 0) has nothing a log axis can show
    ax.set_xlabel("relative depth (0 = first layer, 1 = last)", fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title(panel_title, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    return handles


def gradient_profiles(panels: Sequence[tuple[str, str, Sequence[ProfileLine]]], title: str = "",
                      panel_size: tuple[float, float] = (5.5, 4.2), legend_outside: bool = False) -> Figure:
    """Per-layer gradient profiles against relative depth (0: first layer, 1: last), log scale.

    A plain net's gradient that shrinks towards the input shows as a line falling to the left.
    With one line in a panel, its layer names label the x axis. One run's figure (the training
    callback's); a sweep's is :func:`residual_lab.results.plots.profiles_figure`, a row of these panels per experiment.

    Args:
        panels: ``(panel title, y label, lines)`` per panel, side by side.
        title: the figure's title (e.g. the run's name).
        panel_size: inches per panel (width, height).
        legend_outside: one legend for the whole figure, right of the panels, instead of one
            inside each (many lines would cover the panels).
    """
    labels = {line[0] for _, _, lines in panels for line in lines if line[0]}
    rows = max(1, int(panel_size[1] * 72 / 11) - 2)  # legend rows that fit the height at 7 pt
    columns = -(-len(labels) // rows) if legend_outside else 0
    longest = max((len(label) for label in labels), default=0)
    width = panel_size[0] * len(panels) + columns * (0.6 + longest * 0.06)  # ~0.06 in per character at 7 pt
    fig = Figure(figsize=(width, panel_size[1]), dpi=80, constrained_layout=True)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    handles: dict[str, Any] = {}
    for ax, (panel_title, ylabel, lines) in zip(axes, panels):
        drawn = profile_panel(ax, panel_title, ylabel, lines)
        handles = {**drawn, **handles}
        if not legend_outside and drawn:
            ax.legend(fontsize=7)
    if legend_outside and labels:
        fig.legend(list(handles.values()), list(handles), loc="outside right upper", fontsize=7, ncols=columns)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
