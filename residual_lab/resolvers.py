"""Everything conf/ needs registered before Hydra composes it, in one place: the OmegaConf
resolvers its files call (:func:`register_resolvers`, which ``import residual_lab`` calls) and the
Trainer's schema in Hydra's ConfigStore (:func:`register`, which
:func:`residual_lab.conf_dir.hydra_config_dir` calls: it imports Lightning, which the commands
that only read records never need).

A sweep such as ``experiment=table6`` varies ``depth``; only ResNet-110 warms up, and its
400 warm-up steps belong to the paper's 64k-step schedule, so a shorter budget shortens
them in proportion (like the lr milestones, which are fractions of the run)::

    warmup_steps: ${if_at_least:${depth},110,${scale_steps:400,${trainer.max_steps},64000},0}
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf


def scale_steps(steps: int, max_steps: int, of_steps: int) -> int:
    """``steps`` of an ``of_steps``-step schedule, rescaled to a ``max_steps``-step run.

    Rounded to the nearest step, but never to 0 when ``steps`` > 0: a warm-up that exists
    in the paper's schedule exists in every budget (400 of 64k -> 3 of 500).
    """
    if steps <= 0:
        return 0
    return max(1, round(steps * max_steps / of_steps))


def if_at_least(value: float, threshold: float, then: Any, otherwise: Any) -> Any:
    """``then`` if ``value >= threshold`` else ``otherwise`` (e.g. warm up only deep nets)."""
    return then if value >= threshold else otherwise


def resume_or(resume: Any, fresh: str) -> str:
    """``${resume_or:${resume},<dir>}`` (conf/hydra/): ``resume=<dir>`` runs in ``<dir>`` itself,
    appending to its run.log."""
    return str(Path(str(resume)).expanduser().resolve()) if resume else fresh


def fresh_only(resume: Any, value: Any) -> Any:
    """``${fresh_only:${resume},<value>}``: null on resume, so the original run's ``.hydra/`` (the
    config resume rebuilds from) stays as it wrote it."""
    return None if resume else value


def analysis_label(run_dir: str | None, run_name: str) -> str:
    """``residual_lab.analyze``'s output directory label: the run name of a fresh net,
    ``trained_<dir name>`` of a trained run."""
    return f"trained_{Path(run_dir).name}" if run_dir else run_name


def num_classes_of(source: DictConfig) -> int:
    """``${num_classes_of:${.source}}``: how many classes a data source holds, read from the source
    itself (an image folder's class folders, CIFAR-10/100 by name) without loading an image."""
    from hydra.utils import instantiate

    from residual_lab.errors import UserFacingError

    count = getattr(instantiate(source), "num_classes", None)
    if count is None:
        raise UserFacingError(f"{source._target_} cannot say how many classes it holds; set data.num_classes")
    return int(count)


def register() -> None:
    """Register every resolver conf/ uses and store ``trainer/schema`` (the Trainer's arguments,
    from its signature: :func:`residual_lab.schema.trainer_schema`). Idempotent."""
    from hydra.core.config_store import ConfigStore

    from residual_lab.schema import trainer_schema

    register_resolvers()
    ConfigStore.instance().store(group="trainer", name="schema", node=trainer_schema())


def register_resolvers() -> None:
    """Register every OmegaConf resolver conf/ uses (cheap: nothing imports torch). Idempotent."""
    from residual_lab.naming import external_run_name, run_name
    from residual_lab.sweep import gpu_count, gpu_for_job, threads_per_job

    for name, fn in (("run_name", run_name), ("external_run_name", external_run_name),
                     ("scale_steps", scale_steps), ("if_at_least", if_at_least),
                     ("gpu_for_job", gpu_for_job), ("gpu_count", gpu_count), ("threads_per_job", threads_per_job),
                     ("cpu_count", lambda: os.cpu_count() or 1), ("resume_or", resume_or),
                     ("fresh_only", fresh_only), ("analysis_label", analysis_label),
                     ("num_classes_of", num_classes_of)):
        OmegaConf.register_new_resolver(name, fn, replace=True)
