"""Print the numbers of the gradient runs and copy their diagnostic PNGs here.

    .venv/bin/python experiments/gradients_cpu/collect.py /work/runs/gradients_cpu/*/ /work/runs/gradients_cpu_nonorm

For each run directory: run name, lr, first/last block dL/dx ratio and the block-input
gradient norms at the last logged step, final training error (mean over the last logging
window, %). The PNGs are the DiagnosticFigures callback's own output (``<run>/diagnostics``).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(run_dirs: list[str]) -> None:
    print("| run | lr | steps | dL/dx first/last block | dL/dx s1.b0 | dL/dx last block | train error % | test error % |")
    print("|---|---|---|---|---|---|---|---|")
    for d in map(Path, run_dirs):
        s = json.loads((d / "summary.json").read_text())
        b = s["diagnostics"]["block_grad"]
        print(f"| {s['run_name']} | {s['lr']} | {s['steps']} | {b['first_over_last']:.3g} | {b['grad_norm'][0]:.3g} "
              f"| {b['grad_norm'][-1]:.3g} | {s['train_error']:.1f} | {s['test_error']:.1f} |")
        for png in sorted((d / "diagnostics").glob("*.png")):
            shutil.copy(png, HERE / f"{s['run_name']}_{png.name}")


if __name__ == "__main__":
    main(sys.argv[1:])
