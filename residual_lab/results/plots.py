"""Figures of a sweep: He et al. 2015 Fig. 6-style curves and per-layer gradient profiles.

Every function returns a matplotlib Figure (the caller saves it), so notebooks draw the
same figures as the report. Per-layer gradient profiles are drawn by
:func:`residual_lab.gradient_figures.gradient_profiles`, below both this module and the
training callback (:class:`~residual_lab.callbacks.figures.DiagnosticFigures`), which
draws them for one run as it trains.
Figures are built with the object API (no pyplot state), safe inside a training process.
"""

from __future__ import annotations

from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")  # files, not windows: reports run headless
import numpy as np  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from residual_lab.gradient_figures import gradient_profiles  # noqa: E402
from residual_lab.results.loading import Run  # noqa: E402

#: Diagnostics drawn as per-layer profiles: (summary key, names key, values key, y label).
PROFILES = (
    ("grad_norm", "layers", "grad_norm", "weight-gradient norm ||dL/dW||"),
    ("block_grad", "blocks", "grad_rms", "block-input gradient dL/dx_l"),
)


def _variant_fields(runs: Sequence[Run]) -> tuple[list[str], set]:
    """What tells nets of a sweep apart besides depth and plain-vs-residual: the fields that
    vary (norm, block, init, ...) and the residual nets' shortcuts (A/B/C when several)."""
    from residual_lab.results.tables import varying_fields  # tables imports nothing from here

    fields = [k for k in varying_fields(runs, completed_only=False) if k not in ("depth", "shortcut", "run_name")]
    return fields, {r.get("shortcut") for r in runs if not r.is_plain}


def colour_key(runs: Sequence[Run]):
    """A function run -> the key its colour is looked up by: the depth and every other field
    that varies in ``runs``, except what tells a plain net from its residual twin (shortcut
    ``none``, the run name). plain-56 and resnet-56 share a colour (Fig. 6); norm=batch and
    norm=none, pre-norm and post-norm, shortcut A and B get different ones."""
    fields, residual_shortcuts = _variant_fields(runs)

    def key(run: Run) -> tuple:
        shortcut = () if len(residual_shortcuts) < 2 or run.is_plain else (run.get("shortcut"),)
        return (run.get("depth"), *shortcut, *(run.get(k) for k in fields))

    return key


def _colours(runs: Sequence[Run]) -> tuple[Any, dict[Any, Any]]:
    """(:func:`colour_key`, ``{key: colour}``), shared by both panels so plain-56 and resnet-56 match."""
    key = colour_key(runs)
    keys = sorted({key(r) for r in runs}, key=lambda k: (int(k[0] or 0), repr(k[1:])))
    if len(keys) <= 10:
        return key, {k: colormaps["tab10"](i) for i, k in enumerate(keys)}
    if len(keys) <= 20:
        return key, {k: colormaps["tab20"](i) for i, k in enumerate(keys)}
    return key, {k: colormaps["viridis"](i / (len(keys) - 1)) for i, k in enumerate(keys)}


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
    key, colours = _colours(runs)
    fig = Figure(figsize=(11, 4.2), constrained_layout=True)
    axes = fig.subplots(1, 2, sharey=True)
    groups = _seed_groups(runs)
    shown: set[str] = set()
    for ax, plain, title in ((axes[0], True, "plain"), (axes[1], False, "residual")):
        drawn = 0
        for label, members in groups:
            if members[0].is_plain != plain:
                continue
            c = colours[key(members[0])]
            for tag, style in (("val/error", dict(lw=2.2, marker="o", ms=3)),
                               ("test/error", dict(marker="*", ms=10, ls="none")),
                               ("train/error", dict(lw=0.8, ls="--", alpha=0.8))):
                curves = [m.scalars[tag] for m in members if tag in m.scalars]
                if not curves:
                    continue
                steps, mean, std = _mean_band(curves)
                shown.add(tag)
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
    # The title names only what is drawn: protocol=paper runs have no validation curve.
    legend = {"train/error": "thin dashed: train error (window mean)", "val/error": "bold: val error",
              "test/error": "star: final test error"}
    fig.suptitle("; ".join([legend[t] for t in legend if t in shown] + ["several seeds: mean, band ± 1 sample std"]),
                 fontsize=9)
    return fig


def profile(run: Run, key: str, names_key: str, values_key: str) -> tuple[list[str], list[float]] | None:
    """(names, values) of a per-layer diagnostic in summary.json, or None if the run has none."""
    diag = run.diagnostics.get(key) or {}
    names, values = diag.get(names_key), diag.get(values_key)
    if not names or not values or len(names) != len(values):
        return None
    return list(names), [float(v) for v in values]


def _seed_mean_profile(members: Sequence[Run], key: str, names_key: str,
                       values_key: str) -> tuple[list[str], list[float]] | None:
    """The geometric mean over seeds of a per-layer profile (a log-scale quantity), or None
    if no seed has it. Seeds whose layer names differ from the first's are left out."""
    profiles = [p for m in members if (p := profile(m, key, names_key, values_key)) is not None]
    if not profiles:
        return None
    names = profiles[0][0]
    same = np.array([v for n, v in profiles if n == names], dtype=float)
    with np.errstate(divide="ignore"):
        return names, [float(v) for v in np.exp(np.log(same).mean(axis=0))]


def profiles_figure(runs: list[Run]) -> Figure | None:
    """The last measured per-layer gradient profiles in summary.json (:data:`PROFILES`).

    One line per experiment: the geometric mean over its seeds (each run alone if it did not
    complete); dotted for plain nets, colours as in :func:`curves_figure`, one legend beside
    the panels. None when no run has any.
    """
    key, colours = _colours(runs)
    panels = []
    for diag_key, names_key, values_key, ylabel in PROFILES:
        lines, steps = [], []
        for label, members in _seed_groups(runs):
            if (p := _seed_mean_profile(members, diag_key, names_key, values_key)) is None:
                continue
            steps.append(members[0].diagnostics[diag_key].get("step"))
            lines.append([label, p[0], p[1], dict(color=colours[key(members[0])],
                                                  ls=":" if members[0].is_plain else "-")])
        if not lines:
            continue
        title = f"diagnostics.{diag_key} (dotted: plain; seeds: geometric mean)"
        if len(set(steps)) == 1:  # one step for all: say it once
            title += f", step {steps[0]}" if steps[0] is not None else ""
        else:
            for line, step in zip(lines, steps):
                line[0] += f" (step {step})" if step is not None else ""
        panels.append((title, ylabel, [tuple(line) for line in lines]))
    return gradient_profiles(panels, legend_outside=True) if panels else None


#: Markers of the runs that did not complete in :func:`depth_figure`.
FAILED_MARKER = dict(marker="x", ms=8, mew=2, ls="none")


def _families(runs: Sequence[Run]) -> dict[str, list[Run]]:
    """Runs per model family (summary.json ``model``: CifarResNet, MLP, VisionTransformer, ...)."""
    return {f: [r for r in runs if str(r.get("model")) == f] for f in sorted({str(r.get("model")) for r in runs})}


def _line_namer(members: Sequence[Run]):
    """A function run -> its line's name within one family's runs: ``plain``/``residual`` (with
    the shortcut when the family has several) and the other fields that vary but depth."""
    fields, residual_shortcuts = _variant_fields(members)

    def name(run: Run) -> str:
        kind = "plain" if run.is_plain else (
            f"residual ({run.get('shortcut')})" if len(residual_shortcuts) > 1 else "residual")
        return ", ".join([kind, *(f"{k}={run.get(k)}" for k in fields)])

    return name


def depth_lines(runs: Sequence[Run], metric: str = "train_loss") -> dict[str, dict[str, dict[int, list[float]]]]:
    """``{model family: {line: {depth: [metric per completed seed]}}}`` of a sweep over depth.

    A line is one net at every depth: plain or residual (with its shortcut when the family
    has several) and the other fields that vary within the family (norm, block, width, ...),
    named like ``residual (identity), norm=none``. Families with a single depth are left out.
    """
    out: dict[str, dict[str, dict[int, list[float]]]] = {}
    for family, members in _families(runs).items():
        if len({r.get("depth") for r in members}) < 2:
            continue
        label_of = _line_namer(members)
        lines: dict[str, dict[int, list[float]]] = {}
        for run in sorted(members, key=lambda r: (not r.is_plain, int(r.get("depth") or 0))):
            label = label_of(run)
            values = lines.setdefault(label, {}).setdefault(int(run.get("depth")), [])
            if run.status == "completed" and run.get(metric) is not None:
                values.append(float(run.get(metric)))
        out[family] = lines
    return out


def depth_figure(runs: Sequence[Run], metric: str = "train_loss", chance: float | None = None) -> Figure | None:
    """The final training loss against depth, plain (dashed) against residual (solid) nets,
    one panel per model family: where a plain net stops training as it gets deeper, its line
    rises to chance (ln 10 = 2.30 for 10 classes) while its residual twin's stays down.

    Each point: the mean over completed seeds, the bar ± one sample std. A depth where no
    seed completed (diverged, failed) is an x at the top of the panel. Colours name the other
    fields that vary (norm, block, ...), shared by a plain net and its twin. None when no
    family was run at two depths or more. ``chance``: the loss of a constant uniform guess
    (ln 10 for 10 classes), drawn as a grey line when given (summary.json does not say how
    many classes a run had).
    """
    families = depth_lines(runs, metric)
    if not families:
        return None
    fig = Figure(figsize=(max(6.0, 4.4 * len(families)), 3.8), constrained_layout=True)  # room for the title
    axes = fig.subplots(1, len(families), squeeze=False)[0]
    for ax, (family, lines) in zip(axes, families.items()):
        variants = sorted({label.split(", ", 1)[1] if ", " in label else "" for label in lines})
        for label, by_depth in lines.items():
            variant = label.split(", ", 1)[1] if ", " in label else ""
            style = dict(color=colormaps["tab10"](variants.index(variant) % 10),
                         ls="--" if label.startswith("plain") else "-")
            done = {d: v for d, v in sorted(by_depth.items()) if v}
            if done:
                depths = list(done)
                mean = [float(np.mean(v)) for v in done.values()]
                std = [float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for v in done.values()]
                n = sorted({len(v) for v in done.values()})
                ax.errorbar(depths, mean, yerr=std, marker="o", ms=4, capsize=3,
                            label=f"{label} (n={'-'.join(map(str, n))})", **style)
            failed = [d for d, v in by_depth.items() if not v]
            if failed:
                ax.plot(failed, [1.0] * len(failed), transform=ax.get_xaxis_transform(), clip_on=False,
                        color=style["color"], **FAILED_MARKER)
        if chance is not None:
            ax.axhline(chance, color="grey", ls=":", lw=1, label=f"chance ({chance:.3g})")
        ax.set_xscale("log", base=2)
        depths = sorted({d for by_depth in lines.values() for d in by_depth})
        ax.set_xticks(depths, [str(d) for d in depths])
        ax.minorticks_off()
        ax.set_xlabel("depth (layers / blocks)")
        ax.set_ylabel(f"final {metric.replace('_', ' ')}")
        ax.set_title(family, fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=6)
    fig.suptitle("dashed: plain, solid: residual; mean ± 1 sample std over seeds; x: no seed completed",
                 fontsize=9)
    return fig


def _token_stats(run: Run, when: str) -> dict[str, Any] | None:
    """summary.json's ``diagnostics.token_stats`` at the end (``when="end"``) or at init."""
    stats = run.diagnostics.get("token_stats") or {}
    stats = stats.get("initial") if when == "init" else stats
    return stats if stats and stats.get("var_ratio") and stats.get("rank_collapse") else None


def token_stats_figure(runs: Sequence[Run]) -> Figure | None:
    """The Transformer diagnostics of :class:`~residual_lab.callbacks.TokenStats` against depth.

    Left: Var[F(x)] / Var[x + F(x)] averaged over a net's blocks (Liu et al. 2020: about 1/2 in
    post-LN blocks, smaller in pre-LN ones); residual nets only (a plain block's ratio is 1 by
    definition). Middle: ||X - 1 x^T|| / ||X|| of the last block's output tokens (Dong et al.
    2021: towards 0 with depth without skips), on a log scale like the others. Right: the ratio per block of each variant's
    deepest net. Open markers, dotted: at init; filled, solid: at the last measurement. Each
    point is the mean over completed seeds. None when no completed run logged token stats.
    """
    done = [r for r in runs if r.status == "completed" and _token_stats(r, "end")]
    if not done:
        return None
    fig = Figure(figsize=(14, 4), constrained_layout=True)
    axes = fig.subplots(1, 3)
    variants: dict[str, list[Run]] = {}
    families = _families(done)
    for family, members in families.items():
        label_of = _line_namer(members)
        for run in members:
            label = label_of(run) if len(families) == 1 else f"{family}: {label_of(run)}"
            variants.setdefault(label, []).append(run)
    for i, (label, members) in enumerate(sorted(variants.items())):
        colour = colormaps["tab10"](i % 10)
        depths = sorted({int(r.get("depth")) for r in members})
        for when, style in (("init", dict(ls=":", mfc="none")), ("end", dict(ls="-"))):
            var = [np.mean([np.mean(_token_stats(r, when)["var_ratio"]) for r in members
                            if int(r.get("depth")) == d and _token_stats(r, when)]) for d in depths]
            rank = [np.mean([_token_stats(r, when)["rank_collapse"][-1] for r in members
                             if int(r.get("depth")) == d and _token_stats(r, when)]) for d in depths]
            tag = f"{label} ({when})"
            if not members[0].is_plain:
                axes[0].plot(depths, var, marker="o", color=colour, label=tag, **style)
            axes[1].plot(depths, rank, marker="o", color=colour, label=tag, **style)
        deepest = [r for r in members if int(r.get("depth")) == depths[-1]]
        if deepest and not members[0].is_plain:
            per_block = np.mean([_token_stats(r, "end")["var_ratio"] for r in deepest], axis=0)
            axes[2].plot(range(len(per_block)), per_block, marker=".", color=colour,
                         label=f"{label}, depth {depths[-1]}")
    for ax, title, ylabel in ((axes[0], "branch share, mean over blocks", "Var[F(x)] / Var[x + F(x)]"),
                              (axes[1], "rank collapse of the output tokens", "||X - 1 x^T|| / ||X||"),
                              (axes[2], "branch share per block (deepest net, end)", "Var[F(x)] / Var[x + F(x)]")):
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
        if ax.lines:
            ax.legend(fontsize=6)
    for ax in axes[:2]:
        ax.set_xscale("log", base=2)
        depths = sorted({int(r.get("depth")) for r in done})
        ax.set_xticks(depths, [str(d) for d in depths])
        ax.minorticks_off()
        ax.set_xlabel("depth (blocks)")
    for ax in axes:  # collapsed tokens sit at ~1e-7 (float32), branch shares span 4 decades
        ax.set_yscale("log")
    axes[2].set_xlabel("sub-block (attention, MLP, attention, ...)")
    fig.suptitle("open markers, dotted: at init; filled, solid: last measurement; mean over seeds", fontsize=9)
    return fig
