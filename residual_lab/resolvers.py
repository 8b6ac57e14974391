"""Small OmegaConf resolvers that let presets state per-run conditions in config.

A sweep such as ``experiment=table6`` varies ``depth``; only ResNet-110 warms up, and its
400 warm-up steps belong to the paper's 64k-step schedule, so a shorter budget shortens
them in proportion (like the lr milestones, which are fractions of the run)::

    warmup_steps: ${if_at_least:${depth},110,${scale_steps:400,${trainer.max_steps},64000},0}
"""

from __future__ import annotations

import os
from typing import Any

from omegaconf import OmegaConf


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


def register_schedule_resolvers() -> None:
    """Idempotent, like :func:`residual_lab.naming.register_resolvers`."""
    from residual_lab.sweep import gpu_count, gpu_for_job, threads_per_job

    for name, fn in (("scale_steps", scale_steps), ("if_at_least", if_at_least),
                     ("gpu_for_job", gpu_for_job), ("gpu_count", gpu_count),
                     ("threads_per_job", threads_per_job), ("cpu_count", lambda: os.cpu_count() or 1)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
