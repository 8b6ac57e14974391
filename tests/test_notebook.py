"""notebooks/analysis.ipynb through the command the README documents (``jupyter execute``).

The in-process run against a fresh sweep is tests/test_report.py::test_notebook_runs_on_a_sweep (slow).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "analysis.ipynb"
#: Every committed run record, wherever under experiments/ (the notebook reads them all, e.g. fig6/rerun/).
RECORDS = sorted(p.parent for p in ROOT.glob("experiments/**/summary.json"))
#: Committed records that completed (the others, e.g. diverged norm-free runs, are counted apart).
COMPLETED = [r for r in RECORDS if json.loads((r / "summary.json").read_text())["status"] == "completed"]


def count_line(records: list[Path]) -> str:
    """The notebook's count line for ``records``: ``runs: N (completed: c, diverged: d)``."""
    statuses = sorted(json.loads((r / "summary.json").read_text())["status"] for r in records)
    return f"runs: {len(records)} (" + ", ".join(f"{s}: {statuses.count(s)}" for s in sorted(set(statuses))) + ")"
#: Code cells that draw a figure: the Fig. 6 curves and the gradient profiles.
FIGURES = 2


def execute(cwd: Path, out: Path, sweep: str | None = None) -> dict:
    """``[RESIDUAL_LAB_SWEEP=<sweep>] jupyter execute <notebook> --output=<out>`` started in ``cwd``
    as a shell would (``PWD`` set); the executed notebook as JSON."""
    env = {k: v for k, v in os.environ.items() if k != "RESIDUAL_LAB_SWEEP"} | {"PWD": str(cwd)}
    if sweep is not None:
        env["RESIDUAL_LAB_SWEEP"] = sweep
    cmd = [sys.executable, "-m", "jupyter", "execute", str(NOTEBOOK), f"--output={out}"]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.with_suffix(".ipynb").read_text())


def outputs(nb: dict) -> tuple[str, int]:
    """(all printed text, stderr included, and number of images) of the executed notebook's code cells."""
    text, images = "", 0
    for cell in nb["cells"]:
        for o in cell.get("outputs", []) if cell["cell_type"] == "code" else []:
            assert o["output_type"] != "error", o
            text += "".join(o.get("text", ""))
            images += "image/png" in o.get("data", {})
    return text, images


def image_sizes(nb: dict) -> list[tuple[int, int]]:
    """(width, height) in pixels of every image the executed notebook shows."""
    import base64
    import io

    from PIL import Image

    return [Image.open(io.BytesIO(base64.b64decode(o["data"]["image/png"]))).size
            for cell in nb["cells"] if cell["cell_type"] == "code"
            for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]


def test_notebook_runs_on_the_committed_records_right_after_cloning(tmp_path):
    assert RECORDS, "no run records under experiments/*/runs/"
    nb = execute(ROOT, tmp_path / "out")
    text, images = outputs(nb)
    assert f"reading {ROOT / 'experiments'}" in text
    assert count_line(RECORDS) in text
    assert images == FIGURES  # each figure once
    # Before: ~250 runs drew the curves under a ~100-entry legend ("axes sizes collapsed to zero")
    # and the profiles 4421x345 px; now a row per experiment, the width bounded.
    assert "collapsed" not in text
    assert all(w <= 2000 and h >= 300 for w, h in image_sizes(nb)), image_sizes(nb)


def test_a_relative_sweep_dir_is_read_from_where_the_command_starts(tmp_path):
    for record in COMPLETED[:2]:
        shutil.copytree(record, tmp_path / "sweep" / record.name)
    text, images = outputs(execute(tmp_path, tmp_path / "out", sweep="sweep"))
    n = min(2, len(COMPLETED))
    assert f"reading {tmp_path / 'sweep'}" in text and f"runs: {n} (completed: {n})" in text
    assert images == FIGURES
