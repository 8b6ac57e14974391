"""Training throughput, excluding validation, for summary.json and TensorBoard."""

from __future__ import annotations

import time

import lightning as L


class TrainSpeed(L.Callback):
    """Images per second over the training steps of a fit (validation time excluded).

    Reads the clock at fit start/end and around validation only: no per-step work.
    The first ``skip_steps`` steps are excluded so warm-up (allocator, autotuning,
    compilation) does not dilute the figure.

    Not Lightning's ``ThroughputMonitor``: that one calls ``torch.cuda.synchronize()`` at
    every batch end (Lightning 2.6, ``throughput_monitor.py`` ``_update``), a host sync per
    step on the hot path, and logs a windowed rate every ``log_every_n_steps``; this keeps
    one whole-fit figure for summary.json at the cost of two clock reads per fit.
    """

    def __init__(self, skip_steps: int = 5) -> None:
        self.skip_steps = skip_steps
        self.images_per_s: float | None = None
        self._start = self._val_start = None
        self._start_step = 0
        self._val_time = 0.0

    def _batch_size(self, trainer: L.Trainer) -> int:
        return trainer.datamodule.batch_size

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._start is None and trainer.global_step >= self.skip_steps:
            self._start, self._start_step, self._val_time = time.perf_counter(), trainer.global_step, 0.0

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
            self.images_per_s = steps * self._batch_size(trainer) / seconds
