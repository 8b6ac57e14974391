"""An exploration, not the registered test: the ladder's gap-against-budget slopes with a
heteroscedasticity-robust (HC3) standard error beside the report's pooled one.

The report's test (iv) (docs/reproducing.md) is the difference of two least-squares slopes on
log2(steps) with the residual variance pooled over both nets and every budget
(``residual_lab.results.stats.slope_difference``). That assumes every rung's seeds spread alike;
plain-56's do not at 500 steps (near chance). ``slope_difference_hc3`` drops that assumption and
keeps the fit. It was chosen after the data were seen, so it is printed as a check on the
registered verdict, raw and unadjusted, never as a verdict::

    python experiments/ladder/robust_check.py experiments/fig6/runs experiments/ladder/runs
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from residual_lab.results.stats import REGISTERED, slope_difference, slope_difference_hc3

PAIRS = (("plain-56", "plain-20"), ("resnet-56-identity", "resnet-20-identity"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="folders of run records (fig6's, the ladder's)")
    runs = [json.loads(p.read_text()) for f in parser.parse_args().folders for p in sorted(f.glob("*/summary.json"))]
    runs = [r for r in runs if r.get("status") == "completed" and r.get(REGISTERED) is not None]
    for deep, shallow in PAIRS:
        # the budgets both nets ran at, as the report's test (iv) takes them
        shared = set.intersection(*({r["max_steps"] for r in runs if r["run_name"] == net} for net in (deep, shallow)))
        xa, ya, xb, yb = ([math.log2(r["max_steps"]) if key == "x" else r[REGISTERED] for r in runs
                           if r["run_name"] == net and r["max_steps"] in shared]
                          for net in (deep, shallow) for key in ("x", "y"))
        pooled, robust = slope_difference(xa, ya, xb, yb), slope_difference_hc3(xa, ya, xb, yb)
        budgets = ", ".join(map(str, sorted(shared)))
        print(f"{deep} minus {shallow}, budgets {budgets}, {pooled.n} runs: {pooled.difference:+.2f} points per "
              f"doubling; pooled p={pooled.p:.2g}, HC3 p={robust.p:.2g} ({pooled.n - 4} df, raw, not adjusted; "
              f"exploration, not a verdict)")


if __name__ == "__main__":
    main()
