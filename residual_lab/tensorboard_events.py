"""Reading a run's TensorBoard scalars, below everything that reads runs.

:mod:`residual_lab.results.loading` reads a run's curves from here (or from a run record's
curves.csv), and :mod:`residual_lab.summary_repair` rebuilds a lost summary.json from the
same events; the results package in turn needs summary_repair, so the reader sits below
both. Uses TensorBoard's own reader (``EventAccumulator``, every event file, no
down-sampling).
"""

from __future__ import annotations

import re
from pathlib import Path


def natural_key(path: Path) -> list:
    """``2_x`` before ``10_x``: Hydra numbers jobs without zero padding."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def event_dirs(run_dir: str | Path) -> list[Path]:
    """Directories holding TensorBoard event files of a run (``tensorboard/<run_name>/``)."""
    tb = Path(run_dir) / "tensorboard"
    if not tb.is_dir():
        return []
    return sorted({p.parent for p in tb.rglob("events.out.tfevents.*")}, key=natural_key)


def read_event_scalars(run_dir: str | Path, tags: tuple[str, ...] | None) -> dict[str, tuple[list[int], list[float]]]:
    """``{tag: (steps, values)}`` from every event file of a run, in :func:`event_dirs` order
    (a resumed run's later value of a step wins). ``tags=None``: every scalar tag; missing
    tags are absent; a run that logged nothing yet gives ``{}``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    merged: dict[str, dict[int, float]] = {}
    for d in event_dirs(run_dir):
        acc = EventAccumulator(str(d), size_guidance={"scalars": 0})
        acc.Reload()
        available = acc.Tags().get("scalars", [])
        for tag in available if tags is None else [t for t in tags if t in available]:
            for ev in acc.Scalars(tag):
                merged.setdefault(tag, {})[int(ev.step)] = float(ev.value)  # a resumed run's later value wins
    return {tag: (sorted(points), [points[s] for s in sorted(points)]) for tag, points in merged.items()}
