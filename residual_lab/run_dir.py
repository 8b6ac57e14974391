"""A run directory belongs to one run.

Three things keep a run's record about that run and no other:

- a lock (``run.lock``, an advisory ``flock`` with the holder's pid in it) while a run trains,
  resumes or is planned in the directory, so two processes never write one summary, one
  ``last.ckpt`` and one TensorBoard folder. The kernel drops the lock when its process dies
  (SIGKILL, power loss), so a lock left behind is taken over, with a line naming the pid;
- a copy of ``.hydra/`` as the run started with it (``.hydra_run/``). Hydra writes
  ``.hydra/config.yaml``, ``overrides.yaml`` and ``hydra.yaml`` into the job's directory
  *before* the job starts, so a launch that is then refused (a second run into the
  directory, a sweep relaunched with other values) has already replaced the run's own; the
  copy puts them back, and ``resume=`` reads it first;
- the config the run trained with, ``config_resolved.yaml`` (written by
  :func:`residual_lab.run.train`): a sweep job counts as done before only if that equals the
  new launch's config (:func:`job_home`), else it runs beside the old one in ``<job>-2``.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import socket
from pathlib import Path
from typing import Any, Iterator

from omegaconf import DictConfig, OmegaConf

from residual_lab.console import say
from residual_lab.errors import UserFacingError

LOCK_FILE = "run.lock"
#: ``.hydra/`` as the run started with it (module doc).
HYDRA_COPY = ".hydra_run"
HYDRA_FILES = ("config.yaml", "overrides.yaml", "hydra.yaml")
RESOLVED_CONFIG = "config_resolved.yaml"
#: Keys a resumed run may change, and that do not make a sweep job another experiment: where
#: outputs, data and logs live and how the console looks. ``trainer.max_steps`` (the run's
#: length) is also free on resume (:data:`RESUME_MAY_CHANGE`) but not in a sweep, where a
#: different length is a different result.
WHERE_OUTPUTS_GO = ("paths", "logger", "resume", "trainer.enable_progress_bar", "callbacks.progress_bar")
RESUME_MAY_CHANGE = ("trainer.max_steps", *WHERE_OUTPUTS_GO)


class DirectoryTaken(UserFacingError):
    """The run directory holds another run, or another process is using it. Nothing of the
    refused launch is written there (no failure summary over the other run's)."""


def is_free_to_change(key: str, free: tuple[str, ...]) -> bool:
    """``key`` (dotted) is one of ``free`` or lies under one of them."""
    return any(key == f or key.startswith(f"{f}.") for f in free)


class RunLock:
    """``with RunLock(run_dir):`` holds ``run_dir/run.lock`` for this process.

    ``flock`` rather than an O_EXCL file alone: the kernel releases it when the holder dies, so a
    stale lock can be told from a live one without guessing from a pid (which may be reused);
    the pid is in the file to name the holder. Raises :class:`DirectoryTaken` if a live process
    holds it.
    """

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._fd: int | None = None

    def __enter__(self) -> "RunLock":
        self.run_dir.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 200).decode(errors="replace").split()
                os.close(fd)
                pid = holder[0] if holder else "unknown"
                raise DirectoryTaken(f"{self.run_dir} is in use by another run (pid {pid}"
                                     f"{' on ' + holder[1] if len(holder) > 1 else ''}); wait for it to end or "
                                     f"give this run its own directory") from None
            # The file may have been unlinked by its last holder between our open and flock:
            # then we locked a file nobody else will see; open it again.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        left = os.read(fd, 200).decode(errors="replace").split()
        if left:  # a holder that died without releasing it (SIGKILL, power loss)
            say(f"{self.run_dir}: took over the lock of pid {left[0]}, which is not running")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)  # before closing: nobody can lock the old inode in between
            os.close(self._fd)
            self._fd = None


def is_rank_zero() -> bool:
    """False in the worker processes Lightning starts for ``trainer.devices>1`` (they set
    ``LOCAL_RANK``/``NODE_RANK`` and run this program again in the same directory): only the
    launching process owns the run directory."""
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"


def holds_a_run(run_dir: Path) -> bool:
    """A run has been here: a summary.json (any status, readable or not) or a checkpoint."""
    return (run_dir / "summary.json").exists() or any((run_dir / "checkpoints").glob("*.ckpt"))


def keep_hydra_files(run_dir: Path) -> None:
    """Copy ``.hydra/`` as this run starts with it into ``.hydra_run/`` (module doc)."""
    _copy_hydra_files(run_dir / ".hydra", run_dir / HYDRA_COPY)


def restore_hydra_files(run_dir: Path) -> None:
    """Put back the ``.hydra/`` files a later launch's Hydra wrote over (if the run kept them)."""
    _copy_hydra_files(run_dir / HYDRA_COPY, run_dir / ".hydra")


def _copy_hydra_files(source: Path, target: Path) -> None:
    if not source.is_dir():
        return
    target.mkdir(parents=True, exist_ok=True)
    for name in HYDRA_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, target / name)


def claim_run_dir(output_dir: Path, held: contextlib.ExitStack) -> None:
    """A single run's directory, locked for this run; refused if it holds another run.

    Hydra has already written this launch's ``.hydra/`` there: a refused launch puts the other
    run's back."""
    try:
        held.enter_context(RunLock(output_dir))
        if holds_a_run(output_dir):
            raise DirectoryTaken(f"{output_dir} already holds a run (summary.json, checkpoints/); continue it "
                                 f"with resume={output_dir} or give this run its own hydra.run.dir")
    except DirectoryTaken:
        restore_hydra_files(output_dir)
        raise
    keep_hydra_files(output_dir)


def made_by_this_launch(run_dir: Path) -> bool:
    """``run_dir`` holds only what Hydra writes before a job starts (``.hydra/``, an empty
    run.log): no run has been there, and a refused run may take it away again
    (:func:`forget_run_dir`)."""
    try:
        entries = {p.name: p for p in run_dir.iterdir()}
    except OSError:
        return False
    return set(entries) <= {".hydra", "run.log"} and (
        "run.log" not in entries or entries["run.log"].stat().st_size == 0)


def forget_run_dir(run_dir: Path) -> None:
    """Remove a directory Hydra made for a run that was refused before it began (bad input):
    ``tensorboard --logdir logs/`` and the report then list only runs that ran."""
    root = logging.getLogger()
    for handler in list(root.handlers):  # run.log, opened by Hydra
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == run_dir.resolve():
            root.removeHandler(handler)
            handler.close()
    shutil.rmtree(run_dir, ignore_errors=True)


def own_config_file(run_dir: Path) -> Path:
    """The config a run started from (interpolations kept): ``.hydra_run/config.yaml``, else
    (runs made before it existed, or outside a Hydra launch) ``.hydra/config.yaml``."""
    kept = run_dir / HYDRA_COPY / "config.yaml"
    return kept if kept.is_file() else run_dir / ".hydra" / "config.yaml"


def _flat(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        if not node and prefix:
            yield prefix, {}
        for k, v in node.items():
            yield from _flat(v, f"{prefix}.{k}" if prefix else str(k))
    else:
        yield prefix, node


def config_changes(old: dict[str, Any], new: dict[str, Any],
                   free: tuple[str, ...] = WHERE_OUTPUTS_GO) -> list[tuple[str, Any, Any]]:
    """``(key, old value, new value)`` for every leaf that differs (``<absent>`` where a side lacks
    it), outside the ``free`` keys; in key order."""
    a, b = dict(_flat(old)), dict(_flat(new))
    return [(k, a.get(k, "<absent>"), b.get(k, "<absent>")) for k in sorted(a.keys() | b.keys())
            if not is_free_to_change(k, free) and a.get(k, "<absent>") != b.get(k, "<absent>")]


def _in_any_dir(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with its own output directory written ``<run dir>`` wherever a value contains
    it (checkpoint folders, the TensorBoard folder): the same job in two directories compares equal."""
    own = str((config.get("paths") or {}).get("output_dir") or "")

    def swap(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: swap(v) for k, v in node.items()}
        if isinstance(node, list):
            return [swap(v) for v in node]
        return node.replace(own, "<run dir>") if own and isinstance(node, str) else node

    return swap(config)


def resolved(cfg: DictConfig) -> dict[str, Any]:
    """``cfg`` resolved, as it reads back from ``config_resolved.yaml`` (same YAML round trip,
    so that ``1e-4`` and ``0.0001`` compare equal), its directory written ``<run dir>``."""
    return _in_any_dir(OmegaConf.to_container(OmegaConf.create(OmegaConf.to_yaml(cfg, resolve=True))))


def recorded_config(run_dir: Path) -> dict[str, Any] | None:
    """The resolved config the run in ``run_dir`` trained with, its directory written
    ``<run dir>``; None when there is none (no run yet, a run from before the file existed) or
    it cannot be read."""
    path = run_dir / RESOLVED_CONFIG
    try:
        return _in_any_dir(OmegaConf.to_container(OmegaConf.load(path))) if path.is_file() else None
    except Exception:  # a truncated file: no record to compare (the summary's fields may still say)
        return None


def _summary_changes(run_dir: Path, cfg: DictConfig) -> list[tuple[str, Any, Any]] | None:
    """For a run without ``config_resolved.yaml``: its summary's identifying fields against
    ``cfg``'s (None when the summary is missing or unreadable too)."""
    import json

    from residual_lab.summary import config_fields

    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    # What the run was asked for: ``requested`` holds the config's value where what ran differs
    # (a CPU runs bf16 for 16-mixed), and the new job is compared with what it asks for.
    asked = {**summary, **(summary.get("requested") or {})}
    return [(k, asked[k], v) for k, v in config_fields(cfg).items() if k in asked and k not in ("data_root",)
            and asked[k] != v]


def job_home(job_dir: Path, cfg: DictConfig) -> tuple[Path, list[tuple[str, Any, Any]]]:
    """Where a sweep job launched again runs: ``(directory, what differs in job_dir)``.

    ``job_dir`` itself when it is fresh or holds this same job (its recorded config equals
    ``cfg`` but for :data:`WHERE_OUTPUTS_GO`); else the first of ``<job_dir>-2``, ``-3``, ...
    that holds this job or is free. The changes are those of ``job_dir``'s run (empty when the
    job stays there), for the line that says why it moved.
    """
    new = resolved(cfg)
    moved_because: list[tuple[str, Any, Any]] = []
    for k in range(1, 1000):
        candidate = job_dir if k == 1 else job_dir.with_name(f"{job_dir.name}-{k}")
        if not candidate.exists() or not (holds_a_run(candidate) or (candidate / RESOLVED_CONFIG).exists()):
            return candidate, moved_because
        old = recorded_config(candidate)
        changes = config_changes(old, new) if old is not None else _summary_changes(candidate, cfg)
        if not changes:  # the same job (or a record too old or damaged to tell: as before, the same)
            return candidate, moved_because
        if k == 1:
            moved_because = changes
    raise DirectoryTaken(f"{job_dir}: 999 directories beside it hold other runs; launch into a new hydra.sweep.dir")


def move_job(cfg: DictConfig, job_dir: Path, home: Path) -> None:
    """Make ``home`` this sweep job's directory instead of ``job_dir`` (Hydra's): the run's
    outputs and run.log go there, with the ``.hydra/`` Hydra wrote for this launch, and
    ``job_dir`` gets its own run's ``.hydra/`` back."""
    home.mkdir(parents=True, exist_ok=True)
    _copy_hydra_files(job_dir / ".hydra", home / ".hydra")
    restore_hydra_files(job_dir)
    from omegaconf import open_dict

    with open_dict(cfg):
        cfg.paths.output_dir = str(home)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == job_dir.resolve():
            moved = logging.FileHandler(home / Path(handler.baseFilename).name, mode="a")
            moved.setFormatter(handler.formatter)
            moved.setLevel(handler.level)
            root.removeHandler(handler)
            handler.close()
            root.addHandler(moved)


def describe(changes: list[tuple[str, Any, Any]], first: set[str] = frozenset(), limit: int = 3) -> tuple[str, str]:
    """``("optimizer.lr=0.01", "0.2")``: the first ``limit`` changes' old values and new ones.

    Keys in ``first`` (this launch's overrides) come first: ``depth=14`` also changes
    ``model.depth`` and ``run_name``, which say less.
    """
    ordered = sorted(changes, key=lambda c: c[0] not in first)
    shown = ordered[:limit]
    more = f" (+{len(changes) - limit} more)" if len(changes) > limit else ""
    return (", ".join(f"{k}={old}" for k, old, _ in shown) + more,
            ", ".join(str(new) for _, _, new in shown) + more)
