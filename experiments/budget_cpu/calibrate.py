"""Training error against steps, per net, over seeds: the numbers behind the budget choice.

    python experiments/budget_cpu/calibrate.py experiments/fig6/runs [more record or sweep dirs]
    python experiments/budget_cpu/calibrate.py experiments/budget_cpu/runs \
        --at 500,1000,1500,2000,2500,3000 --smooth 10 --cross resnet-56-identity,resnet-20-identity

Reads run records (``summary.json`` + ``curves.csv``, see ``residual_lab.results.export``) or
run directories. Per net (run name, seeds pooled): the first step whose logged training-error
window is below 80 % (He et al. 2015 sec. 4.2 warm ResNet-110 up "until the training error
is below 80%"; chance is 90 %), and the logged training error at a few checkpoints of the
run, mean +- sample std over seeds. Runs need ``trainer.log_every_n_steps=10`` (budget=cpu
sets it). The curves themselves are the report's curves.png.

``--smooth K`` averages the K logged windows ending at each checkpoint: one 10-step window
is 1280 images, whose error has a sampling std of ~1.2 points at 20 % error, as large as
the depth differences Fig. 6 (iii) is about late in a run; 10 windows bring it to ~0.4.
``--cross A,B`` prints the step from which net A's seed-mean (smoothed) curve stays at or
below net B's to the end of the run (where ResNet-56 overtakes ResNet-20) and the two nets'
per-seed (smoothed) errors at the end. No test: the smoothing is a calibration choice made
while looking at the curves, so its p-value would be a forking path; orderings are tested by
``residual_lab.report`` on the registered statistic. ``--plot F`` draws
the smoothed curves (seed mean, band +- 1 sample std) and, with ``--cross``, A minus B.
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict

from residual_lab.results.curve_stats import crossing_step, first_below, seed_mean, value_at
from residual_lab.results.loading import find_runs

CHANCE_EXIT = 80.0  # % training error
AT_STEPS = (100, 200, 300, 400, 500)


def fmt(values: list[float | None]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} +- {statistics.stdev(values):.1f}"


def load_curves(roots: list[str]) -> dict[tuple[int, str], list[tuple[int, list[int], list[float]]]]:
    """(depth, run name) -> [(seed, steps, training error)] of the completed runs, steps sorted."""
    groups = defaultdict(list)
    for run in find_runs(roots):
        if run.status != "completed":
            continue
        steps, values = run.scalars.get("train/error", ([], []))
        order = sorted(range(len(steps)), key=steps.__getitem__)
        steps, values = [steps[i] for i in order], [values[i] for i in order]
        groups[(run.get("depth"), run.name)].append((run.get("seed"), steps, values))
    return groups


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", help="record, run or sweep directories")
    parser.add_argument("--at", default=",".join(map(str, AT_STEPS)), help="comma-separated steps")
    parser.add_argument("--smooth", type=int, default=1, help="logged windows averaged per value")
    parser.add_argument("--cross", help="two run names A,B: the step from which A stays <= B")
    parser.add_argument("--plot", help="PNG of the smoothed curves (and A - B with --cross)")
    args = parser.parse_args(argv)
    at_steps = [int(s) for s in args.at.split(",")]
    groups = load_curves(args.roots)
    head = " | ".join(f"step {s}" for s in at_steps)
    print(f"| net | seeds | first step < {CHANCE_EXIT:.0f} % | training error at {head} |")
    print("|---|---|---|" + "---|" * len(at_steps))
    for (_, name), rows in sorted(groups.items(), key=lambda kv: (kv[0][0], "resnet" in kv[0][1])):
        exits = [first_below(s, v, CHANCE_EXIT) for _, s, v in rows]
        never = sum(e is None for e in exits)
        cells = [fmt([value_at(s, v, at, args.smooth) for _, s, v in rows]) for at in at_steps]
        print(f"| {name} | {len(rows)} ({', '.join(str(seed) for seed, _, _ in rows)}) "
              f"| {fmt(exits)}{f' ({never} never)' if never else ''} | " + " | ".join(cells) + " |")
    cross = None
    if args.cross:
        by_name = {name: rows for (_, name), rows in groups.items()}
        a, b = args.cross.split(",")
        mean_a, mean_b = seed_mean(by_name[a], args.smooth), seed_mean(by_name[b], args.smooth)
        common = sorted(mean_a.keys() & mean_b.keys())
        ya, yb = [mean_a[s][0] for s in common], [mean_b[s][0] for s in common]
        step = crossing_step(common, ya, yb)
        cross = (a, b, common, [x - y for x, y in zip(ya, yb)], step)
        print(f"\n{a} (n={len(by_name[a])}) <= {b} (n={len(by_name[b])}) in the seed mean, "
              f"{args.smooth}-window smoothing: "
              + (f"from step {step} to the end ({common[-1] + 1})" if step else "not by the end of the run"))
        end = common[-1] + 1
        final = {name: [value_at(s, v, end, args.smooth) for _, s, v in by_name[name]] for name in (a, b)}
        print(f"at step {end}: {a} {fmt(final[a])} (n={len(final[a])}) vs {b} {fmt(final[b])} "
              f"(n={len(final[b])}); per seed: {a} {', '.join(f'{v:.2f}' for v in final[a])}, "
              f"{b} {', '.join(f'{v:.2f}' for v in final[b])}")
    if args.plot:
        plot(groups, args.smooth, cross, args.plot)


def plot(groups, smooth: int, cross, path: str) -> None:
    """Smoothed training error against steps per net (and A - B) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2 if cross else 1, figsize=(11 if cross else 6, 4), squeeze=False)
    ax = axes[0][0]
    for (_, name), rows in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        curve = seed_mean(rows, smooth)
        x = [s + 1 for s in curve]
        mean, std = [m for m, _ in curve.values()], [d for _, d in curve.values()]
        line, = ax.plot(x, mean, ls=":" if name.startswith("plain") else "-", label=f"{name} (n={len(rows)})")
        if len(rows) > 1:
            ax.fill_between(x, [m - d for m, d in zip(mean, std)], [m + d for m, d in zip(mean, std)],
                            color=line.get_color(), alpha=0.2, lw=0)
    ax.set(xlabel="optimizer step", ylabel=f"training error %, mean of {smooth} logged windows",
           title="training error (seed mean, band +- 1 std)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if cross:
        a, b, steps, diff, step = cross
        ax = axes[0][1]
        ax.plot([s + 1 for s in steps], diff, color="k")
        ax.axhline(0, color="grey", lw=0.8)
        if step:
            ax.axvline(step, color="tab:red", ls="--", label=f"{a} <= {b} from step {step}")
            ax.legend(fontsize=8)
        ax.set(xlabel="optimizer step", ylabel="difference of seed means (points)", title=f"{a} minus {b}")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    main()
