"""``resume=<run dir>``: the run's own config, and the overrides a resume may apply to it.

A resume continues the same experiment: it may change the run's length
(``trainer.max_steps=2000`` to extend it) and where outputs and logs go
(:data:`residual_lab.run_dir.RESUME_MAY_CHANGE`); any other override that changes a value
(``shortcut=none`` on a ResNet run would continue its weights as a plain net and record it as
one) is refused, naming the key and both values.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict

from residual_lab.errors import UserFacingError
from residual_lab.run_dir import HYDRA_COPY, RESUME_MAY_CHANGE, is_free_to_change, own_config_file

log = logging.getLogger(__name__)

#: Top-level keys every composed run config has: a saved config without one was cut short.
_NEEDED = ("model", "task", "optimizer", "data", "trainer", "paths")


def load_run_config(run_dir: str | Path, overrides: list[str], same_experiment: bool = True) -> DictConfig:
    """A finished or interrupted run's own config, plus the overrides a resume may apply, writing
    back into ``run_dir`` (module doc). ``same_experiment=False`` applies any plain value: for a
    command that continues no experiment (``evaluate`` scores the net, its data perhaps elsewhere)."""
    run_dir = Path(run_dir).expanduser().resolve()
    cfg = _saved_config(run_dir)
    if same_experiment and "bench" in cfg:  # its checkpoints are timing windows, not a run's progress
        raise UserFacingError(f"resume={run_dir} is a bench's directory (python -m residual_lab.bench), not a "
                              f"run's: its checkpoints are the bench's timing windows, not a run to continue")
    planned_steps = cfg.trainer.max_steps
    for override in OverridesParser.create().parse_overrides(overrides):
        if same_experiment:
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


def _saved_config(run_dir: Path) -> DictConfig:
    """The config the run started from; one sentence when it is missing, unreadable or cut short."""
    saved = own_config_file(run_dir)
    if not saved.exists():
        raise UserFacingError(f"resume={run_dir}: no .hydra/config.yaml there; point resume at a run "
                              f"directory (it holds summary.json, checkpoints/ and .hydra/)")
    try:
        cfg = OmegaConf.load(saved)
        missing = [k for k in _NEEDED if not OmegaConf.is_dict(cfg.get(k))] if OmegaConf.is_dict(cfg) else ["all"]
        planned = OmegaConf.select(cfg, "trainer.max_steps", default=None)
    except Exception as err:  # YAML cut mid-token, a bad interpolation: the file is not a config any more
        problem = f"it cannot be read ({type(err).__name__})"
    else:
        if not missing and isinstance(planned, int):
            return cfg
        problem = f"it lacks {', '.join(missing) or 'trainer.max_steps'}"
    raise UserFacingError(f"resume={run_dir}: {saved} is damaged ({problem}, cut short or edited); "
                          f"resume needs the config the run started with, so start the run again")


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
