"""The console progress bar: what a person watching a run wants to see while it trains."""

from __future__ import annotations

from typing import Annotated, Any

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import convert_inf

from residual_lab.schema import at_least


class ProgressBar(TQDMProgressBar):
    """Lightning's TQDM bar with the running training loss and error and the last validation
    error, as ``loss 0.6931 · error 23.44% · val error 21.09%``.

    The values are the ones :class:`~residual_lab.lit_module.ImageClassifier` logs with
    ``prog_bar=True`` (the train window's mean; ``val/error`` of the latest validation). They
    are read on the host only when the bar refreshes, every ``refresh_rate`` steps. Lightning's
    ``v_num`` (the logger's version, empty here) is left out.

    Args:
        refresh_rate: optimizer steps between refreshes (each refresh syncs with the device).
        process_position, leave: as for ``TQDMProgressBar``.
    """

    #: Logged name -> label on the bar, in the order shown.
    SHOWN = {"train/loss": "loss", "train/error": "error", "val/error": "val error"}

    def __init__(self, refresh_rate: Annotated[int, at_least(0)] = 20, process_position: int = 0,
                 leave: bool = False) -> None:
        super().__init__(refresh_rate=refresh_rate, process_position=process_position, leave=leave)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Lightning sets the bar's total in ``on_train_epoch_start``, which it skips when it
        resumes mid-epoch: a resumed run would show ``80/?`` and no ETA. Set it here, from the
        batches this epoch has done (the bar starts there; its rate counts only new steps)."""
        super().on_train_start(trainer, pl_module)
        # ``processed``, not ``completed``: a checkpoint saved in on_train_batch_end (RunGuard's, on
        # a signal) holds its batch as processed but not yet completed, one short of the steps done
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        if not trainer.fit_loop.restarted_mid_epoch or done <= 0:
            return
        remaining = trainer.max_steps - trainer.global_step if trainer.max_steps > 0 else float("inf")
        bar = self.train_progress_bar
        bar.reset(total=convert_inf(min(trainer.num_training_batches, done + remaining)))
        bar.initial = bar.n = done
        bar.set_description(f"Epoch {trainer.current_epoch}")

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        """A run stopped by a signal (or an error): close the bars now. Left open, tqdm clears
        them when the interpreter exits, after the lines that say how to resume the run, which
        must be the last thing it prints."""
        for bar in (self._train_progress_bar, self._val_progress_bar, self._test_progress_bar):
            if bar is not None:
                bar.close()

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        values = trainer.progress_bar_metrics
        return {label: format_value(name, values[name]) for name, label in self.SHOWN.items() if name in values}


def format_value(name: str, value: Any) -> str:
    """Errors as ``23.44%``, losses to 4 significant digits."""
    value = float(value)
    return f"{value:.2f}%" if name.endswith("error") else f"{value:.4g}"
