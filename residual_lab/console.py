"""What a run says on the console: where its files go, how to resume it, and no library chatter.

The commands (``python -m residual_lab.run``, ``residual-lab run``) print their own lines with
a ``residual_lab:`` prefix; this module holds the pieces they share.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shlex
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

#: The command a resume line starts with; ``residual_lab.cli`` sets it to ``residual-lab run``
#: when the run came through the console script.
PROGRAM: str | None = None

#: The sweep directory of the multirun this process launched (set by SweepDirectory), so a
#: Ctrl-C that reaches the launcher can still say how to resume the sweep.
sweep_dir: Path | None = None

#: ``(jobs, failed, failed for bad input)`` of the multirun this process launched, set when it
#: ends (SweepDirectory): ``residual_lab.run`` exits non-zero on it.
sweep_failures: tuple[int, int, int] | None = None

#: Lightning log lines that tell a researcher nothing, matched whole. "GPU available: True
#: (cuda), used: False" on a GPU machine is news and stays.
_NOISE_LOGS = re.compile(
    r"GPU available: False, used: False"
    r"|TPU available: False, using: 0 TPU cores"
    r"|💡 Tip: For seamless cloud logging and experiment tracking, try installing \[litlogger\].*"
    r"|💡 Tip: For seamless cloud uploads and versioning, try installing \[litmodels\].*"
)


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _NOISE_LOGS.fullmatch(record.getMessage())


def quiet_library_noise(resuming: bool = False) -> None:
    """Drop the library output that says nothing about the run, each by its exact message.

    Lightning's device lines on a machine with no GPU or TPU, its LitLogger and LitModels tips,
    and torch 2.14's FutureWarning about ``LeafSpec``, which Lightning's own pytree helper
    triggers on every step's output; when resuming, Lightning's warning that the checkpoint
    directory is not empty (it holds the checkpoint being resumed). Any other warning or log
    line still shows.
    """
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in logger.filters):
            logger.addFilter(_DropNoise())
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                            category=FutureWarning)
    if resuming:
        warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty\.",
                                category=UserWarning)


def program(module: str = "residual_lab.run") -> str:
    """The command that started this run, ready to paste: ``PROGRAM``, else
    ``python -m <module>`` when ``python`` on the PATH is this interpreter, else with
    the interpreter's full path (e.g. ``.venv/bin/python`` of a venv that is not activated)."""
    if PROGRAM:
        return PROGRAM
    python = "python" if shutil.which("python") == sys.executable else shlex.quote(sys.executable)
    return f"{python} -m {module}"


def command(*args: str) -> str:
    """``program()`` followed by ``args``, each quoted for a POSIX shell."""
    return " ".join([program(), *(shlex.quote(a) for a in args)])


def hydra_override(key: str, value: str) -> str:
    """``key=value`` as Hydra's override grammar reads it: the value in double quotes unless it is
    plain ASCII path characters (a directory named ``résumé run`` is not)."""
    if _PLAIN_VALUE.fullmatch(value):
        return f"{key}={value}"
    return f'{key}="' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


#: Characters Hydra takes unquoted in a value (its grammar's ID and UNQUOTED_CHAR, less the
#: ones that mean something there: ``$`` an interpolation, ``*?|`` globs and choices).
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9_/.\-+%@]+")


def say(message: str) -> None:
    print(f"residual_lab: {message}", flush=True)


def say_how_to_resume(output_dir: Path, signal_name: str, overrides: list[str], resumable: bool) -> None:
    """The command that continues a run stopped by a signal in its own directory, as the last
    lines the run prints (``overrides``: those a resume was given, e.g. a longer run)."""
    if not resumable:
        say(f"stopped by {signal_name} before its first checkpoint: nothing to resume, start it again")
        return
    say(f"stopped by {signal_name}; resume into {output_dir} with:")
    print(f"  {command(hydra_override('resume', str(output_dir)), *overrides)}", flush=True)


def say_how_to_resume_sweep(directory: Path, why: str) -> None:
    """The sweep's own command pinned to its directory: launched again it skips the finished
    jobs and continues the interrupted ones from their checkpoints (residual_lab.sweep)."""
    args = [a for a in sys.argv[1:] if not a.startswith("hydra.sweep.dir=")]
    say(f"sweep stopped by {why}; its finished jobs are kept. Resume it with:")
    print(f"  {command(*args, hydra_override('hydra.sweep.dir', str(directory)))}", flush=True)


def where_files_go(output_dir: str | Path, data_root: Any) -> None:
    """The two lines at the start of a run: its directory and the data it reads."""
    say(f"run directory {Path(output_dir).resolve()}")
    say(f"data {Path(str(data_root)).expanduser().resolve()}" if data_root
        else "data generated in memory (data=synthetic), nothing read from disk")


def jobs_in(task_overrides: list[str]) -> int:
    """How many jobs the basic sweeper makes of a multirun's overrides (``depth=20,32
    seed=0,1``: 4), the product of each sweep's length."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(task_overrides)
    return math.prod(len(list(o.sweep_iterator())) if o.is_sweep_override() else 1 for o in parsed)


#: Where a sweep keeps the failed summaries of jobs whose own directory belongs to another run
#: (held by its lock, or holding its records): nothing is written there, but the job is counted.
FAILED_LEDGER = ".failed_jobs"


def record_failed_job(sweep_dir: Path, job: str, summary: dict[str, Any]) -> None:
    """Put a failed job's summary in the sweep's ledger (:data:`FAILED_LEDGER`)."""
    from residual_lab.io import atomic_write

    try:
        atomic_write(sweep_dir / FAILED_LEDGER / f"{job}.json", lambda f: json.dump(summary, f, indent=2))
    except OSError as err:  # the count is a courtesy; the job's own sentence was already printed
        say(f"could not record the failed job {job} in {sweep_dir / FAILED_LEDGER}: {err}")


def failed_jobs(sweep_dir: Path, since: float) -> tuple[int, int]:
    """``(failed, of them refused for bad input)``: the jobs under ``sweep_dir`` whose summary
    (or entry in the sweep's :data:`FAILED_LEDGER`), written at or after ``since`` (this
    launch's start, a Unix time), says ``failed``."""
    failed = bad_input = 0
    for path in [*sweep_dir.glob("*/summary.json"), *sweep_dir.glob(f"{FAILED_LEDGER}/*.json")]:
        try:
            if path.stat().st_mtime < since - 1.0:  # the file system's clock may lag a little
                continue
            summary = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if summary.get("status") == "failed":
            failed += 1
            bad_input += bool(summary.get("bad_input"))
    return failed, bad_input


class SweepDirectory(Callback):
    """Hydra callback (conf/hydra/default.yaml): a multirun names its sweep directory at its
    start and at its end, where its report and TensorBoard point; its launcher's settings are
    checked before the first job."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        global sweep_dir, sweep_failures
        from residual_lab.errors import UserFacingError, hold
        from residual_lab.schema import ConfigError, check_ranges

        try:  # joblib's n_jobs=0 ended the sweep in its traceback; Hydra would only warn of a raise here
            check_ranges(config.hydra.launcher, "hydra.launcher")
        except ConfigError as err:
            hold(UserFacingError(str(err)))
        if str(config.hydra.launcher.get("_target_", "")).endswith(".SlurmLauncher") and not shutil.which("srun"):
            hold(UserFacingError("hydra/launcher=slurm submits each job with SLURM, but this machine has no srun on "
                                 "its PATH; launch the sweep where SLURM runs (a login node), or here with "
                                 "hydra/launcher=joblib or hydra/launcher=submitit_local"))
        sweep_dir, sweep_failures = self._dir(config), None
        self._started = time.time()
        say(f"sweep directory {sweep_dir}")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        global sweep_failures
        sweep = self._dir(config)
        say(f"sweep finished: {sweep}")
        if config.hydra.job.name != "run":  # training runs (not analyze or bench) have a report
            return
        say(f"report: python -m residual_lab.report {shlex.quote(str(sweep))}")
        failed, bad_input = failed_jobs(sweep, since=getattr(self, "_started", 0.0))
        if failed:
            jobs = max(failed, jobs_in(list(config.hydra.overrides.task)))
            sweep_failures = (jobs, failed, bad_input)
            say(f"{failed} of {jobs} jobs failed" + (f", {bad_input} of them on bad input" if bad_input else "")
                + "; each one's summary.json says why"
                + (f" (in {sweep / FAILED_LEDGER} for a job whose directory was another run's)"
                   if (sweep / FAILED_LEDGER).is_dir() else ""))

    @staticmethod
    def _dir(config: DictConfig) -> Path:
        return Path(str(config.hydra.sweep.dir)).resolve()


