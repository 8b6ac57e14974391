"""Figures of a sweep: He et al. 2015 Fig. 6-style curves and per-layer gradient profiles.

Every function returns a matplotlib Figure (the caller saves it), so notebooks draw the
same figures as the report. Per-layer gradient profiles are drawn by
:func:`residual_lab.gradient_figures.gradient_profiles`, below both this module and the
training callback (:class:`~residual_lab.callbacks.figures.DiagnosticFigures`), which
draws them for one run as it trains.
Figures are built with the object API (no pyplot state), safe inside a training process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")  # files, not windows: reports run headless
import numpy as np  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from scipy import stats as sps  # noqa: E402

from residual_lab.gradient_figures import gradient_profiles, profile_panel  # noqa: E402
from residual_lab.results.loading import Run  # noqa: E402
from residual_lab.results.tables import aggregate, budget_ladders  # noqa: E402

#: Diagnostics drawn as per-layer profiles: (summary key, names key, values key, y label).
PROFILES = (
    ("grad_norm", "layers", "grad_norm", "weight-gradient norm ||dL/dW||"),
    ("block_grad", "blocks", "grad_rms", "block-input gradient dL/dx_l"),
)

#: Fields of the training setup (everything but the net and its seed): runs that share them are
#: comparable on one axis, so they form one experiment of :func:`experiment_groups`.
SETUP_FIELDS = ("model", "dataset", "protocol", "data", "batch_size", "optimizer", "lr", "max_steps", "precision")
#: Inches of one panel (width, height); every experiment's row has the same height at any number of runs.
PANEL = (4.6, 2.9)
#: Markers of the runs that did not complete (:func:`curves_figure`, :func:`depth_figure`).
FAILED_MARKER = dict(marker="x", ms=8, mew=2, ls="none")
#: A row's legend: font size (pt), the most columns, and the longest label (characters) drawn in full.
LEGEND_FONT, LEGEND_COLUMNS, LABEL_CHARS = 7, 2, 50


def _record_dir(run: Run) -> Path:
    """The folder a run came from: its sweep (``<sweep>/<job>``), or the preset of a committed
    record (``experiments/<preset>/runs/<record>``: ``runs/`` says nothing)."""
    parent = run.path.parent
    return parent.parent if parent.name == "runs" else parent


def experiment_groups(runs: Sequence[Run]) -> list[tuple[str, list[Run]]]:
    """(title, runs) per experiment, in the order of the setup values that differ between them
    (numbers by value: a budget ladder's rows go 500, 1500, 3000 steps), else as the runs come.

    An experiment is the runs of one folder (a sweep, a preset's records) that share the training
    setup (:data:`SETUP_FIELDS`). Folders with the same setup are one experiment (seeds run on
    different days, in two sweeps) unless one repeats a net and seed the other holds already: then
    it is a re-run (e.g. after a fix), drawn apart instead of dropped as a duplicate. The title
    names the setup values that differ between experiments and the folders, e.g.
    ``model=MLP (depth_mlp): 60 runs, 20 nets``.
    """
    from residual_lab.results.tables import GROUP_FIELDS  # tables imports nothing from here

    units: dict[tuple, list[Run]] = {}
    for run in runs:
        units.setdefault((_record_dir(run), tuple(repr(run.get(k)) for k in SETUP_FIELDS)), []).append(run)
    merged: list[tuple[tuple, list[Path], list[Run], set]] = []  # (setup, folders, runs, identities)
    for (folder, setup), members in units.items():
        ids = {(tuple(repr(r.get(k)) for k in GROUP_FIELDS), r.get("seed")) for r in members if r.status == "completed"}
        home = next((m for m in merged if m[0] == setup and not m[3] & ids), None)
        if home is None:
            merged.append((setup, [folder], list(members), ids))
        else:
            home[1].append(folder)
            home[2].extend(members)
            home[3].update(ids)
    folders = [f for m in merged for f in m[1]]
    common = Path(*Path(folders[0]).parts[:_common_depth(folders)]) if len(set(folders)) > 1 else None
    differ = [i for i, k in enumerate(SETUP_FIELDS) if len({m[0][i] for m in merged}) > 1]
    merged.sort(key=lambda m: [numbers_first(m[2][0].get(SETUP_FIELDS[i])) for i in differ])  # 500 before 1500 steps
    groups = []
    for setup, dirs, members, _ in merged:
        names = [str(d.relative_to(common)) if common is not None else d.name for d in dirs]
        names = names[:3] + ([f"+{len(names) - 3} folders"] if len(names) > 3 else [])
        setup_text = ", ".join(_setup_value(SETUP_FIELDS[i], members[0].get(SETUP_FIELDS[i])) for i in differ)
        nets = len({tuple(repr(r.get(k)) for k in GROUP_FIELDS) for r in members})
        head = f"{setup_text} ({', '.join(names)})" if setup_text else ", ".join(names)
        groups.append((f"{head}: {len(members)} runs, {nets} nets", members))
    return groups


def _setup_value(field: str, value: Any) -> str:
    """A setup field in a row's title, short: ``lr 0.1``, ``500 steps``, ``heldout``, ``model ?``."""
    if value is None:
        return f"{field} ?"
    return {"lr": f"lr {value}", "max_steps": f"{value} steps", "batch_size": f"batch {value}"}.get(field, str(value))


def _common_depth(paths: Sequence[Path]) -> int:
    """How many leading path parts all ``paths`` share."""
    depth = 0
    for parts in zip(*(Path(p).parts for p in paths)):
        if len(set(parts)) > 1:
            break
        depth += 1
    return depth


def _key_label(key: tuple, fields: Sequence[str]) -> str:
    """A colour key of :func:`colour_key` as a legend label: ``depth 20, projection, norm=none``."""
    shortcut = [str(key[1])] if len(key) == 2 + len(fields) else []
    text = ", ".join([f"depth {key[0]}", *shortcut, *(f"{k}={v}" for k, v in zip(fields, key[1 + len(shortcut):]))])
    return text if len(text) <= LABEL_CHARS else text[:LABEL_CHARS - 1] + "…"


def _legend_rows() -> int:
    """Legend entries that fit one column beside a row's panels, below the row's title
    (~1.8 font sizes per entry)."""
    return max(2, int((PANEL[1] - 0.35) * 72 / (LEGEND_FONT * 1.8)))


def _row_legend(subfig, entries: Sequence[tuple[Any, str]], extra: Sequence[tuple[Any, str]] = ()) -> None:
    """One legend right of a row's panels: a line per colour, ``extra`` (style notes) after them.

    At most :data:`LEGEND_COLUMNS` columns of as many entries as fit the row's height; the rest
    are summarised in one entry (``+ 12 more nets: see the table``), so the panels keep their
    size whatever the number of nets.
    """
    from matplotlib.lines import Line2D

    rows = _legend_rows()
    room = rows * LEGEND_COLUMNS - len(extra)
    if len(entries) > room:
        entries = [*entries[:room - 1], ("none", f"+ {len(entries) - room + 1} more nets: see the table")]
    handles = [Line2D([], [], color=c, lw=2) if c != "none" else Line2D([], [], ls="none") for c, _ in entries]
    handles += [h for h, _ in extra]
    labels = [label for _, label in entries] + [label for _, label in extra]
    if handles:
        subfig.legend(handles, labels, loc="outside right upper", fontsize=LEGEND_FONT,
                      ncols=-(-len(handles) // rows), frameon=False)


def _net_colours(members: Sequence[Run]) -> tuple[Any, dict, list[tuple[Any, str]]]:
    """(:func:`colour_key`, ``{key: colour}``, legend entries ``(colour, label with n)``) of one experiment."""
    key, colours = _colours(members)
    fields, _ = _variant_fields(members)
    n: dict[tuple, set] = {}
    for seeds in _seed_groups(members):
        if seeds[0].status == "completed":
            n.setdefault(key(seeds[0]), set()).add(len(seeds))
    entries = []
    for k, c in colours.items():
        counts = sorted(n.get(k, ()))
        label = _key_label(k, fields)
        entries.append((c, label + (f" (n={'-'.join(map(str, counts))})" if counts and counts != [1] else "")))
    return key, colours, entries


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
    keys = sorted({key(r) for r in runs}, key=lambda k: (int(k[0] or 0), *map(numbers_first, k[1:])))
    if len(keys) <= 10:
        return key, {k: colormaps["tab10"](i) for i, k in enumerate(keys)}
    if len(keys) <= 20:
        return key, {k: colormaps["tab20"](i) for i, k in enumerate(keys)}
    return key, {k: colormaps["viridis"](i / (len(keys) - 1)) for i, k in enumerate(keys)}


def numbers_first(value: Any) -> tuple:
    """A sort key: numbers by value (width 16 before 128), then anything else by its text."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return (0, float(value), "") if number else (1, 0.0, str(value))


def _seed_groups(runs: Sequence[Run]) -> list[list[Run]]:
    """The runs of each net: completed runs grouped over seeds as the table groups them, every
    other run alone (its curve is drawn as it is)."""
    from residual_lab.results.tables import aggregate  # tables imports nothing from here

    return [row.runs for row in aggregate(list(runs))] + [[r] for r in runs if r.status != "completed"]


def _mean_band(curves: list[tuple[list[int], list[float]]]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Steps all seeds logged, their mean and sample std (None for one seed)."""
    common = sorted(set.intersection(*(set(steps) for steps, _ in curves)))
    if not common:  # seeds logged at different steps: draw the first as it is
        steps, values = curves[0]
        return np.asarray(steps), np.asarray(values), None
    table = np.array([[dict(zip(steps, values))[s] for s in common] for steps, values in curves])
    std = table.std(axis=0, ddof=1) if len(curves) > 1 else None
    return np.asarray(common), table.mean(axis=0), std


def _rows_figure(n_rows: int, legends: Sequence[Sequence[str]], panels: int = 2) -> tuple[Figure, list]:
    """A figure of ``n_rows`` subfigures (one per experiment), each ``panels`` panels of
    :data:`PANEL` inches plus its legend: the width is bounded (legend columns and labels are
    capped), the height grows by one row per experiment, never squeezing a panel."""
    rows = _legend_rows()
    legend_in = max((min(LEGEND_COLUMNS, -(-len(labels) // rows)) * (0.45 + max(map(len, labels)) * 0.055)
                     for labels in legends if labels), default=0.0)
    fig = Figure(figsize=(PANEL[0] * panels + legend_in, PANEL[1] * n_rows + 0.4), constrained_layout=True)
    subfigs = fig.subfigures(n_rows, 1, squeeze=False)[:, 0] if n_rows else []
    return fig, list(subfigs)


def curves_figure(runs: list[Run]) -> Figure:
    """Training error (thin, dashed) and validation error (bold) against optimizer steps.

    One row per experiment (:func:`experiment_groups`): plain nets (``shortcut=none``) on the
    left, residual nets on the right, one colour per net shared by a plain net and its residual
    twin (Fig. 6), the legend beside the row. A net with several seeds is drawn as the mean over
    its seeds with a band of ± one sample std; a run that did not complete as its own thin line
    ending in an x. The paper's Fig. 6 plots test error; our heldout runs evaluate the 5k
    validation split during training (``val/error``) and the test set once at the end, drawn as
    a star at the last step. However many runs, each row keeps :data:`PANEL`'s size.
    """
    from matplotlib.lines import Line2D

    groups = experiment_groups(runs)
    if not groups:
        fig = Figure(figsize=PANEL)
        fig.text(0.5, 0.5, "no runs", ha="center", va="center")
        return fig
    colouring = [_net_colours(members) for _, members in groups]
    incomplete = [any(r.status != "completed" for r in members) for _, members in groups]
    legends = [[label for _, label in entries] + ["x: did not complete"] * bad
               for (_, _, entries), bad in zip(colouring, incomplete)]
    fig, subfigs = _rows_figure(len(groups), legends)
    shown: set[str] = set()
    for subfig, (title, members), (key, colours, entries), bad in zip(subfigs, groups, colouring, incomplete):
        axes = subfig.subplots(1, 2, sharey=True)
        for ax, plain, side in ((axes[0], True, "plain"), (axes[1], False, "residual")):
            drawn = 0
            for seeds in _seed_groups(members):
                if seeds[0].is_plain != plain:
                    continue
                c = colours[key(seeds[0])]
                done = seeds[0].status == "completed"
                for tag, style in (("val/error", dict(lw=2.0 if done else 0.8, marker="o", ms=2.5)),
                                   ("test/error", dict(marker="*", ms=9, ls="none")),
                                   ("train/error", dict(lw=0.8, ls="--", alpha=0.8))):
                    curves = [m.scalars[tag] for m in seeds if tag in m.scalars]
                    if not curves:
                        continue
                    steps, mean, std = _mean_band(curves)
                    shown.add(tag)
                    ax.plot(steps, mean, color=c, **style)
                    if not done and tag != "test/error":
                        ax.plot(steps[-1:], mean[-1:], color=c, **FAILED_MARKER)
                    if std is not None:
                        if tag == "test/error":
                            ax.errorbar(steps, mean, yerr=std, color=c, ls="none", capsize=3)
                        else:
                            ax.fill_between(steps, mean - std, mean + std, color=c, alpha=0.15, lw=0)
                    drawn += 1
            ax.set_title(f"{side} nets", fontsize=9)
            ax.set_xlabel("optimizer step", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            if not drawn:
                ax.text(0.5, 0.5, f"no {side} runs", ha="center", va="center", transform=ax.transAxes)
        axes[0].set_ylabel("error (%)", fontsize=8)
        subfig.suptitle(title, fontsize=9, x=0.01, ha="left")  # clear of the legend on the right
        _row_legend(subfig, entries, [(Line2D([], [], color="k", **FAILED_MARKER), "x: did not complete")] * bad)
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

    One row per experiment that measured them (:func:`experiment_groups`), its panels side by
    side: one line per net, the geometric mean over its seeds (each run alone if it did not
    complete); dotted for plain nets, colours and legend as in :func:`curves_figure`. None when
    no run has any. However many runs, each row keeps :data:`PANEL`'s size.
    """
    rows = []
    for title, members in experiment_groups(runs):
        key, colours, entries = _net_colours(members)
        panels, steps = [], set()
        for diag_key, names_key, values_key, ylabel in PROFILES:
            lines = []
            for seeds in _seed_groups(members):
                if (p := _seed_mean_profile(seeds, diag_key, names_key, values_key)) is None:
                    continue
                steps.add(seeds[0].diagnostics[diag_key].get("step"))
                lines.append((None, p[0], p[1], dict(color=colours[key(seeds[0])], lw=1.2, ms=3,
                                                     ls=":" if seeds[0].is_plain else "-")))
            if lines:
                panels.append((f"diagnostics.{diag_key}", ylabel, lines))
        if panels:
            known = sorted(s for s in steps if s is not None)
            at = "" if not known else f", step {known[0]}" if len(known) == 1 else f", steps {known[0]}-{known[-1]}"
            rows.append((title + at, panels, entries))
    if not rows:
        return None
    fig, subfigs = _rows_figure(len(rows), [[label for _, label in e] for _, _, e in rows],
                                panels=max(len(p) for _, p, _ in rows))
    for subfig, (title, panels, entries) in zip(subfigs, rows):
        axes = subfig.subplots(1, len(panels), squeeze=False)[0]
        for ax, (panel_title, ylabel, lines) in zip(axes, panels):
            profile_panel(ax, panel_title, ylabel, lines)
            ax.tick_params(labelsize=7)
        subfig.suptitle(title, fontsize=9, x=0.01, ha="left")  # clear of the legend on the right
        _row_legend(subfig, entries)
    fig.suptitle("per-layer gradient profiles, last measurement; dotted: plain nets; several seeds: geometric mean",
                 fontsize=9)
    return fig


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


def _gap_interval(deep: Sequence[float], shallow: Sequence[float]) -> tuple[float, float]:
    """Mean of ``deep`` minus mean of ``shallow`` and the half-width of its 95 % Welch interval
    (scipy's ``ttest_ind(equal_var=False).confidence_interval``); 0 when a side has fewer than
    two seeds or neither spreads: the point is drawn, without a bar."""
    gap = float(np.mean(deep) - np.mean(shallow))
    if min(len(deep), len(shallow)) < 2 or np.var(deep) + np.var(shallow) == 0:
        return gap, 0.0
    ci = sps.ttest_ind(deep, shallow, equal_var=False).confidence_interval(0.95)
    return gap, float(ci.high - ci.low) / 2


def budget_figure(runs: Sequence[Run], metric: str = "train_error_full") -> Figure | None:
    """The statistic against the budget, and the deeper-minus-shallower gap against it.

    Left: each net's ``metric`` at every budget it ran (dots: seeds; line: their mean), dashed
    plain, solid residual, one colour per depth. Right: the deepest minus the shallowest net of
    each family (plain, residual) at each budget, with the 95 % Welch interval of the
    difference of means; a gap drifting towards 0 as the budget grows is degradation fading,
    one holding or growing is degradation at convergence (the ladder's question). One row per
    setup that ran two budgets or more; None when none did. x: trainer.max_steps, log scale.
    """
    found = budget_ladders(aggregate([r for r in runs if r.get(metric) is not None]))
    if not found:
        return None
    differ = {k for rest in found for k, _ in rest if len({dict(r).get(k) for r in found}) > 1}
    ladders = {", ".join(f"{k}={v}" for k, v in rest if k in differ):
               {net: {s: row.values(metric) for s, row in by.items()} for net, by in nets.items()}
               for rest, nets in found.items()}
    fig = Figure(figsize=(10.5, 3.6 * len(ladders)), constrained_layout=True)
    axes = fig.subplots(len(ladders), 2, squeeze=False)
    for (left, right), (label, nets) in zip(axes, ladders.items()):
        depths = sorted({d for _, d in nets})
        steps = sorted({s for by in nets.values() for s in by})
        for (shortcut, depth), by in sorted(nets.items(), key=lambda kv: (kv[0][0] != "none", kv[0][1])):
            name = f"plain-{depth}" if shortcut == "none" else f"ResNet-{depth}" + (f" ({shortcut})" if shortcut != "identity" else "")
            style = dict(color=colormaps["tab10"](depths.index(depth) % 10), ls="--" if shortcut == "none" else "-")
            xs = sorted(s for s, v in by.items() if v)
            n = sorted({len(by[s]) for s in xs})
            left.plot(xs, [np.mean(by[s]) for s in xs], marker="o", ms=4,
                      label=f"{name} (n={'-'.join(map(str, n))})", **style)
            left.plot([s for s in xs for _ in by[s]], [v for s in xs for v in by[s]], ls="none", marker=".",
                      ms=5, alpha=0.5, color=style["color"])
        for i, shortcut in enumerate(sorted({s for s, _ in nets}, key=lambda s: (s != "none", s))):
            own = sorted(d for s, d in nets if s == shortcut)
            if len(own) < 2:
                continue
            deep, shallow = nets[(shortcut, own[-1])], nets[(shortcut, own[0])]
            xs = [s for s in sorted(set(deep) & set(shallow)) if deep[s] and shallow[s]]
            gaps = [_gap_interval(deep[s], shallow[s]) for s in xs]
            kind = "plain" if shortcut == "none" else "ResNet"
            right.errorbar(xs, [g for g, _ in gaps], yerr=[h for _, h in gaps], marker="o", ms=4, capsize=3,
                           ls="--" if shortcut == "none" else "-", color=colormaps["tab10"](i + 2),
                           label=f"{kind}-{own[-1]} minus {kind}-{own[0]}")
        right.axhline(0.0, color="grey", lw=1, ls=":")
        for ax, ylabel in ((left, metric.replace("_", " ") + " %"), (right, "gap, percentage points")):
            ax.set_xscale("log")
            ax.set_xticks(steps, [str(s) for s in steps])
            ax.minorticks_off()
            ax.set_xlabel("budget (trainer.max_steps)")
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        left.set_title(f"{label + ': ' if label else ''}final weights, per seed and mean", fontsize=9)
        right.set_title("deepest minus shallowest net, 95 % Welch interval", fontsize=9)
    return fig
