"""The training error of the current weights, measured the way the report's statistic is, at
each validation point: a curve of ``train_error_full`` on a fixed part of the training split.

The registered training error (``train_error_full``, docs/reproducing.md) is the final
weights in eval mode on the whole unaugmented training split, measured once at the end: 50k
images is minutes on a CPU, too much at every validation. Its curve is measured here on a fixed,
evenly spaced subset (5,000 images by default: the size of the held-out validation split, so
the train and val curves have the same sampling noise, about 0.6 points at 30 % error). The
window metric ``train/error`` (10 augmented train-mode batches) stays the training curve of
every step; this one says where along the run the net's own training error stands.
"""

from __future__ import annotations

from typing import Annotated

import lightning as L

from residual_lab.callbacks.base import IntervalCallback
from residual_lab.schema import at_least


class TrainSplitError(L.Callback):
    """Logs ``train_full/error`` and ``train_full/loss`` every ``every_n_steps`` optimizer steps
    (the validation interval) or, with None, at each epoch's end.

    Args:
        every_n_steps: optimizer steps between measurements; None (or a float, the
            fraction-of-an-epoch form of ``trainer.val_check_interval``): once per epoch.
        images: how many training images, evenly spaced over the split (every class of a
            class-sorted folder in proportion), the same ones at every measurement.
    """

    def __init__(self, every_n_steps: Annotated[int | float | None, at_least(1)] = None, images: int = 5000) -> None:
        if isinstance(every_n_steps, float):  # trainer.val_check_interval as a fraction of an epoch
            every_n_steps = None
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1 or None, got {every_n_steps}")
        if images < 1:
            raise ValueError(f"images must be >= 1, got {images}")
        self.every_n_steps, self.images = every_n_steps, images
        self._measured_at = -1

    def _measure(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        step = trainer.global_step
        if step == self._measured_at or trainer.datamodule is None:
            return
        self._measured_at = step
        result = module.evaluate(trainer.datamodule.eval_batches("train", module.device, images=self.images))
        IntervalCallback.log_metrics(trainer, {"train_full/error": result["error"], "train_full/loss": result["loss"]},
                                     step=step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        # After the optimizer step: global_step counts it. Accumulated micro-batches share a step.
        if self.every_n_steps is not None and trainer.global_step > 0 and trainer.global_step % self.every_n_steps == 0:
            self._measure(trainer, pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.every_n_steps is None:
            self._measure(trainer, pl_module)
