"""Table of the init study from its runs' TensorBoard logs and summaries.

    python experiments/init/collect.py <run dir>...

Per run: the first logged 10-step window of the training loss (steps 0-9), the first step
whose 10-step window of training error is below 80 % (He et al. 2015 sec. 4.2 warm up
ResNet-110 "until the training error is below 80%"; chance is 90 %), and the final training
error as the mean of the last 50 steps (five 10-step windows) of a completed run; a run that
did not complete (diverged, interrupted) has none and is counted apart, not averaged in (its
last windows hold the blow-up, or stop short of the budget). Runs need
``trainer.log_every_n_steps=10``.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from residual_lab.results.loading import load_scalars
from residual_lab.results.stats import welch


def describe(run_dir: Path) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text())
    scalars = load_scalars(run_dir, tags=("train/error", "train/loss"))
    # a run that diverged before its first logging step has no curve at all
    err = sorted(zip(*scalars.get("train/error", ([], []))))
    loss = sorted(zip(*scalars.get("train/loss", ([], []))))
    below = next((s + 1 for s, v in err if v < 80.0), None)
    last = [v for s, v in err if s >= summary["steps"] - 50] if summary["status"] == "completed" else []
    init = summary.get("init")
    if summary.get("norm", "batch") != "batch":  # a norm-free net is another experiment
        init = f"{init} (norm={summary['norm']})"
    return {"init": init, "seed": summary["seed"], "depth": summary["depth"],
            "status": summary["status"], "steps": summary["steps"], "first_loss": loss[0][1] if loss else None,
            "steps_above_80": below, "final_train_error": statistics.mean(last) if last else None,
            "test_error": summary.get("test_error")}


def fmt(values: list[float]) -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{statistics.mean(values):.1f} +- {sd:.1f} (n={len(values)})"


def never(rows: list[dict]) -> str:
    """How many runs never got below 80 % within their run (left out of the mean)."""
    stuck = [r for r in rows if r["steps_above_80"] is None]
    return f"; {len(stuck)} of {len(rows)} never in {stuck[0]['steps']} steps" if stuck else ""


def incomplete(rows: list[dict]) -> str:
    """How many runs did not complete (left out of the final-error mean), by status."""
    out = sorted(r["status"] for r in rows if r["status"] != "completed")
    return f"; {len(out)} of {len(rows)} {', '.join(sorted(set(out)))}" if out else ""


def main() -> None:
    rows = [describe(Path(d)) for d in sys.argv[1:]]
    for r in rows:
        print(json.dumps(r))
    groups = defaultdict(list)
    for r in rows:
        groups[(r["depth"], r["init"])].append(r)
    print("\n| depth | init | loss, steps 0-9 | steps until train error < 80 % | train error, steps 450-499 (%) | test error (%) | seeds |")
    print("|---|---|---|---|---|---|---|")
    for (depth, init), rs in sorted(groups.items()):
        print(f"| {depth} | {init} | {fmt([r['first_loss'] for r in rs if r['first_loss'] is not None])} "
              f"| {fmt([r['steps_above_80'] for r in rs if r['steps_above_80'] is not None])}"
              f"{never(rs)} "
              f"| {fmt([r['final_train_error'] for r in rs if r['final_train_error'] is not None])}{incomplete(rs)} | {fmt([r['test_error'] for r in rs if r['test_error'] is not None])} "
              f"| {', '.join(str(r['seed']) for r in rs)} |")
    print()
    for depth in sorted({d for d, _ in groups}):
        pair = [groups.get((depth, init), []) for init in ("kaiming_fan_in", "kaiming_fan_out")]
        values = [[r["final_train_error"] for r in rs if r["final_train_error"] is not None] for rs in pair]
        if min(map(len, values)) >= 2:
            test = welch(*values)
            print(f"ResNet-{depth} train error, kaiming_fan_in vs kaiming_fan_out: Welch's t-test "
                  f"p = {test.p:.2g} (n = {len(values[0])}, {len(values[1])})")


if __name__ == "__main__":
    main()
