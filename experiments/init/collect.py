"""Table of the init study from its runs' TensorBoard logs and summaries.

    python experiments/init/collect.py <run dir>... [--initial-loss <initial_loss.py's JSON lines>]

Per run: the first logged 10-step window of the training loss (steps 0-9), the first step
whose 10-step window of training error is below 80 % (He et al. 2015 sec. 4.2 warm up
ResNet-110 "until the training error is below 80%"; chance is 90 %), and the final training
error as the mean of the last 50 steps (five 10-step windows) of a completed run; a run that
did not complete (diverged, interrupted) has none and is counted apart, not averaged in (its
last windows hold the blow-up, or stop short of the budget). Runs need
``trainer.log_every_n_steps=10``.

Then the study's verdicts: Welch's t-test kaiming_fan_in vs kaiming_fan_out at each depth on
the 10-step initial loss and the final training error (and, given ``--initial-loss``, on the
forward measurement of initial_loss.py), raw p and Holm-adjusted over every test printed, so
the README quotes what this prints (the project's rule: >= 3 seeds a side, adjusted p < 0.05).
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from residual_lab.results.loading import load_scalars
from residual_lab.results.stats import holm, welch


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


def verdicts(groups: dict, forward: list[dict]) -> list[str]:
    """One line per test: what, n a side, means, raw p, Holm-adjusted p over all, verdict."""
    inits = ("kaiming_fan_in", "kaiming_fan_out")
    tests = []
    for depth in sorted({d for d, _ in groups}):
        if forward:
            tests.append((f"ResNet-{depth} initial loss, forward (initial_loss.py)",
                          [[r["loss"] for r in forward if r["depth"] == depth and r["init"] == i] for i in inits]))
        for key, what in (("first_loss", "loss, steps 0-9"), ("final_train_error", "train error, last 50 steps")):
            tests.append((f"ResNet-{depth} {what}", [[r[key] for r in groups.get((depth, i), []) if r[key] is not None]
                                                     for i in inits]))
    tests = [(what, values) for what, values in tests if min(map(len, values)) >= 2]
    raw = [welch(*values).p for _, values in tests]
    adjusted = holm(raw)
    lines = []
    for (what, (a, b)), p, q in zip(tests, raw, adjusted):
        lower = "kaiming_fan_out" if statistics.mean(b) < statistics.mean(a) else "kaiming_fan_in"
        verdict = f"lower with {lower}" if q < 0.05 and min(len(a), len(b)) >= 3 else "not resolved"
        lines.append(f"{what}: fan_in {statistics.mean(a):.3g} (n={len(a)}) vs fan_out {statistics.mean(b):.3g} "
                     f"(n={len(b)}); Welch p = {p:.2g}, Holm-adjusted p = {q:.2g} over {len(tests)} tests: {verdict}")
    return lines


def main() -> None:
    args = sys.argv[1:]
    forward = []
    if "--initial-loss" in args:
        i = args.index("--initial-loss")
        forward = [json.loads(line) for line in Path(args[i + 1]).read_text().splitlines() if line.strip()]
        del args[i:i + 2]
    rows = [describe(Path(d)) for d in args]
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
    for line in verdicts(groups, forward):
        print(line)


if __name__ == "__main__":
    main()
