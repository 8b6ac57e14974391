"""The cross-family figure of the README: final training loss against depth, plain vs residual.

One panel per model family, drawn by the report's own :func:`residual_lab.results.plots.depth_figure`
from the committed run records of the depth presets (a report over all of them would also
draw every curve and profile of ~70 nets in one figure)::

    python experiments/families/figure.py experiments/fig6/runs experiments/depth_mlp/runs \
        experiments/depth_vit/runs experiments/depth_lstm/runs --out experiments/families/depth.png
"""

from __future__ import annotations

import argparse
import math

from residual_lab.report import save_figure
from residual_lab.results import find_runs
from residual_lab.results.plots import depth_figure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", help="run, sweep or run-record directories")
    parser.add_argument("--out", required=True, help="the PNG to write")
    parser.add_argument("--classes", type=int, default=10, help="draws the chance loss, ln(classes)")
    args = parser.parse_args(argv)
    runs = find_runs(args.roots)
    fig = depth_figure(runs, chance=math.log(args.classes))
    if fig is None:
        parser.error("no model family was run at two depths or more")
    print(f"{len(runs)} runs -> {save_figure(fig, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
