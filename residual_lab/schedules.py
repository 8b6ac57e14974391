"""Learning-rate schedules as functions of the optimizer step, built from config.

Milestones are fractions of the run (``total_steps``), so one preset can be scaled to any
budget: the paper's 32k/48k of 64k steps (He et al. 2015 sec. 4.2) is ``[0.5, 0.75]``.
"""

from __future__ import annotations

import bisect
import math
from typing import Annotated, Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from residual_lab.schema import POSITIVE, Range, at_least, one_of

# The config's ranges of the schedules' arguments (residual_lab.schema checks them by key).
WarmupSteps = Annotated[int, at_least(0)]   # optimizer steps
WarmupFactor = Annotated[float, POSITIVE]   # lr multiplier at the start of the warm-up
WarmupMode = Annotated[str, one_of("constant", "linear")]
Milestones = Annotated[Sequence[float], Range(lambda v: all(0 <= m <= 1 for m in v),
                                              "a list of fractions of the run from 0.0 to 1.0")]


def _warmup(step: int, warmup_steps: int, warmup_factor: float, mode: str) -> float | None:
    """Multiplier during warm-up, or None once it is over."""
    if step >= warmup_steps:
        return None
    if mode == "constant":  # He et al. 2015 sec. 4.2: lr 0.01 for ResNet-110's first ~400 steps
        return warmup_factor
    if mode == "linear":
        return warmup_factor + (1 - warmup_factor) * step / warmup_steps
    raise ValueError(f"unknown warm-up mode {mode!r}; valid: constant, linear")


def multistep_schedule(optimizer: Optimizer, *, total_steps: int, milestones: Milestones = (0.5, 0.75),
                       gamma: Annotated[float, POSITIVE] = 0.1, warmup_steps: WarmupSteps = 0,
                       warmup_factor: WarmupFactor = 0.1, warmup_mode: WarmupMode = "constant") -> LambdaLR:
    """Divide the lr by ``1/gamma`` at each milestone (fractions of ``total_steps``), in any order,
    as torch's MultiStepLR counts its milestones."""
    bounds = sorted(round(m * total_steps) for m in milestones)

    def factor(step: int) -> float:
        w = _warmup(step, warmup_steps, warmup_factor, warmup_mode)
        return w if w is not None else gamma ** bisect.bisect_right(bounds, step)

    return LambdaLR(optimizer, factor)


def cosine_schedule(optimizer: Optimizer, *, total_steps: int, min_factor: Annotated[float, at_least(0)] = 0.0,
                    warmup_steps: WarmupSteps = 0, warmup_factor: WarmupFactor = 0.1,
                    warmup_mode: WarmupMode = "linear") -> LambdaLR:
    """Cosine decay from the base lr to ``min_factor`` times it, after the warm-up."""

    def factor(step: int) -> float:
        w = _warmup(step, warmup_steps, warmup_factor, warmup_mode)
        if w is not None:
            return w
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)


def constant_schedule(optimizer: Optimizer, *, total_steps: int, warmup_steps: WarmupSteps = 0,
                      warmup_factor: WarmupFactor = 0.1, warmup_mode: WarmupMode = "constant") -> LambdaLR:
    """The base lr throughout, after an optional warm-up."""

    def factor(step: int) -> float:
        w = _warmup(step, warmup_steps, warmup_factor, warmup_mode)
        return 1.0 if w is None else w

    return LambdaLR(optimizer, factor)
