"""Training error against steps, per net, over seeds: the numbers behind the budget choice.

    python experiments/budget_cpu/calibrate.py experiments/fig6/runs [more record or sweep dirs]

Reads run records (``summary.json`` + ``curves.csv``, see ``residual_lab.results.export``) or
run directories. Per net (run name, seeds pooled): the first step whose logged training-error
window is below 80 % (He et al. 2015 sec. 4.2 warm ResNet-110 up "until the training error
is below 80%"; chance is 90 %), and the logged training error at a few checkpoints of the
run, mean +- sample std over seeds. Runs need ``trainer.log_every_n_steps=10`` (budget=cpu
sets it). The curves themselves are the report's curves.png.
"""

from __future__ import annotations

import statistics
import sys
from collections import defaultdict

from residual_lab.results.loading import find_runs

CHANCE_EXIT = 80.0  # % training error
AT_STEPS = (100, 200, 300, 400, 500)


def first_below(steps: list[int], values: list[float], level: float) -> int | None:
    """The step after the first logged window below ``level`` (the window ends at ``step``)."""
    return next((s + 1 for s, v in zip(steps, values) if v < level), None)


def value_at(steps: list[int], values: list[float], step: int) -> float | None:
    """The last logged value at or before ``step`` (a window ending there)."""
    before = [v for s, v in zip(steps, values) if s < step]
    return before[-1] if before else None


def fmt(values: list[float | None]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} +- {statistics.stdev(values):.1f}"


def main(roots: list[str]) -> None:
    groups = defaultdict(list)
    for run in find_runs(roots):
        if run.status != "completed":
            continue
        steps, values = run.scalars.get("train/error", ([], []))
        order = sorted(range(len(steps)), key=steps.__getitem__)
        steps, values = [steps[i] for i in order], [values[i] for i in order]
        groups[(run.get("depth"), run.name)].append((run.get("seed"), steps, values))
    head = " | ".join(f"step {s}" for s in AT_STEPS)
    print(f"| net | seeds | first step < {CHANCE_EXIT:.0f} % | training error at {head} |")
    print("|---|---|---|" + "---|" * len(AT_STEPS))
    for (_, name), rows in sorted(groups.items(), key=lambda kv: (kv[0][0], "resnet" in kv[0][1])):
        exits = [first_below(s, v, CHANCE_EXIT) for _, s, v in rows]
        never = sum(e is None for e in exits)
        cells = [fmt([value_at(s, v, at) for _, s, v in rows]) for at in AT_STEPS]
        print(f"| {name} | {len(rows)} ({', '.join(str(seed) for seed, _, _ in rows)}) "
              f"| {fmt(exits)}{f' ({never} never)' if never else ''} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
