"""The console progress bar of a resumed run keeps its total (and so its ETA)."""

from __future__ import annotations

import os
import signal

import lightning as L
from omegaconf import open_dict

from residual_lab.run import train
from tests.helpers import compose_config
from tests import helpers

FAST = ("experiment=smoke", *helpers.FAST,
        "data.source.image_size=8", "trainer.max_steps=6", "trainer.val_check_interval=3",
        "trainer.check_val_every_n_epoch=null", "trainer.log_every_n_steps=2", "data.batch_size=16",
        "callbacks.progress_bar.refresh_rate=1")


class SigtermAt(L.Callback):
    """``kill -TERM`` this process after optimizer step ``step`` (RunGuard saves and stops)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


class BarAfterEachStep(L.Callback):
    """Records the train bar's ``(n, total)`` after every step (runs after the bar's own hook)."""

    seen: list[tuple[int, int | None]] = []

    def on_train_batch_end(self, trainer, *args) -> None:
        bar = trainer.progress_bar_callback.train_progress_bar
        BarAfterEachStep.seen.append((bar.n, bar.total))


def test_a_run_resumed_mid_epoch_keeps_the_bars_total(tmp_path):
    cfg = compose_config(*FAST, "+callbacks.stop._target_=tests.test_progress_bar.SigtermAt",
                         "+callbacks.stop.step=2", output_dir=tmp_path)
    assert train(cfg)["status"] == "interrupted"  # at step 2 of a 112-batch epoch: mid-epoch

    cfg = compose_config(*FAST, "+callbacks.bar._target_=tests.test_progress_bar.BarAfterEachStep",
                         output_dir=tmp_path)
    with open_dict(cfg):
        cfg.trainer.enable_progress_bar = True
    from tests.test_progress_bar import BarAfterEachStep as Bar  # the class Hydra instantiates (pytest's module is another)

    Bar.seen.clear()
    assert train(cfg, resume=True)["status"] == "completed"
    # Lightning skips on_train_epoch_start on a mid-epoch restart, which left the total unset
    # ("3/?", no ETA); the bar now starts at the 2 batches done, out of 2 + 4 remaining steps.
    assert Bar.seen == [(3, 6), (4, 6), (5, 6), (6, 6)]
