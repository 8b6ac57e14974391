"""The report's figures built from summaries alone: depth curves, colours, per-layer profiles."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from residual_lab.results.loading import Run, load_run
from residual_lab.results.plots import (_colours, budget_figure, curves_figure, depth_figure, depth_lines,
                                        profiles_figure, token_stats_figure)


def summary_run(tmp_path: Path, **fields) -> Run:
    """A run directory holding only summary.json (an MLP sweep's run unless ``fields`` say otherwise)."""
    summary = {"run_name": "mlp", "model": "MLP", "depth": 4, "shortcut": "identity", "block": "basic",
               "width": 256, "norm": "batch", "seed": 0, "status": "completed", "train_loss": 1.0,
               "train_error": 50.0, "test_error": 50.0, "dataset": "imagefolder", "protocol": "heldout",
               "max_steps": 500, "optimizer": "Adam", "lr": 0.001, **fields}
    path = tmp_path / f"run{len(list(tmp_path.glob('run*')))}"
    path.mkdir()
    (path / "summary.json").write_text(json.dumps(summary))
    return load_run(path)


def test_depth_lines_are_one_net_per_line_seeds_pooled_per_depth(tmp_path):
    runs = [summary_run(tmp_path, depth=d, shortcut=s, norm=n, seed=seed, train_loss=loss)
            for d, s, n, seed, loss in [(4, "none", "batch", 0, 1.5), (4, "none", "batch", 1, 1.7),
                                        (64, "none", "batch", 0, 2.3), (64, "none", "batch", 1, 2.31),
                                        (4, "identity", "batch", 0, 1.4), (64, "identity", "batch", 0, 1.6),
                                        (4, "identity", "none", 0, 1.45)]]
    runs.append(summary_run(tmp_path, depth=64, shortcut="identity", norm="none", status="diverged", train_loss=None))
    runs.append(summary_run(tmp_path, model="CifarResNet", depth=20))  # one depth: no panel
    assert depth_lines(runs) == {"MLP": {
        "plain, norm=batch": {4: [1.5, 1.7], 64: [2.3, 2.31]},
        "residual, norm=batch": {4: [1.4], 64: [1.6]},
        "residual, norm=none": {4: [1.45], 64: []},
    }}


def test_depth_lines_name_the_shortcut_when_a_family_has_several(tmp_path):
    runs = [summary_run(tmp_path, depth=d, shortcut=s) for d in (20, 56) for s in ("none", "identity", "projection")]
    assert list(depth_lines(runs)["MLP"]) == ["plain", "residual (identity)", "residual (projection)"]


def test_depth_figure_draws_the_seed_mean_and_marks_a_depth_where_no_seed_completed(tmp_path):
    runs = [summary_run(tmp_path, depth=d, shortcut="none", seed=seed, train_loss=loss)
            for d, seed, loss in [(4, 0, 1.0), (4, 1, 2.0), (8, 0, 3.0)]]
    runs.append(summary_run(tmp_path, depth=16, shortcut="none", status="diverged", train_loss=None))
    ax = depth_figure(runs).axes[0]
    drawn = [(list(line.get_xdata()), list(line.get_ydata())) for line in ax.lines]
    assert ([4, 8], [1.5, 3.0]) in drawn              # mean over seeds 0 and 1 at depth 4
    assert ([16], [1.0]) in drawn                     # the x at the top of the panel (axes fraction)
    bar = next(c for c in ax.collections if len(c.get_segments()) == 2).get_segments()[0]
    assert bar[:, 1].tolist() == pytest.approx([1.5 - math.sqrt(0.5), 1.5 + math.sqrt(0.5)])  # ± sample std


def test_a_single_depth_draws_no_depth_figure(tmp_path):
    assert depth_figure([summary_run(tmp_path), summary_run(tmp_path, shortcut="none")]) is None


def test_colours_match_a_plain_net_and_its_twin_and_tell_norms_apart(tmp_path):
    runs = {(s, n): summary_run(tmp_path, shortcut=s, norm=n) for s in ("none", "identity") for n in ("batch", "none")}
    key, colours = _colours(list(runs.values()))
    colour = {k: colours[key(r)] for k, r in runs.items()}
    assert colour["none", "batch"] == colour["identity", "batch"]
    assert colour["none", "none"] == colour["identity", "none"]
    assert colour["identity", "batch"] != colour["identity", "none"]  # before: one colour per depth only


def profile_run(tmp_path: Path, depth: int, seed: int, scale: float, **fields) -> Run:
    names = [f"b{i}" for i in range(depth)]
    diagnostics = {"grad_norm": {"step": 499, "layers": names, "grad_norm": [scale] * depth},
                   "block_grad": {"step": 499, "blocks": names, "grad_norm": [scale * 2] * depth}}
    return summary_run(tmp_path, depth=depth, seed=seed, diagnostics=diagnostics, **fields)


def test_profiles_are_the_geometric_mean_over_seeds(tmp_path):
    runs = [profile_run(tmp_path, 4, 0, 1e-2), profile_run(tmp_path, 4, 1, 1e-4)]
    fig = profiles_figure(runs)
    (line,) = fig.axes[0].lines
    assert np.allclose(line.get_ydata(), 1e-3)
    assert fig.subfigs[0].get_suptitle().endswith("2 runs, 1 nets, step 499")


def test_profiles_of_a_40_run_sweep_keep_their_panels(tmp_path):
    """The depth_mlp sweep (20 nets x 2 seeds): one legend per panel squeezed both panels to
    nothing ("constrained_layout not applied because axes sizes collapsed to zero")."""
    runs = [profile_run(tmp_path, d, seed, 10.0 ** -d / seed if seed else 1.0, shortcut=s, norm=n,
                        run_name=f"{'plain-' if s == 'none' else ''}mlp-{d}-{s}-norm_{n}")
            for d in (4, 8, 16, 32, 64) for s in ("none", "identity") for n in ("batch", "none") for seed in (0, 1)]
    fig = profiles_figure(runs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig.savefig(tmp_path / "profiles.png", dpi=40)
    assert all(ax.get_position().width > 0.15 and ax.get_position().height > 0.5 for ax in fig.axes)
    (row,) = fig.subfigs
    assert len(row.legends) == 1 and len(row.legends[0].get_texts()) == 10  # a net and its twin share an entry
    assert len(fig.axes[0].lines) == 20  # one line per net, seeds pooled


def vit_run(tmp_path: Path, depth: int, shortcut: str, seed: int, rank_end: float, var_end: float) -> Run:
    names = [f"b{i // 2}.{'attn' if i % 2 == 0 else 'mlp'}" for i in range(2 * depth)]
    end = {"step": 450, "blocks": names, "var_ratio": [var_end] * len(names),
           "rank_collapse": [0.9] * (len(names) - 1) + [rank_end]}
    init = {"step": 0, "blocks": names, "var_ratio": [1e-3] * len(names), "rank_collapse": [0.86] * len(names)}
    return summary_run(tmp_path, model="VisionTransformer", depth=depth, shortcut=shortcut, block="preln", seed=seed,
                       norm="layer", diagnostics={"token_stats": {**end, "initial": init}})


def test_token_stats_figure_plots_the_last_blocks_rank_and_the_mean_branch_share_over_depth(tmp_path):
    runs = [vit_run(tmp_path, d, s, seed, rank, var) for d, s, seed, rank, var in [
        (2, "identity", 0, 0.8, 0.2), (2, "identity", 1, 0.6, 0.4), (8, "identity", 0, 0.7, 0.1),
        (2, "none", 0, 0.5, 1.0), (8, "none", 0, 0.01, 1.0)]]
    share, rank, per_block = token_stats_figure(runs).axes[:3]
    lines = {line.get_label(): line.get_ydata().tolist() for line in rank.lines}
    assert lines["residual (end)"] == pytest.approx([0.7, 0.7])    # seeds' mean at depth 2, one seed at 8
    assert lines["plain (end)"] == pytest.approx([0.5, 0.01])
    assert lines["plain (init)"] == pytest.approx([0.86, 0.86])
    assert {line.get_label() for line in share.lines} == {"residual (init)", "residual (end)"}  # plain: 1 by definition
    assert [line.get_ydata().tolist() for line in per_block.lines] == [pytest.approx([0.1] * 16)]


def test_nets_without_token_stats_draw_no_token_figure(tmp_path):
    assert token_stats_figure([summary_run(tmp_path, depth=d) for d in (4, 8)]) is None


def test_the_chance_loss_is_a_line_only_when_asked_for(tmp_path):
    runs = [summary_run(tmp_path, depth=d) for d in (4, 8)]
    assert not any(line.get_label().startswith("chance") for line in depth_figure(runs).axes[0].lines)
    (chance,) = [line for line in depth_figure(runs, chance=math.log(10)).axes[0].lines
                 if line.get_label().startswith("chance")]
    assert list(chance.get_ydata()) == [math.log(10)] * 2 and chance.get_label() == "chance (2.3)"


def test_the_curves_title_names_only_the_curves_drawn(tmp_path):
    """protocol=paper runs have no validation curve: the title promised one (fig6/curves.png)."""
    from residual_lab.results.plots import curves_figure

    run = summary_run(tmp_path, protocol="paper", shortcut="none")
    run.scalars.update({"train/error": ([10, 20], [80.0, 70.0]), "test/error": ([20], [72.0])})
    title = curves_figure([run])._suptitle.get_text()
    assert "train error" in title and "test error" in title and "val error" not in title
    run.scalars["val/error"] = ([10, 20], [75.0, 71.0])
    assert "bold: val error" in curves_figure([run])._suptitle.get_text()


def sweep_run(folder: Path, step_error: float, **fields) -> Run:
    """A run under ``folder`` (a sweep) with Fig. 6 curves and per-layer profiles, built from summary.json."""
    folder.mkdir(exist_ok=True)
    run = summary_run(folder, **fields)
    names = [f"b{i}" for i in range(run.get("depth"))]
    run.summary["diagnostics"] = {"grad_norm": {"step": 499, "layers": names, "grad_norm": [step_error] * len(names)},
                                  "block_grad": {"step": 499, "blocks": names, "grad_norm": [step_error] * len(names)}}
    steps = list(range(0, 501, 50))
    run.scalars.update({"train/error": (steps, [step_error + 40 - s / 20 for s in steps]),
                        "val/error": (steps[1:], [step_error + 42 - s / 20 for s in steps[1:]]),
                        "test/error": ([500], [step_error + 18])})
    return run


#: Pixels per inch the report saves figures at (residual_lab.report.save_figure).
REPORT_DPI = 90


def pixel_sizes(fig, tmp_path: Path) -> list[tuple[float, float]]:
    """(width, height) in pixels of every panel of ``fig`` saved as the report saves it; a
    "constrained_layout not applied because axes sizes collapsed to zero" warning fails."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig.savefig(tmp_path / "figure.png", dpi=REPORT_DPI)
    fig.set_dpi(REPORT_DPI)
    fig.draw_without_rendering()
    return [(ax.get_window_extent().width, ax.get_window_extent().height) for ax in fig.axes]


def two_hundred_runs(tmp_path: Path) -> list[Run]:
    """5 sweeps (lr 0.1 ... 0.5) x 5 depths x plain/residual x 2 norms x 2 seeds = 200 runs."""
    return [sweep_run(tmp_path / f"sweep_lr{lr}", 10.0 * d ** 0.5, lr=lr, depth=d, shortcut=s, norm=n, seed=seed,
                      run_name=f"{'plain' if s == 'none' else 'resnet'}-{d}-norm_{n}")
            for lr in (0.1, 0.2, 0.3, 0.4, 0.5) for d in (4, 8, 16, 32, 64) for s in ("none", "identity")
            for n in ("batch", "none") for seed in (0, 1)]


@pytest.mark.parametrize("draw", ["curves_figure", "profiles_figure"])
def test_200_runs_keep_every_panel_readable(tmp_path, draw):
    """The committed records (~250 runs) drew a curves figure under a ~100-entry legend ("axes
    sizes collapsed to zero") and a 4421x345 px profiles figure: one row per experiment now."""
    from residual_lab.results import plots

    runs = two_hundred_runs(tmp_path)
    fig = getattr(plots, draw)(runs)
    sizes = pixel_sizes(fig, tmp_path)
    assert len(sizes) == 5 * 2  # a row of two panels per sweep
    assert all(w >= 300 and h >= 170 for w, h in sizes), sizes  # PANEL is 414 x 261 px at 90 dpi
    width, height = fig.get_size_inches()
    assert width <= 17 and height == pytest.approx(5 * plots.PANEL[1] + 0.4)  # bounded; grows by rows only
    for row in fig.subfigs:
        (legend,) = row.legends
        assert len(legend.get_texts()) == 10  # 5 depths x 2 norms; a plain net shares its twin's entry


def test_curves_draw_one_line_per_net_with_seeds_pooled(tmp_path):
    runs = two_hundred_runs(tmp_path)
    plain, residual = curves_figure(runs).subfigs[0].axes
    bold = [line for line in plain.lines if line.get_linewidth() == 2.0]
    assert len(bold) == 10  # val error: 5 depths x 2 norms, each the mean of 2 seeds
    assert sorted(line.get_ydata()[-1] for line in bold)[:2] == pytest.approx([10.0 * 4 ** 0.5 + 17] * 2)


def test_a_row_legend_summarises_what_does_not_fit(tmp_path):
    runs = [sweep_run(tmp_path / "sweep", 10.0, depth=d, shortcut="identity", width=w)
            for d in range(2, 42) for w in (16, 32, 64, 128, 256)]  # 200 nets, one seed each
    fig = curves_figure(runs)
    sizes = pixel_sizes(fig, tmp_path)
    assert all(w >= 300 and h >= 170 for w, h in sizes), sizes
    (legend,) = fig.subfigs[0].legends
    texts = [t.get_text() for t in legend.get_texts()]
    room = plots_legend_room()
    assert len(texts) == room and texts[-1] == f"+ {200 - room + 1} more nets: see the table"
    assert texts[0] == "depth 2, width=16"


def plots_legend_room() -> int:
    from residual_lab.results.plots import LEGEND_COLUMNS, _legend_rows

    return LEGEND_COLUMNS * _legend_rows()


def test_experiments_are_a_folder_and_a_setup_seeds_of_two_sweeps_pooled(tmp_path):
    from residual_lab.results.plots import experiment_groups

    first = [sweep_run(tmp_path / "day1", 10.0, depth=d, seed=0) for d in (4, 8)]
    second = [sweep_run(tmp_path / "day2", 10.0, depth=d, seed=1) for d in (4, 8)]  # more seeds: pooled
    rerun = [sweep_run(tmp_path / "rerun", 10.0, depth=d, seed=0) for d in (4, 8)]  # the same seeds again: apart
    sgd = [sweep_run(tmp_path / "day1", 10.0, depth=4, optimizer="SGD", lr=0.1)]  # another setup in day1
    groups = experiment_groups(first + second + rerun + sgd)
    assert [(title, [r.path for r in members]) for title, members in groups] == [
        ("Adam, lr 0.001 (day1, day2): 4 runs, 2 nets", [r.path for r in first + second]),
        ("Adam, lr 0.001 (rerun): 2 runs, 2 nets", [r.path for r in rerun]),
        ("SGD, lr 0.1 (day1): 1 runs, 1 nets", [sgd[0].path]),
    ]


def test_experiments_of_one_setup_field_come_in_its_numeric_order_whatever_order_the_folders_come_in(tmp_path):
    """A budget ladder: the 1500/3000/6000-step folder before the 500-step one, and 6000 before
    1500 inside it, still draws its rows 500, 1500, 3000, 6000 steps (not 10000 before 500)."""
    from residual_lab.results.plots import experiment_groups

    ladder = [sweep_run(tmp_path / "ladder", 10.0, depth=4, seed=0, max_steps=s) for s in (6000, 1500, 3000)]
    short = [sweep_run(tmp_path / "fig6", 10.0, depth=4, seed=0, max_steps=500)]
    groups = experiment_groups(ladder + short)
    assert [title for title, _ in groups] == [
        "500 steps (fig6): 1 runs, 1 nets", "1500 steps (ladder): 1 runs, 1 nets",
        "3000 steps (ladder): 1 runs, 1 nets", "6000 steps (ladder): 1 runs, 1 nets"]


def test_the_budget_figure_draws_each_familys_gap_with_its_welch_interval(tmp_path):
    """plain-20/56 and ResNet-20/56 at 500 and 1500 steps, 3 seeds each: the right panel's points
    are the deep-minus-shallow means, the bars the 95 % Welch half-widths, computed by hand."""
    from scipy import stats as sps

    errors = {("none", 20): {500: (49, 50, 51), 1500: (32, 33, 34)}, ("none", 56): {500: (75, 80, 85), 1500: (67, 69, 71)},
              ("identity", 20): {500: (41, 42, 43), 1500: (25, 26, 27)}, ("identity", 56): {500: (45, 46, 50), 1500: (24, 25, 26)}}
    runs = [summary_run(tmp_path, run_name=f"{sc}-{d}", shortcut=sc, depth=d, max_steps=steps, seed=i, train_error_full=v)
            for (sc, d), by in errors.items() for steps, vs in by.items() for i, v in enumerate(vs)]
    fig = budget_figure(runs)
    left, right = fig.axes[:2]
    assert len(left.get_legend().get_texts()) == 4
    drawn = {t.get_label(): t for t in right.containers}

    def half_width(a, b):  # Welch: se^2 = s_a^2/n + s_b^2/n; df by Welch-Satterthwaite
        va, vb = np.var(a, ddof=1) / 3, np.var(b, ddof=1) / 3
        df = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 2)
        return sps.t.ppf(0.975, df) * math.sqrt(va + vb)

    for label, sc in (("plain-56 minus plain-20", "none"), ("ResNet-56 minus ResNet-20", "identity")):
        (bars,) = drawn[label].lines[2]  # errorbar's container: (data line, caps, bar collections)
        xs, ys = drawn[label].lines[0].get_data()
        assert list(xs) == [500, 1500]
        expected = [np.mean(errors[(sc, 56)][s]) - np.mean(errors[(sc, 20)][s]) for s in (500, 1500)]
        assert list(ys) == pytest.approx(expected)
        segments = bars.get_segments()
        widths = [(seg[1][1] - seg[0][1]) / 2 for seg in segments]
        assert widths == pytest.approx([half_width(errors[(sc, 56)][s], errors[(sc, 20)][s]) for s in (500, 1500)])
    assert budget_figure([r for r in runs if r.get("max_steps") == 500]) is None  # one budget: no figure
