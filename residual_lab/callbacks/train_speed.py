"""Training throughput, excluding validation, for summary.json and TensorBoard."""

from __future__ import annotations

import time
from typing import Annotated

import lightning as L

from residual_lab.callbacks.base import IntervalCallback
from residual_lab.schema import at_least


class TrainSpeed(L.Callback):
    """Images per second and seconds per optimizer step, validation time excluded.

    Logs ``perf/images_per_s`` and ``perf/s_per_step`` over each window of ``every_n_steps``
    optimizer steps (to every logger: TensorBoard's scalars tab shows a slow-down as it
    happens), and keeps one whole-fit figure for summary.json (``train_images_per_s``).

    Reads the clock once per step (a host clock, never a device sync) and around validation;
    the work is done only at the end of a window. The first ``skip_steps`` steps are excluded
    so warm-up (allocator, autotuning, compilation) does not dilute the figures. On a GPU the
    host runs ahead of the device by at most a few queued steps, so a window's figure is the
    device's speed to within those few steps.

    Not Lightning's ``ThroughputMonitor``: that one calls ``torch.cuda.synchronize()`` at
    every batch end (Lightning 2.6, ``throughput_monitor.py`` ``_update``), a host sync per
    step on the hot path.

    Args:
        skip_steps: optimizer steps left out at the start of a fit.
        every_n_steps: optimizer steps per logged window; None: ``trainer.log_every_n_steps``,
            so the speed has a point wherever ``train/loss`` has one.
    """

    def __init__(self, skip_steps: int = 5, every_n_steps: Annotated[int | None, at_least(1)] = None) -> None:
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.skip_steps = skip_steps
        self.every_n_steps = every_n_steps
        self.images_per_s: float | None = None
        self._start = self._val_start = None
        self._start_step = 0
        self._val_time = 0.0
        self._window: tuple[float, int, float] | None = None  # (clock, step, validation time) at its start

    def _images_per_step(self, trainer: L.Trainer) -> int:
        return trainer.datamodule.batch_size * trainer.accumulate_grad_batches

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._start is None and trainer.global_step >= self.skip_steps:
            self._start, self._start_step, self._val_time = time.perf_counter(), trainer.global_step, 0.0
            self._window = (self._start, self._start_step, 0.0)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        every = self.every_n_steps or trainer.log_every_n_steps
        step = trainer.global_step  # optimizer steps done, this batch's included
        if self._window is None or step % every or step == self._window[1]:
            return
        now = time.perf_counter()
        start, start_step, val_time_at_start = self._window
        seconds = now - start - (self._val_time - val_time_at_start)
        self._window = (now, step, self._val_time)
        if seconds > 0:
            steps = step - start_step
            IntervalCallback.log_metrics(trainer, {"perf/images_per_s": steps * self._images_per_step(trainer) / seconds,
                                                   "perf/s_per_step": seconds / steps}, step - 1)

    def on_validation_start(self, trainer, pl_module) -> None:
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._val_start is not None and self._start is not None:
            self._val_time += time.perf_counter() - self._val_start

    def on_train_end(self, trainer, pl_module) -> None:
        if self._start is None:
            return
        steps = trainer.global_step - self._start_step
        seconds = time.perf_counter() - self._start - self._val_time
        if steps > 0 and seconds > 0:
            self.images_per_s = steps * self._images_per_step(trainer) / seconds
