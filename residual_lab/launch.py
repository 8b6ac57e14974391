"""A run's launch and end: which directory it claims, how it ended (:class:`Outcome`), and what
it says and leaves behind for each ending (residual_lab.run's job, docs/reliability.md)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from residual_lab import console
from residual_lab.errors import UserFacingError, hold, tracebacks_wanted, user_message
from residual_lab.resume import load_run_config
from residual_lab.run_dir import (DirectoryTaken, RunLock, claim_run_dir, forget_run_dir, holds_a_run, is_rank_zero,
                                  made_by_this_launch)
from residual_lab.summary import config_fields, write_summary
from residual_lab.sweep import claim_sweep_job, resume_checkpoint
from residual_lab.validation import validate_config

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How a run ended: ``status`` (summary.json's), why, and what stopped it.

    Attributes:
        status: ``completed``, ``diverged``, ``interrupted`` or ``failed``.
        reason: one line for the summary (None when completed).
        signal: the signal that interrupted the run (SIGINT for Ctrl-C).
        diverged_at: the step whose loss first became NaN/inf.
        error: what made a failed run fail (a Ctrl-C outside the training loop, for an
            interrupted one).
    """

    status: str
    reason: str | None = None
    signal: int | None = None
    diverged_at: int | None = None
    error: BaseException | None = None

    @classmethod
    def of(cls, err: BaseException) -> "Outcome":
        """The outcome of an exception that ended the run outside Lightning's loop."""
        if isinstance(err, KeyboardInterrupt) or (isinstance(err, SystemExit)
                                                  and isinstance(err.__context__, KeyboardInterrupt)):
            # Ctrl-C while building or testing, or a second one in the loop, which Lightning
            # turns into sys.exit(1) after its own clean-up.
            return cls("interrupted", "SIGINT", signal=int(signal.SIGINT), error=err)
        return cls("failed", f"{type(err).__name__}: {err}", error=err)

    @property
    def bad_input(self) -> bool:
        return isinstance(self.error, UserFacingError)


@dataclasses.dataclass
class Launch:
    """What this process was asked to do, and what it holds."""

    multirun: bool
    resume: str | None
    owner: bool  # Lightning's extra device processes run this again in the same directory
    stops_on_signal: bool  # a parallel launcher's worker returns; the launcher, signalled too, decides
    made: Path | None  # the run directory, if Hydra made it just now: a refused run takes it away again
    claimed: bool = False  # this process owns cfg.paths.output_dir: a failure summary may go there

    @classmethod
    def of(cls, cfg: DictConfig) -> "Launch":
        hc = HydraConfig.get()
        multirun = hc.mode == RunMode.MULTIRUN
        return cls(multirun=multirun, resume=cfg.get("resume"), owner=is_rank_zero(),
                   stops_on_signal=not multirun or hc.launcher._target_.endswith(".BasicLauncher"),
                   made=Path(hc.runtime.output_dir) if made_by_this_launch(Path(hc.runtime.output_dir)) else None)

    def claim(self, cfg: DictConfig, held: contextlib.ExitStack) -> tuple[DictConfig, str, dict | None]:
        """The run's config and directory, locked: ``(cfg, action, previous summary)``; the
        action is ``run``, ``resume`` or, for a sweep job done before, ``skip``."""
        action, previous = "run", None
        if self.resume:
            cfg, action = load_run_config(self.resume, _resume_overrides()), "resume"
            if self.owner:
                held.enter_context(RunLock(cfg.paths.output_dir))
        elif self.multirun:  # the same sweep launched again (same hydra.sweep.dir) picks up where it stopped
            action, previous = claim_sweep_job(cfg, held, self.owner)
            action = "resume" if action == "resume" else "skip" if action == "skip" else "run"
        elif self.owner:
            try:
                claim_run_dir(Path(cfg.paths.output_dir), held)
            except DirectoryTaken:  # its .hydra/ restored: a bad value is what to fix first, so say that
                validate_config(cfg)
                raise
        self.claimed = True
        return cfg, action, previous

    def end(self, cfg: DictConfig, outcome: Outcome, summary: dict[str, Any] | None) -> float | None:
        """Say how the run ended and return its test error (Hydra's job return), or exit."""
        if outcome.status == "interrupted" and self.stops_on_signal:
            output_dir = Path(cfg.paths.output_dir).resolve()
            name = signal.Signals(outcome.signal).name
            if self.multirun:
                console.say_how_to_resume_sweep(Path(HydraConfig.get().sweep.dir).resolve(), name)
            else:
                console.say_how_to_resume(output_dir, name, _resume_overrides() if self.resume else [],
                                          resumable=resume_checkpoint(output_dir) is not None)
            sys.exit(128 + outcome.signal)
        if outcome.status == "interrupted" and outcome.error is not None:
            raise outcome.error  # Ctrl-C in a parallel launcher's worker: the launcher decides
        if outcome.status == "failed":
            self._record_failure(cfg, outcome)
            if not self.multirun:  # one sentence and exit 2, or a bug's traceback (entry_point)
                hold(outcome.error)  # raised by entry_point once Hydra has returned
                return None
            if outcome.bad_input and not tracebacks_wanted():
                print(f"\nresidual_lab: {outcome.error}\n", file=sys.stderr, flush=True)
            else:  # one failing job must not stop the sweep: record it and let the launcher go on
                log.error("%s failed:\n%s", cfg.get("run_name"),
                          "".join(traceback.format_exception(outcome.error)))
            return None
        return summary["test_error"] if summary else None

    def _record_failure(self, cfg: DictConfig, outcome: Outcome) -> None:
        """A failed summary, so a sweep's report lists the run; but never over another run's
        summary, and for a single run refused before it began, no run directory at all."""
        output_dir = Path(cfg.paths.output_dir)
        if outcome.bad_input and not self.multirun and self.made is not None and not holds_a_run(self.made):
            forget_run_dir(self.made)
            return
        fields = {**config_fields(cfg), "status": "failed", "reason": outcome.reason, "steps": None,
                  "output_dir": str(output_dir), **({"bad_input": True} if outcome.bad_input else {})}
        not_ours = not self.claimed and (isinstance(outcome.error, DirectoryTaken) or holds_a_run(output_dir))
        if self.resume or not_ours:
            if self.multirun and not_ours:  # another run's directory: the sweep's ledger counts the job
                console.record_failed_job(Path(HydraConfig.get().sweep.dir), output_dir.name, fields)
            return
        try:
            write_summary(output_dir, fields)
        except Exception as err:  # the failure report must never mask the failure itself
            log.warning("could not write the failure summary: %s", user_message(err) or repr(err))


def _resume_overrides() -> list[str]:
    """This command's overrides other than ``resume=``: what resume applies on top of the run's
    own config (``trainer.max_steps=2000`` to extend it)."""
    return [o for o in HydraConfig.get().overrides.task if not o.startswith("resume=")]
