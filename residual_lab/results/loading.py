"""Find the runs under a run or multirun directory and load what each one left behind.

A run directory is one Hydra job's output: ``.hydra/config.yaml`` (written when the job
starts), ``summary.json`` (written by :func:`residual_lab.run.train` when it ends, with a
``status``) and TensorBoard event files under ``tensorboard/<run_name>/``. A job killed
mid-way has the first and maybe the last but no summary: it is kept, as ``incomplete``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

import residual_lab  # noqa: F401  (registers the resolvers run_name needs)
from residual_lab.summary import SUMMARY_FILE

#: Status given to a run directory without summary.json (killed, or still running).
INCOMPLETE = "incomplete"
#: The scalar tags the report plots (He et al. 2015 Fig. 6 curves).
CURVE_TAGS = ("train/error", "val/error", "test/error")
#: Config fields that identify a net; read from summary.json, else from .hydra/config.yaml.
IDENTITY_FIELDS = ("run_name", "depth", "shortcut", "block", "width", "norm", "seed")


@dataclass
class Run:
    """One run directory and what it contains.

    Attributes:
        path: the run directory.
        summary: summary.json's fields, or None when the run never wrote one.
        fields: identifying fields (run_name, depth, shortcut, block, width, norm, seed), from
            the summary or, for incomplete runs, from the saved config.
    """

    path: Path
    summary: dict[str, Any] | None
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """``completed``, ``diverged``, ``failed``, ``interrupted`` or ``incomplete``."""
        return (self.summary or {}).get("status", INCOMPLETE)

    @property
    def name(self) -> str:
        return str(self.fields.get("run_name") or self.path.name)

    @property
    def is_plain(self) -> bool:
        return self.fields.get("shortcut") == "none"

    def get(self, key: str, default: Any = None) -> Any:
        """A summary field, else an identifying field, else ``default``."""
        if self.summary and self.summary.get(key) is not None:
            return self.summary[key]
        return self.fields.get(key, default)

    @cached_property
    def scalars(self) -> dict[str, tuple[list[int], list[float]]]:
        """``{tag: (steps, values)}`` for :data:`CURVE_TAGS` (loaded once, on first use)."""
        return load_scalars(self.path, CURVE_TAGS)

    @property
    def diagnostics(self) -> dict[str, Any]:
        """summary.json's ``diagnostics`` (``{summary_key: latest measurement}``), or {}."""
        return (self.summary or {}).get("diagnostics") or {}


def _natural_key(path: Path) -> list:
    """``2_x`` before ``10_x``: Hydra numbers jobs without zero padding."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def _is_run_dir(path: Path) -> bool:
    return (path / SUMMARY_FILE).is_file() or (path / ".hydra" / "config.yaml").is_file()


def _config_fields(path: Path) -> dict[str, Any]:
    """Identifying fields from ``.hydra/config.yaml`` (resolving only those keys: the rest
    of the config refers to ``hydra:`` nodes that exist only inside a Hydra app)."""
    cfg_file = path / ".hydra" / "config.yaml"
    if not cfg_file.is_file():
        return {}
    cfg = OmegaConf.load(cfg_file)
    out = {}
    for key in IDENTITY_FIELDS:
        try:
            out[key] = OmegaConf.select(cfg, key, throw_on_missing=False)
        except Exception:  # an interpolation that needs the Hydra runtime: leave it out
            continue
    return {k: v for k, v in out.items() if v is not None}


def load_run(path: str | Path) -> Run:
    """The :class:`Run` in one directory (summary.json optional)."""
    path = Path(path)
    summary = None
    summary_file = path / SUMMARY_FILE
    if summary_file.is_file():
        try:
            summary = json.loads(summary_file.read_text())
        except json.JSONDecodeError:  # summary.json is written atomically; a bad one is not ours
            summary = None
    fields = _config_fields(path)
    if summary:
        fields.update({k: summary[k] for k in IDENTITY_FIELDS if summary.get(k) is not None})
    return Run(path=path, summary=summary, fields=fields)


def find_runs(root: str | Path, max_depth: int = 3) -> list[Run]:
    """Every run under ``root``: ``root`` itself if it is a run, else its run subdirectories.

    Works on a single run, a multirun (``<sweep>/<job>_<name>/``), a directory of multiruns,
    and a sweep still in progress (jobs without summary.json are ``incomplete``).
    Directories are visited in natural order, so jobs come back in Hydra's job order.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no such directory: {root}")
    if _is_run_dir(root):
        return [load_run(root)]
    runs: list[Run] = []
    frontier = [root]
    for _ in range(max_depth):
        nxt = []
        for d in frontier:
            for child in sorted((c for c in d.iterdir() if c.is_dir() and not c.name.startswith(".")),
                                key=_natural_key):
                if _is_run_dir(child):
                    runs.append(load_run(child))
                elif child.name not in ("tensorboard", "checkpoints"):
                    nxt.append(child)
        frontier = nxt
    return sorted(runs, key=lambda r: _natural_key(r.path))


def event_dirs(run_dir: str | Path) -> list[Path]:
    """Directories holding TensorBoard event files of a run (``tensorboard/<run_name>/``)."""
    tb = Path(run_dir) / "tensorboard"
    if not tb.is_dir():
        return []
    return sorted({p.parent for p in tb.rglob("events.out.tfevents.*")}, key=_natural_key)


def load_scalars(run_dir: str | Path, tags: tuple[str, ...] | None = CURVE_TAGS) -> dict[str, tuple[list[int], list[float]]]:
    """``{tag: (steps, values)}`` from a run's TensorBoard events, sorted by step.

    Uses TensorBoard's own reader (``EventAccumulator``, every event file of the
    directory, no down-sampling). ``tags=None`` loads every scalar tag. Missing tags are
    absent from the result; a run that logged nothing yet gives ``{}``.
    """
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
