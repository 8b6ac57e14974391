"""What a sweep job does when its sweep is launched again, and which GPU it runs on.

Running the same multirun command again with the same ``hydra.sweep.dir`` picks a sweep up
where it stopped (a killed machine, a session that ended): each job looks at its own
directory first (:func:`plan_job`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: A job that ended with one of these is a result: launching the sweep again keeps it.
FINISHED = ("completed", "diverged")


def resume_checkpoint(output_dir: Path) -> Path | None:
    """The newest of ``interrupted.ckpt`` and ``last.ckpt`` in a run's checkpoint folder."""
    candidates = [p for p in (output_dir / "checkpoints" / n for n in ("interrupted.ckpt", "last.ckpt"))
                  if p.exists()]
    return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None


def plan_job(output_dir: Path) -> tuple[str, dict[str, Any] | None]:
    """``(action, previous summary)`` for a sweep job whose directory may hold an earlier try.

    Actions: ``run`` (nothing there yet), ``skip`` (it completed or diverged: a result),
    ``rebuilt`` (it finished, but its summary.json cannot be read: the second value is the
    summary rebuilt from its checkpoint and events, residual_lab.summary_repair), ``resume``
    (interrupted, or killed with no summary, or a damaged summary of an unfinished run, and a
    checkpoint to continue from), ``rerun`` (it failed, or was killed before its first
    checkpoint: start over). A damaged summary that cannot be rebuilt reads as
    ``{"status": "damaged", "reason": ...}``. Whether the directory holds *this* job (the same
    config) is :func:`residual_lab.run_dir.job_home`'s question, asked first.
    """
    from residual_lab.summary_repair import read_summary, rebuild_summary

    previous, damaged = read_summary(output_dir)
    if damaged is not None:
        if (rebuilt := rebuild_summary(output_dir)) is not None:
            return "rebuilt", rebuilt
        previous = {"status": "damaged", "reason": f"summary.json {damaged}"}
    status = previous.get("status") if previous else None
    if status in FINISHED:
        return "skip", previous
    if status in (None, "interrupted", "damaged") and resume_checkpoint(output_dir) is not None:
        return "resume", previous
    # Hydra makes the job's directory (.hydra/, an empty run.log) before the job starts: only
    # something more says an earlier try ran there.
    tried = output_dir.is_dir() and any(p.name not in (".hydra", "run.log", "run.lock") for p in output_dir.iterdir())
    if previous is None and not tried:
        return "run", None
    return "rerun", previous


def claim_sweep_job(cfg: Any, held: contextlib.ExitStack, owner: bool) -> tuple[str, dict[str, Any] | None]:
    """A sweep job's directory, found, locked and planned (:func:`plan_job`).

    A job launched again counts as done before only where the run there had the same config
    (:func:`residual_lab.run_dir.job_home`); a job whose directory holds a run of other values
    (``optimizer.lr=0.5`` after ``0.05``) runs beside it in ``<job dir>-2``, and the old result
    stays as it was. Moving it, rather than refusing it, is what relaunching a sweep asks for:
    every job of the new command done once, nothing done before lost or done twice.
    """
    from hydra.core.hydra_config import HydraConfig

    from residual_lab.run_dir import (DirectoryTaken, RunLock, describe, job_home, keep_hydra_files, move_job,
                                      restore_hydra_files)
    from residual_lab.summary import write_summary
    from residual_lab.summary_repair import DAMAGED_SUFFIX

    job_dir = Path(cfg.paths.output_dir)
    home, changes = job_home(job_dir, cfg) if owner else (job_dir, [])

    def say_job(what: str) -> None:
        print(f"residual_lab: job {job_dir.name}: {what}", flush=True)
        log.info("job %s: %s", job_dir.name, what)

    if home != job_dir:
        move_job(cfg, job_dir, home)
    try:
        if owner:
            held.enter_context(RunLock(home))
    except DirectoryTaken:
        restore_hydra_files(job_dir)
        raise
    action, previous = plan_job(home)
    there = f" in {home.name}" if home != job_dir else ""
    if changes and action in ("run", "rerun"):
        overridden = {o.split("=", 1)[0].lstrip("+~") for o in HydraConfig.get().overrides.task}
        old, new = describe(changes, first=overridden)
        say_job(f"its directory holds a run with {old} (this launch: {new}); running this one in {home.name}")
    elif action == "rebuilt":
        (home / "summary.json").replace(home / f"summary.json{DAMAGED_SUFFIX}")
        write_summary(home, previous)
        say_job(f"summary.json{there} was damaged; rebuilt from checkpoints/last.ckpt and the TensorBoard events "
                f"(kept as summary.json{DAMAGED_SUFFIX}): skipped")
        action = "skip"
    elif action != "run":
        say_job({"skip": f"{previous and previous.get('status')} before{there}: skipped",
                 "resume": f"resuming from {resume_checkpoint(home)}",
                 "rerun": f"{(previous or {}).get('status', 'killed before its first checkpoint')} before{there}:"
                          " running it again"}[action])
    if action in ("skip", "resume"):
        restore_hydra_files(home)  # Hydra rewrote them for this launch; the run's own are the record
    elif owner:
        keep_hydra_files(home)
    return action, previous


def gpu_for_job(job_num: int, gpus: int | None = None) -> list[int]:
    """``trainer.devices`` for sweep job ``job_num``: one GPU each, round robin.

    With the joblib launcher's ``n_jobs`` equal to the number of GPUs
    (``hydra/launcher=per_gpu``), jobs 0..n-1 run at once on GPUs 0..n-1 and each later job
    takes the GPU of the job ``n`` places before it. Without a GPU it returns ``[0]``
    (Lightning then refuses ``accelerator=gpu`` with its own message).
    """
    if gpus is None:
        gpus = gpu_count()
    return [int(job_num) % max(1, gpus)]


def threads_per_job(mode: Any, n_jobs: int) -> int | None:
    """``torch_threads`` for a CPU sweep: the cores shared out among ``n_jobs`` parallel jobs.

    On a 2-core CPU two 1-thread jobs side by side train 1.38x as many steps per second as
    one 2-thread job at a time (experiments/budget_cpu/README.md), so a multirun splits the
    cores. A single run (``mode`` RUN) gets None: torch's default, every core.
    """
    if str(mode).rsplit(".", 1)[-1] != "MULTIRUN":
        return None
    return max(1, (os.cpu_count() or 1) // max(1, int(n_jobs)))


def gpu_count() -> int:
    """GPUs this process sees (``CUDA_VISIBLE_DEVICES`` respected), at least 1 for n_jobs."""
    import torch

    return max(1, torch.cuda.device_count())
