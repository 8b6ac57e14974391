"""The Hydra app: compose -> build -> fit/test -> summary.json.

    python -m residual_lab.run depth=56 shortcut=identity
    python -m residual_lab.run -m depth=20,32,44,56 shortcut=none,identity
    python -m residual_lab.run resume=<run dir>          # continue an interrupted run

``residual-lab run ...`` (the console script) is the same command.

Every run ends with a summary.json whose ``status`` says how it ended (:class:`Outcome`):
``completed``, ``diverged`` (NaN/inf loss; exits 0 so a sweep goes on), ``interrupted``
(SIGINT/SIGTERM; resumable) or ``failed`` (an error; in a sweep the other jobs go on). An
interrupted run exits 128 + the signal's number (130 for Ctrl-C, so ``&&`` chains stop) and
prints the command that resumes it into the same run directory. Bad input exits 2 with one
sentence and leaves no run directory behind; a sweep exits non-zero when every job failed or
one was refused for bad input (:func:`main`).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from residual_lab import console
from residual_lab.callbacks.run_guard import Diverged, Interrupted, RunGuard
from residual_lab.checkpoint_io import AtomicCheckpointIO
from residual_lab.conf_dir import hydra_config_dir
from residual_lab.errors import USAGE_EXIT_CODE, UserFacingError, entry_point
from residual_lab.io import atomic_write
from residual_lab.launch import Launch, Outcome
from residual_lab.loggers import run_hparams
from residual_lab.resume import load_run_config
from residual_lab.summary import final_weights_errors, run_summary, summary_line, write_summary
from residual_lab.sweep import resume_checkpoint
from residual_lab.validation import check_checkpoint_matches, instantiation_error, validate_config

CONFIG_DIR = hydra_config_dir()  #: conf/, ready to compose (the Trainer's schema stored)

__all__ = ["CONFIG_DIR", "Outcome", "build", "load_run_config", "main", "train"]
log = logging.getLogger(__name__)


def _instantiate(node: DictConfig, **kwargs: Any) -> Any:
    """``instantiate``, with a ValueError from the target (bad depth, unknown shortcut...) turned
    into a UserFacingError: its message already names the value and the valid choices."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        if (user_error := instantiation_error(node, err.__cause__)) is not None:
            raise user_error from None
        raise


def build(cfg: DictConfig, extra_callbacks: list[L.Callback] = ()) -> tuple[L.LightningModule, L.LightningDataModule, L.Trainer]:
    """Instantiate the module, data and trainer a config describes (no training). Checkpoints
    are written whole or not at all (:class:`~residual_lab.checkpoint_io.AtomicCheckpointIO`)."""
    validate_config(cfg)
    net = _instantiate(cfg.model)
    module = _instantiate(cfg.task, net=net, optimizer=_instantiate(cfg.optimizer),
                          scheduler=_instantiate(cfg.scheduler))
    datamodule = _instantiate(cfg.data)
    callbacks = [_instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    loggers = [_instantiate(c) for c in (cfg.get("logger") or {}).values() if c]
    plugins = {} if cfg.trainer.get("plugins") else {"plugins": [AtomicCheckpointIO()]}
    trainer = _instantiate(cfg.trainer, callbacks=[*callbacks, *extra_callbacks], logger=loggers or False, **plugins)
    return module, datamodule, trainer


def train(cfg: DictConfig, resume: bool = False) -> dict[str, Any]:
    """Train, validate and test one network; return (and write) its summary.

    Args:
        cfg: the composed config.
        resume: continue from the newest checkpoint in ``cfg.paths.output_dir``.
    """
    return train_one(cfg, resume)[1]


def train_one(cfg: DictConfig, resume: bool = False) -> tuple[Outcome, dict[str, Any]]:
    """:func:`train`, with the :class:`Outcome` beside the summary."""
    validate_config(cfg)  # every value typed and in range before anything uses one
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    # .hydra/config.yaml keeps the interpolations (resume rebuilds from it); this is what ran.
    atomic_write(output_dir / "config_resolved.yaml", lambda f: f.write(OmegaConf.to_yaml(cfg, resolve=True)))
    if cfg.get("torch_threads"):
        # Two 1-thread jobs beat one 2-thread job on a 2-core CPU (experiments/budget_cpu).
        torch.set_num_threads(int(cfg.torch_threads))
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    start = time.perf_counter()
    guard = RunGuard(str(output_dir / "checkpoints"), check_every_n_steps=cfg.trainer.log_every_n_steps)
    module, datamodule, trainer = build(cfg, extra_callbacks=[guard])
    params = sum(p.numel() for p in module.net.parameters())
    ckpt_path = _checkpoint_to_resume(cfg, module) if resume else None
    log.info("%s: %d parameters, output in %s", cfg.run_name, params, output_dir)

    outcome = fit(trainer, module, datamodule, ckpt_path)
    best, val, full, test = _tested_checkpoint(cfg, trainer), _val_metrics(trainer), {}, {}
    if outcome.status == "completed":
        trainer.save_checkpoint(output_dir / "checkpoints" / "last.ckpt", weights_only=False)  # resumable
        (output_dir / "checkpoints" / "interrupted.ckpt").unlink(missing_ok=True)
        full = final_weights_errors(module, datamodule, tested_final=best is None)
        test = trainer.test(module, datamodule=datamodule, ckpt_path=best, verbose=False, weights_only=True)[0]

    summary = run_summary(cfg, trainer, params=params, status=outcome.status, reason=outcome.reason, val=val,
                          test=test, best=best, resumed_from=ckpt_path, elapsed_s=time.perf_counter() - start,
                          diverged_at=outcome.diverged_at, full=full)
    if outcome.status == "completed":
        for lg in trainer.loggers:
            lg.log_hyperparams(run_hparams(cfg, summary), hparam_metrics(summary))
    write_summary(output_dir, summary)
    log.info(summary_line(summary))
    return outcome, summary


def fit(trainer: L.Trainer, module: L.LightningModule, datamodule: L.LightningDataModule,
        ckpt_path: str | None) -> Outcome:
    """``trainer.fit``; a diverged loss or a signal ends it with that :class:`Outcome` (RunGuard)."""
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except Diverged as err:
        return Outcome("diverged", f"{err} (stopped at step {trainer.global_step})", diverged_at=err.step)
    except Interrupted as err:
        return Outcome("interrupted", str(err), signal=err.signum)
    return Outcome("completed")


def _checkpoint_to_resume(cfg: DictConfig, module: L.LightningModule) -> str:
    output_dir = Path(cfg.paths.output_dir)
    found = resume_checkpoint(output_dir)
    if found is None:
        raise UserFacingError(f"nothing to resume: no checkpoint in {output_dir / 'checkpoints'}")
    check_checkpoint_matches(module, found)
    log.info("resuming %s from %s", cfg.run_name, found)
    return str(found)


def _tested_checkpoint(cfg: DictConfig, trainer: L.Trainer) -> str | None:
    """protocol=heldout: the best-validation checkpoint (never chosen on test); protocol=paper
    (a schedule fixed in advance): None, the final weights."""
    if (cfg.get("protocol") or {}).get("test_weights") == "final":
        return None
    ckpt = trainer.checkpoint_callback
    return ckpt.best_model_path if ckpt is not None and ckpt.best_model_path else None


def _val_metrics(trainer: L.Trainer) -> dict[str, float]:
    return {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}


def hparam_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """The HParams tab's metrics: the final errors a run has (protocol=paper has no val error;
    a missing value is left out, never written as a sentinel a plot would show as data)."""
    keys = {"hp/train_error": "train_error", "hp/train_error_full": "train_error_full",
            "hp/val_error": "val_error", "hp/test_error": "test_error"}
    return {tag: summary[key] for tag, key in keys.items() if summary.get(key) is not None}


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def _job(cfg: DictConfig) -> float | None:
    """One run, or one job of a sweep: claim its directory, train, and say how it ended."""
    launch = Launch.of(cfg)
    outcome, summary = None, None
    try:
        with contextlib.ExitStack() as held:
            cfg, action, summary = launch.claim(cfg, held)
            if action != "skip":
                console.quiet_library_noise(resuming=action == "resume")
                if not launch.multirun:
                    console.where_files_go(cfg.paths.output_dir, OmegaConf.select(cfg, "data.root", default=None))
                outcome, summary = train_one(cfg, resume=action == "resume")
    except (Exception, KeyboardInterrupt, SystemExit) as err:
        if isinstance(err, SystemExit) and not isinstance(err.__context__, KeyboardInterrupt):
            raise
        outcome = Outcome.of(err)
    if outcome is None:  # a sweep job done before: its result stands
        return summary.get("test_error") if summary else None
    return launch.end(cfg, outcome, summary)


@entry_point
def main() -> None:
    """``python -m residual_lab.run``: one error path for bad input and unwritable files
    (:func:`residual_lab.errors.entry_point`); Ctrl-C outside a job (Hydra composing the
    config, a parallel launcher's parent waiting on its workers) ends with exit code 130 and,
    for a sweep, the command that resumes it; a sweep that failed exits non-zero."""
    console.sweep_failures = None
    try:
        _job()
    except KeyboardInterrupt:
        if console.sweep_dir is not None:
            console.say_how_to_resume_sweep(console.sweep_dir, "SIGINT")
        else:
            console.say("stopped by SIGINT before the run started")
        sys.exit(128 + int(signal.SIGINT))
    if console.sweep_failures is not None:
        jobs, failed, bad_input = console.sweep_failures
        if bad_input:
            sys.exit(USAGE_EXIT_CODE)
        if failed == jobs:
            sys.exit(1)


#: The name ``__main__`` and older scripts call.
cli = main

if __name__ == "__main__":
    main()
