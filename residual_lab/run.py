"""The Hydra app: compose -> instantiate -> fit -> test -> summary.json.

    python -m residual_lab.run depth=56 shortcut=identity
    python -m residual_lab.run -m depth=20,32,44,56 shortcut=none,identity
    python -m residual_lab.run resume=<run dir>          # continue an interrupted run

``residual-lab run ...`` (the console script) is the same command.

Every run ends with a summary.json whose ``status`` says how it ended: ``completed``,
``diverged`` (NaN/inf loss; exits 0 so a sweep goes on), ``interrupted`` (SIGINT/SIGTERM;
resumable) or ``failed`` (an error; in a sweep the other jobs go on). An interrupted run exits
128 + the signal's number (130 for Ctrl-C, so ``&&`` chains stop) and prints the command that
resumes it into the same run directory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from residual_lab.callbacks.run_guard import Diverged, Interrupted, RunGuard
from residual_lab import console
from residual_lab.console import command, quiet_library_noise, say, say_how_to_resume_sweep, where_files_go
from residual_lab.errors import UserFacingError, usage_errors
from residual_lab.io import atomic_write
from residual_lab.loggers import run_hparams
from residual_lab.summary import SUMMARY_FILE, config_fields, run_summary, summary_line, write_summary
from residual_lab.run_dir import (HYDRA_COPY, RESUME_MAY_CHANGE, DirectoryTaken, RunLock, describe, holds_a_run,
                                  is_free_to_change, is_rank_zero, job_home, keep_hydra_files, move_job,
                                  own_config_file, restore_hydra_files)
from residual_lab.summary_repair import DAMAGED_SUFFIX
from residual_lab.sweep import plan_job, resume_checkpoint
from residual_lab.validation import check_checkpoint_matches, instantiation_error, validate_config

log = logging.getLogger(__name__)


def _config_dir() -> str:
    """conf/: inside the package once installed (the wheel ships it as residual_lab/conf,
    pyproject.toml), at the top of a clone otherwise, where it is edited."""
    package = Path(__file__).resolve().parent
    installed = package / "conf"
    return str(installed if (installed / "config.yaml").is_file() else package.parent / "conf")


#: The one place that knows where conf/ is (run, analyze, bench, report and the tests use it).
CONFIG_DIR = _config_dir()


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
    """Instantiate the module, data and trainer a config describes (no training)."""
    validate_config(cfg)
    net = _instantiate(cfg.model)
    module = _instantiate(cfg.task, net=net, optimizer=_instantiate(cfg.optimizer),
                          scheduler=_instantiate(cfg.scheduler))
    datamodule = _instantiate(cfg.data)
    callbacks = [_instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    loggers = [_instantiate(c) for c in (cfg.get("logger") or {}).values() if c]
    trainer = _instantiate(cfg.trainer, callbacks=[*callbacks, *extra_callbacks], logger=loggers or False)
    return module, datamodule, trainer


def _resume_checkpoint(output_dir: Path) -> str | None:
    found = resume_checkpoint(output_dir)
    return str(found) if found else None


def train(cfg: DictConfig, resume: bool = False) -> dict[str, Any]:
    """Train, validate and test one network; return (and write) its summary.

    Args:
        cfg: the composed config.
        resume: continue from the newest checkpoint in ``cfg.paths.output_dir``.
    """
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
    ckpt_path = _resume_checkpoint(output_dir) if resume else None
    if resume and ckpt_path is None:
        raise UserFacingError(f"nothing to resume: no checkpoint in {output_dir / 'checkpoints'}")
    if ckpt_path:
        check_checkpoint_matches(module, ckpt_path)
        log.info("resuming %s from %s", cfg.run_name, ckpt_path)
    log.info("%s: %d parameters, output in %s", cfg.run_name, params, output_dir)

    status, reason, test, full, diverged_at = "completed", None, {}, {}, None
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except Diverged as err:
        status, reason, diverged_at = "diverged", f"{err} (stopped at step {trainer.global_step})", err.step
    except Interrupted as err:
        status, reason = "interrupted", str(err)
    ckpt = trainer.checkpoint_callback
    best = ckpt.best_model_path if ckpt is not None and ckpt.best_model_path else None
    if (cfg.get("protocol") or {}).get("test_weights") == "final":
        best = None  # protocol=paper: the schedule is fixed in advance; test what it ends with
    val = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    if status == "completed":
        trainer.save_checkpoint(output_dir / "checkpoints" / "last.ckpt", weights_only=False)  # resumable
        (output_dir / "checkpoints" / "interrupted.ckpt").unlink(missing_ok=True)
        # protocol=heldout: the best-validation checkpoint (never chosen on test);
        # protocol=paper: the final weights.
        full = final_weights_errors(module, datamodule, tested_final=best is None)
        test = trainer.test(module, datamodule=datamodule, ckpt_path=best, verbose=False, weights_only=True)[0]

    summary = run_summary(cfg, trainer, params=params, status=status, reason=reason, val=val, test=test, best=best,
                          resumed_from=ckpt_path, elapsed_s=time.perf_counter() - start, diverged_at=diverged_at,
                          full=full)
    if status == "completed":
        for lg in trainer.loggers:
            lg.log_hyperparams(run_hparams(cfg, summary), hparam_metrics(summary))
    write_summary(output_dir, summary)
    log.info(summary_line(summary))
    return summary


def final_weights_errors(module: L.LightningModule, datamodule: L.LightningDataModule,
                         tested_final: bool) -> dict[str, float]:
    """The final weights' error and loss on the whole training split, in eval mode without
    augmentation (``train_error_full``: the report's training error, docs/reproducing.md), and
    on the test split when ``test`` will score another checkpoint (protocol=heldout tests the
    best-validation one; ``test_error_final`` is then the final weights' own)."""
    device = module.device
    train = module.evaluate(datamodule.eval_batches("train", device))
    out = {"train_error_full": train["error"], "train_loss_full": train["loss"]}
    if not tested_final:
        test = module.evaluate(datamodule.eval_batches("test", device))
        out.update(test_error_final=test["error"], test_loss_final=test["loss"])
    return out


def hparam_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """The HParams tab's metrics: the final errors a run has (protocol=paper has no val error;
    a missing value is left out, never written as a sentinel a plot would show as data)."""
    keys = {"hp/train_error": "train_error", "hp/train_error_full": "train_error_full",
            "hp/val_error": "val_error", "hp/test_error": "test_error"}
    return {tag: summary[key] for tag, key in keys.items() if summary.get(key) is not None}


def _write_failure(cfg: DictConfig, err: BaseException) -> None:
    """summary.json with status ``failed`` and the error, so a sweep's report lists the run."""
    try:
        output_dir = Path(cfg.paths.output_dir)
        fields = {**config_fields(cfg), "status": "failed", "reason": f"{type(err).__name__}: {err}",
                  "steps": None, "output_dir": str(output_dir)}
        write_summary(output_dir, fields)
    except Exception:  # the failure report must never mask the failure itself
        log.exception("could not write the failure summary")


def load_run_config(run_dir: str | Path, overrides: list[str]) -> DictConfig:
    """A finished or interrupted run's own config, plus the overrides a resume may apply, writing
    back into ``run_dir``.

    A resume continues the same experiment: it may change the run's length
    (``trainer.max_steps=2000`` to extend it) and where outputs and logs go
    (:data:`residual_lab.run_dir.RESUME_MAY_CHANGE`); any other override that changes a value
    (``shortcut=none`` on a ResNet run would continue its weights as a plain net and record it as
    one) is refused, naming the key and both values.
    """
    run_dir = Path(run_dir).expanduser().resolve()
    saved = own_config_file(run_dir)
    if not saved.exists():
        raise UserFacingError(f"resume={run_dir}: no .hydra/config.yaml there; point resume at a run "
                              f"directory (it holds summary.json, checkpoints/ and .hydra/)")
    cfg = OmegaConf.load(saved)
    planned_steps = cfg.trainer.max_steps
    for override in OverridesParser.create().parse_overrides(overrides):
        _refuse_another_experiment(run_dir, cfg, override)
        key = override.key_or_group
        if override.is_delete():
            parent, _, leaf = key.rpartition(".")
            with open_dict(cfg):
                (OmegaConf.select(cfg, parent) if parent else cfg).pop(leaf, None)
            continue
        if override.package is not None or "/" in key or (
                OmegaConf.select(cfg, key) is not None and OmegaConf.is_dict(OmegaConf.select(cfg, key))):
            raise UserFacingError(f"resume accepts only key=value overrides of plain values, "
                                  f"not {override.input_line!r}")
        OmegaConf.update(cfg, key, override.value(), merge=True, force_add=True)
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
        cfg.resume = None
        if cfg.trainer.max_steps != planned_steps and cfg.task.get("schedule_steps") is None:
            # Milestones and warm-ups are fractions of the schedule's length: laid out again over
            # the new length, a 500-step run extended to 2000 would jump from lr 0.001 back to 0.1
            # at step 501. Keep the schedule the run was on; after its end the lr stays at its
            # last value.
            cfg.task.schedule_steps = planned_steps
            log.info("extending %s from %d to %d steps: the lr schedule of the %d-step run continues "
                     "(after step %d the lr stays at its last value)", run_dir.name, planned_steps,
                     cfg.trainer.max_steps, planned_steps, planned_steps)
    return cfg


def _refuse_another_experiment(run_dir: Path, cfg: DictConfig, override: Any) -> None:
    """Raise if ``override`` changes anything but the run's length and where outputs go."""
    key = override.key_or_group.replace("/", ".")
    if is_free_to_change(key, RESUME_MAY_CHANGE):
        return
    if override.is_delete():
        change = f"delete {key}"
    elif key in (choices := _group_choices(run_dir)):  # optimizer=adam: another config group option
        if str(override.value()) == str(choices[key]):
            return
        change = f"change {key} from {choices[key]!r} to {override.value()!r}"
    else:
        old = _value(cfg, key)
        if OmegaConf.is_config(old):
            change = f"change {key} to {override.value()!r}"
        elif old is None:
            change = f"add {key}"
        elif old == override.value():
            return
        else:
            change = f"change {key} from {old!r} to {override.value()!r}"
    raise UserFacingError(f"resume={run_dir} cannot {change}: that is another experiment (resume may change "
                          f"only trainer.max_steps and where outputs and logs go); start it as a new run")


def _group_choices(run_dir: Path) -> dict[str, Any]:
    """The config group options the run was composed with (``hydra.runtime.choices``)."""
    for path in (run_dir / HYDRA_COPY / "hydra.yaml", run_dir / ".hydra" / "hydra.yaml"):
        try:
            return dict(OmegaConf.load(path).hydra.runtime.choices)
        except Exception:  # absent or unreadable: fall back on the next, then on none
            continue
    return {}


def _value(cfg: DictConfig, key: str) -> Any:
    """``cfg``'s value at ``key``, resolved where it can be outside the Hydra app (a
    ``${hydra:...}`` interpolation cannot: then as written)."""
    try:
        return OmegaConf.select(cfg, key, throw_on_missing=False)
    except Exception:
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(cfg, parent) if parent else cfg
        return OmegaConf.to_container(node, resolve=False).get(leaf) if OmegaConf.is_dict(node) else None


def _resume_overrides() -> list[str]:
    """This command's overrides other than ``resume=``: what resume applies on top of the run's
    own config (``trainer.max_steps=2000`` to extend it)."""
    return [o for o in HydraConfig.get().overrides.task if not o.startswith("resume=")]


def _forget_empty_resume_dir() -> None:
    """``resume=<a path that holds no run>``: Hydra made that directory (an empty run.log in
    it) before the run could refuse it; take it away again."""
    made = Path(HydraConfig.get().runtime.output_dir)
    if [p.name for p in made.iterdir()] == ["run.log"] and (made / "run.log").stat().st_size == 0:
        (made / "run.log").unlink()
        made.rmdir()


def _signum(reason: str | None) -> int:
    """The signal an interrupted run's summary names (``"SIGTERM at step 12; ..."``), else SIGINT."""
    name = (reason or "").split(" ", 1)[0]
    return int(signal.Signals[name]) if name in signal.Signals.__members__ else int(signal.SIGINT)


def _stop_interrupted(cfg: DictConfig, signum: int, resumed: bool) -> None:
    """Print how to resume an interrupted run and exit 128 + ``signum`` (130 for Ctrl-C).

    A single run resumes with ``resume=<its dir>`` (plus the overrides a resume was given, e.g. a
    longer ``trainer.max_steps``); a sweep with the same command pinned to its sweep directory,
    which skips its finished jobs and continues the interrupted one (residual_lab.sweep).
    """
    name = signal.Signals(signum).name
    output_dir = Path(cfg.paths.output_dir).resolve()
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        say_how_to_resume_sweep(Path(HydraConfig.get().sweep.dir).resolve(), name)
    elif resume_checkpoint(output_dir) is not None:
        say(f"stopped by {name}; resume into {output_dir} with:")
        print(f"  {command(f'resume={output_dir}', *(_resume_overrides() if resumed else []))}", flush=True)
    else:
        say(f"stopped by {name} before its first checkpoint: nothing to resume, start it again")
    sys.exit(128 + signum)


def _claim_run_dir(output_dir: Path, held: contextlib.ExitStack) -> None:
    """A single run's directory, locked for this run; refused if it holds another run.

    Hydra has already written this launch's ``.hydra/`` there: a refused launch puts the other
    run's back (residual_lab.run_dir)."""
    try:
        held.enter_context(RunLock(output_dir))
        if holds_a_run(output_dir):
            raise DirectoryTaken(f"{output_dir} already holds a run (summary.json, checkpoints/); continue it "
                                 f"with resume={output_dir} or give this run its own hydra.run.dir")
    except DirectoryTaken:
        restore_hydra_files(output_dir)
        raise
    keep_hydra_files(output_dir)


def _claim_sweep_job(cfg: DictConfig, held: contextlib.ExitStack, owner: bool) -> tuple[str, dict[str, Any] | None]:
    """A sweep job's directory, found, locked and planned (:func:`residual_lab.sweep.plan_job`).

    A job launched again counts as done before only where the run there had the same config
    (:func:`residual_lab.run_dir.job_home`); a job whose directory holds a run of other values
    (``optimizer.lr=0.5`` after ``0.05``) runs beside it in ``<job dir>-2``, and the old result
    stays as it was. Moving it, rather than refusing it, is what relaunching a sweep asks for:
    every job of the new command done once, nothing done before lost or done twice.
    """
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


@usage_errors  # a config Hydra cannot compose: one sentence, exit code 2
@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> float | None:
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    # Only an in-process sweep (the basic launcher) stops on Ctrl-C; in a parallel launcher's
    # worker the job returns and the launcher, which got the signal too, decides.
    stops_on_signal = not multirun or HydraConfig.get().launcher._target_.endswith(".BasicLauncher")
    resume = cfg.get("resume")
    owner = is_rank_zero()  # Lightning's extra device processes run this again in the same directory
    claimed = False  # this process owns cfg.paths.output_dir: a failure summary may go there
    try:
        with contextlib.ExitStack() as held:
            continue_run = bool(resume)
            if resume:
                cfg = load_run_config(resume, _resume_overrides())
                if owner:
                    held.enter_context(RunLock(cfg.paths.output_dir))
            elif multirun:
                # The same sweep launched again (same hydra.sweep.dir) picks up where it stopped.
                action, previous = _claim_sweep_job(cfg, held, owner)
                if action == "skip":
                    return previous.get("test_error")
                continue_run = action == "resume"
            elif owner:
                _claim_run_dir(Path(cfg.paths.output_dir), held)
            claimed = True
            quiet_library_noise(resuming=continue_run)
            if not multirun:
                where_files_go(cfg.paths.output_dir, OmegaConf.select(cfg, "data.root", default=None))
            summary = train(cfg, resume=continue_run)
            if summary["status"] == "interrupted" and stops_on_signal:
                _stop_interrupted(cfg, _signum(summary["reason"]), resumed=bool(resume))
            return summary["test_error"]
    except UserFacingError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        if resume:
            _forget_empty_resume_dir()
        elif claimed or not isinstance(err, DirectoryTaken):
            _write_failure(cfg, err)
        print(f"\nresidual_lab: {err}\n", file=sys.stderr)
        if multirun:
            return None
        sys.exit(2)
    except (KeyboardInterrupt, SystemExit) as err:
        # Ctrl-C outside the training loop (building, testing), or a second Ctrl-C inside it,
        # which Lightning turns into sys.exit(1) after its own clean-up.
        if isinstance(err, SystemExit) and not isinstance(err.__context__, KeyboardInterrupt):
            raise
        if not stops_on_signal:
            raise
        _stop_interrupted(cfg, int(signal.SIGINT), resumed=bool(resume))
    except Exception as err:
        if claimed or not holds_a_run(Path(cfg.paths.output_dir)):  # never over another run's summary
            _write_failure(cfg, err)
        if not multirun:
            raise
        # One failing job must not stop the sweep: record it and let the launcher go on.
        log.error("%s failed:\n%s", cfg.get("run_name"), traceback.format_exc())
        return None


def cli() -> None:
    """``python -m residual_lab.run``: :func:`main`, and Ctrl-C outside a job (Hydra composing
    the config, or a parallel launcher's parent waiting on its workers) ends with exit code 130
    and, for a sweep, the command that resumes it, instead of a traceback."""
    try:
        main()
    except KeyboardInterrupt:
        if console.sweep_dir is not None:
            say_how_to_resume_sweep(console.sweep_dir, "SIGINT")
        else:
            say("stopped by SIGINT before the run started")
        sys.exit(128 + int(signal.SIGINT))


if __name__ == "__main__":
    cli()
