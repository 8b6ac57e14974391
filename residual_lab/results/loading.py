"""Find the runs under run, multirun or run-record directories and load what each one left behind.

A run directory is one Hydra job's output: ``.hydra/config.yaml`` (written when the job
starts), ``summary.json`` (written by :func:`residual_lab.run.train` when it ends, with a
``status``) and TensorBoard event files under ``tensorboard/<run_name>/``. A job killed
mid-way has the first and maybe the last but no summary: it is kept, as ``incomplete``. One whose
summary.json cannot be read is read from its checkpoint and events where it finished
(:mod:`residual_lab.summary_repair`), else kept as ``damaged``.

A run record (:mod:`residual_lab.results.export`, committed under
``experiments/<preset>/runs/<run name>-seed<k>/``) is ``summary.json`` plus ``curves.csv``
instead of the event files; it reads back as the same :class:`Run`.

Summaries written before the ``protocol``, ``dataset`` and ``world_size`` fields existed are
completed by :func:`derived_fields`: every earlier run used the 45k/5k split (``heldout``) and
ran on one process (the epochs of every committed record are steps x batch / training images),
and the data set is named from the data source's class where that says it.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

from omegaconf import OmegaConf

import residual_lab  # noqa: F401  (registers the resolvers run_name needs)
from residual_lab.results.analyses import is_analysis_dir, saved_config_has_node
from residual_lab.summary import SUMMARY_FILE, upgrade
from residual_lab.summary_repair import read_summary, rebuild_summary
from residual_lab.tensorboard_events import event_dirs, natural_key, read_event_scalars

#: Status given to a run directory without summary.json (killed, or still running).
INCOMPLETE = "incomplete"
#: Status given to a run whose summary.json cannot be read and cannot be rebuilt
#: (residual_lab.summary_repair): it ran, but its record is lost.
DAMAGED = "damaged"
#: (diagnostic, old field) -> new field: the block-input gradient is an RMS, stored as
#: ``grad_norm`` until 2026-12-03 (committed records keep the old name).
RENAMED_DIAGNOSTIC_FIELDS = {("block_grad", "grad_norm"): "grad_rms"}
#: old diagnostic -> new name: the per-block RMS callback was ``signal`` until 2026-12-03, a name
#: it shared with the ``analyze signal`` probe (a different measurement).
RENAMED_DIAGNOSTICS = {"signal": "block_rms"}
#: The scalar tags the report plots (He et al. 2015 Fig. 6 curves).
CURVE_TAGS = ("train/error", "val/error", "test/error")
#: The scalar tags a run record keeps (``curves.csv``: one column per tag, ``/`` -> ``_``).
RECORD_TAGS = ("train/loss", "train/error", "train_full/loss", "train_full/error", "val/loss", "val/error", "test/loss",
               "test/error")
#: A run record's curves, written by :func:`residual_lab.results.export.export_run_record`.
CURVES_CSV = "curves.csv"
#: Fields that identify an experiment (seed included); read from summary.json, else, for the
#: top-level keys, from .hydra/config.yaml. Runs that agree on all but ``seed`` are seeds of
#: one experiment (:func:`residual_lab.results.tables.aggregate`).
#: ``precision`` and ``protocol`` are what ran (summary_version 4 on), ``world_size`` and
#: ``global_batch`` how many processes trained and on how many images a step: runs that differ
#: in any of them are not seeds of one experiment.
IDENTITY_FIELDS = ("run_name", "model", "depth", "shortcut", "block", "width", "norm", "init", "seed", "dataset",
                   "protocol", "data", "batch_size", "world_size", "global_batch", "optimizer", "lr", "max_steps",
                   "precision")
#: What a summary without ``protocol`` used: every run before the field existed held out a validation split.
DEFAULT_PROTOCOL = "heldout"
#: What a summary without ``world_size`` (before summary_version 4) ran on: one process.
DEFAULT_WORLD_SIZE = 1
#: ``dataset`` of summaries that predate it, from their ``data`` field (the source's class).
#: TorchvisionCIFAR served both CIFAR-10 and CIFAR-100 and did not record which.
DATASET_FROM_SOURCE = {"TorchvisionCIFAR": "cifar10 or cifar100 (not recorded)",
                       "ImageFolderSource": "imagefolder", "SyntheticSource": "synthetic"}


@dataclass
class Run:
    """One run directory and what it contains.

    Attributes:
        path: the run directory.
        summary: summary.json's fields, or None when the run never wrote one.
        fields: identifying fields (:data:`IDENTITY_FIELDS`), from the summary or, for
            incomplete runs, from the saved config; ``protocol`` and ``dataset`` derived for
            summaries that predate them.
    """

    path: Path
    summary: dict[str, Any] | None
    fields: dict[str, Any] = field(default_factory=dict)
    #: Fields not in summary.json but derived for an old one (:func:`derived_fields`).
    derived: tuple[str, ...] = ()
    #: Why summary.json could not be read (``"not JSON"``), or None. ``summary`` is then the one
    #: rebuilt from the checkpoint and events (not written to disk here), or None.
    damaged: str | None = None

    @property
    def status(self) -> str:
        """``completed``, ``diverged``, ``failed``, ``interrupted``, ``incomplete`` or ``damaged``."""
        if self.summary is None and self.damaged:
            return DAMAGED
        return (self.summary or {}).get("status", INCOMPLETE)

    @property
    def name(self) -> str:
        return str(self.fields.get("run_name") or self.path.name)

    @property
    def is_plain(self) -> bool:
        return self.fields.get("shortcut") == "none"

    def get(self, key: str, default: Any = None) -> Any:
        """A summary field, else an identifying field (derived ones included), else ``default``."""
        if self.summary and self.summary.get(key) is not None:
            return self.summary[key]
        return self.fields.get(key, default)

    @cached_property
    def scalars(self) -> dict[str, tuple[list[int], list[float]]]:
        """``{tag: (steps, values)}`` for :data:`CURVE_TAGS` (loaded once, on first use)."""
        return load_scalars(self.path, CURVE_TAGS)

    @property
    def diagnostics(self) -> dict[str, Any]:
        """summary.json's ``diagnostics`` (``{summary_key: latest measurement}``), or {};
        diagnostics and fields renamed since a record was written read under their new names
        (:data:`RENAMED_DIAGNOSTICS`, :data:`RENAMED_DIAGNOSTIC_FIELDS`)."""
        diagnostics = dict((self.summary or {}).get("diagnostics") or {})
        for old, new in RENAMED_DIAGNOSTICS.items():
            if old in diagnostics and new not in diagnostics:
                diagnostics[new] = diagnostics.pop(old)
        for (key, old), new in RENAMED_DIAGNOSTIC_FIELDS.items():
            entry = diagnostics.get(key)
            if isinstance(entry, dict) and old in entry and new not in entry:
                diagnostics[key] = {(new if k == old else k): v for k, v in entry.items()}
        return diagnostics


def _is_run_dir(path: Path) -> bool:
    """A training run's directory: summary.json, or a saved config that is not an analysis' or a
    bench's (whose saved config has its ``bench`` node, and whose checkpoints are timing windows)."""
    if (path / SUMMARY_FILE).is_file():
        return True
    return (path / ".hydra" / "config.yaml").is_file() and not is_analysis_dir(path) \
        and not saved_config_has_node(path, "bench")


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


def derived_fields(summary: dict[str, Any]) -> dict[str, Any]:
    """``protocol``, ``dataset``, ``world_size`` and ``global_batch`` for a summary that lacks
    them (empty if it has them all)."""
    out = {}
    if summary.get("protocol") is None:
        out["protocol"] = DEFAULT_PROTOCOL
    if summary.get("world_size") is None and summary.get("summary_version", 1) < 4:
        out["world_size"] = DEFAULT_WORLD_SIZE
        if summary.get("batch_size") is not None and summary.get("global_batch") is None:
            out["global_batch"] = int(summary["batch_size"]) * DEFAULT_WORLD_SIZE
    if summary.get("dataset") is None and summary.get("data") is not None:
        out["dataset"] = DATASET_FROM_SOURCE.get(str(summary["data"]), f"{summary['data']} (not recorded)")
    return out


def load_run(path: str | Path) -> Run:
    """The :class:`Run` in one directory (summary.json optional)."""
    path = Path(path)
    summary, damaged = read_summary(path)
    if summary is not None:
        summary = upgrade(summary)  # older layouts in today's units
    elif damaged:  # summary.json is written atomically: a bad one was damaged after the run
        summary = rebuild_summary(path)
    fields = _config_fields(path)
    derived: dict[str, Any] = {}
    if summary:
        fields.update({k: summary[k] for k in IDENTITY_FIELDS if summary.get(k) is not None})
        derived = derived_fields(summary)
        fields.update(derived)
    return Run(path=path, summary=summary, fields=fields, derived=tuple(derived), damaged=damaged)


def find_runs(root: str | Path | Sequence[str | Path], max_depth: int = 3) -> list[Run]:
    """Every run under ``root``: ``root`` itself if it is a run, else its run subdirectories.

    Works on a single run, a multirun (``<sweep>/<job>_<name>/``), a directory of multiruns,
    a directory of run records (``experiments/<preset>/runs``) and a sweep still in progress
    (jobs without summary.json are ``incomplete``). Directories are visited in natural order,
    so jobs come back in Hydra's job order. Several roots (seeds run on different days) give
    their runs one after the other, each directory once.
    """
    if not isinstance(root, (str, Path)):
        runs, seen = [], set()
        for r in root:
            for run in find_runs(r, max_depth):
                if run.path.resolve() not in seen:
                    seen.add(run.path.resolve())
                    runs.append(run)
        return runs
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
                                key=natural_key):
                if _is_run_dir(child):
                    runs.append(load_run(child))
                elif child.name not in ("tensorboard", "checkpoints"):
                    nxt.append(child)
        frontier = nxt
    return sorted(runs, key=lambda r: natural_key(r.path))


#: curves.csv column -> TensorBoard tag (``train_full_error`` is ``train_full/error``, not ``train/full_error``).
_COLUMN_TAGS = {t.replace("/", "_"): t for t in RECORD_TAGS}


def read_curves_csv(path: str | Path, tags: tuple[str, ...] | None = None) -> dict[str, tuple[list[int], list[float]]]:
    """``{tag: (steps, values)}`` from a run record's ``curves.csv`` (empty cell: not logged)."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        columns = [c for c in reader.fieldnames or [] if c != "step"]
        out: dict[str, tuple[list[int], list[float]]] = {}
        for line in reader:
            for col in columns:
                if line[col] not in ("", None):
                    steps, values = out.setdefault(_COLUMN_TAGS.get(col, col.replace("_", "/", 1)), ([], []))
                    steps.append(int(line["step"]))
                    values.append(float(line[col]))
    return {t: sv for t, sv in out.items() if tags is None or t in tags}


def load_scalars(run_dir: str | Path, tags: tuple[str, ...] | None = CURVE_TAGS) -> dict[str, tuple[list[int], list[float]]]:
    """``{tag: (steps, values)}`` from a run's TensorBoard events (or its record's curves.csv).

    Uses TensorBoard's own reader (``EventAccumulator``, every event file of the
    directory, no down-sampling). ``tags=None`` loads every scalar tag. Missing tags are
    absent from the result; a run that logged nothing yet gives ``{}``. A run record
    (``curves.csv``, no event files) gives the tags it kept (:data:`RECORD_TAGS`).
    """
    if not event_dirs(run_dir) and (Path(run_dir) / CURVES_CSV).is_file():
        return read_curves_csv(Path(run_dir) / CURVES_CSV, tags)
    return read_event_scalars(run_dir, tags)
