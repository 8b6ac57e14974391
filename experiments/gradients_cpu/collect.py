"""Gradients at the blocks' inputs of plain and residual nets, over seeds, from run records.

    python experiments/gradients_cpu/collect.py experiments/fig6/runs experiments/no_norm/runs

Per net (run name + norm, seeds pooled; completed and diverged runs alike): the RMS of
dL/dx at the first block's input (s1.b0) and at the last block's, and their ratio
first/last, as the ``block_grad`` diagnostic logged them at its last measurement (summary.json
``diagnostics.block_grad``), one value per seed (seed order): these spread over decades, so
a mean +- std would hide more than it says. A ratio far below 1 is a gradient that vanishes
towards the input; near 1 a flat profile; nan where the net is dead (both RMS 0). Training
error: mean +- sample std over seeds.
"""

from __future__ import annotations

import statistics
import sys
from collections import defaultdict

from residual_lab.results.loading import find_runs


def fmt(values: list[float], spec: str = ".1f") -> str:
    if len(values) == 1:
        return f"{values[0]:{spec}}"
    return f"{statistics.mean(values):{spec}} +- {statistics.stdev(values):{spec}}"


def per_seed(values: list[float]) -> str:
    return ", ".join(f"{v:.3g}" for v in values)


def main(roots: list[str]) -> None:
    groups = defaultdict(list)
    for run in find_runs(roots):
        block_grad = run.diagnostics.get("block_grad")
        if block_grad:
            groups[(run.get("depth"), run.name, run.get("norm"))].append((run, block_grad))
    for rows in groups.values():
        rows.sort(key=lambda row: row[0].get("seed"))
    print("| net | norm | seeds | step | dL/dx RMS s1.b0 | dL/dx RMS last block | first/last | train error % | status |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (_, name, norm), rows in sorted(groups.items(), key=lambda kv: (kv[0][2] != "batch", kv[0][0], kv[0][1])):
        grads = [b for _, b in rows]
        errors = [r.get("train_error") for r, _ in rows if r.get("train_error") is not None]
        statuses = ", ".join(sorted({r.status for r, _ in rows}))
        seeds = ", ".join(str(r.get("seed")) for r, _ in rows)
        steps = ", ".join(sorted({str(b["step"] + 1) for b in grads}))
        print(f"| {name} | {norm} | {seeds} | {steps} | {per_seed([b['grad_rms'][0] for b in grads])} "
              f"| {per_seed([b['grad_rms'][-1] for b in grads])} | {per_seed([b['first_over_last'] for b in grads])} "
              f"| {fmt(errors) if errors else '-'} | {statuses} |")


if __name__ == "__main__":
    main(sys.argv[1:])
