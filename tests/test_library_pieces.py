"""The library pieces residual_lab uses, and the hand-written ones it keeps where a library's differs.

- Wall time across resumes: Lightning's ``Timer`` (its state rides in the checkpoint).
- The logged training window: a ring on the device (residual_lab/lit_module.py), not
  torchmetrics' ``RunningMean``, whose cost grows with the window.
- curves.csv: rebuilt from the TensorBoard events (results/export.py), not Lightning's
  ``CSVLogger``, which deletes the first session's rows when a run resumes.
- Welch's test: scipy's, with the no-spread case decided by hand (scipy returns NaN there).
"""

from __future__ import annotations

from functools import partial

import csv
import math
import warnings

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from scipy import stats
from torch.overrides import TorchFunctionMode
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.aggregation import RunningMean

from residual_lab.lit_module import ImageClassifier
from residual_lab.models import CifarResNet
from residual_lab.results.export import curves_csv
from residual_lab.results.loading import RECORD_TAGS, load_scalars
from residual_lab.results.stats import welch

WINDOW = 4


def _module() -> ImageClassifier:
    torch.manual_seed(0)
    return ImageClassifier(CifarResNet(depth=8, shortcut="identity", width=4),
                           partial(torch.optim.SGD, lr=0.05),
                           lambda optimizer, total_steps: torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0),
                           num_classes=10, schedule_steps=100)


def _loader() -> DataLoader:
    g = torch.Generator().manual_seed(1)
    data = TensorDataset(torch.randn(64, 3, 8, 8, generator=g), torch.randint(0, 10, (64,), generator=g))
    return DataLoader(data, batch_size=8)


def _trainer(max_steps: int, logger=False, **kwargs) -> L.Trainer:
    return L.Trainer(max_steps=max_steps, accelerator="cpu", logger=logger, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=WINDOW,
                     limit_val_batches=0, **kwargs)


class _Record(L.Callback):
    """Each training step's loss and error (%) computed here, from the step's own logits."""

    def __init__(self, steps: list[tuple[float, float]]) -> None:
        self.steps = steps

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        forward, labels = module.forward, batch[1]

        def recording(x):
            logits = forward(x)
            self.steps.append((F.cross_entropy(logits.double(), labels).item(),
                               (logits.argmax(1) != labels).double().mean().item() * 100))
            return logits

        module.forward = recording

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        del module.forward


def _by_hand(steps: list[tuple[float, float]]) -> dict[str, float]:
    last = steps[-WINDOW:]
    return {"train_loss": sum(s[0] for s in last) / len(last), "train_error": sum(s[1] for s in last) / len(last)}


def test_the_window_is_the_mean_of_the_last_log_every_n_steps_steps_also_across_a_resume(tmp_path):
    straight, steps = _module(), []
    _trainer(7, callbacks=[_Record(steps)]).fit(straight, _loader())
    assert len(steps) == 7
    # float32 on the device, float64 by hand: equal to float32 precision.
    assert straight.train_window() == pytest.approx(_by_hand(steps), rel=1e-6)
    assert _by_hand(steps) != pytest.approx(_by_hand(steps[:-1]), rel=1e-3)  # the window moved

    # Cut after 5 steps and resume to 7: the final window (steps 3-6) spans both sessions.
    first, cut_steps = _module(), []
    trainer = _trainer(5, callbacks=[_Record(cut_steps)])
    trainer.fit(first, _loader())
    trainer.save_checkpoint(tmp_path / "cut.ckpt")
    resumed = _module()
    _trainer(7, callbacks=[_Record(cut_steps)]).fit(resumed, _loader(), ckpt_path=tmp_path / "cut.ckpt",
                                                     weights_only=True)
    assert len(cut_steps) == 7
    assert resumed.train_window() == pytest.approx(_by_hand(cut_steps), rel=1e-6)


def _ops(fn) -> int:
    """Torch functions and tensor methods ``fn`` calls: each is a kernel launch on a GPU."""

    class Count(TorchFunctionMode):
        n = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            Count.n += 1
            return func(*args, **(kwargs or {}))

    with Count():
        fn()
    return Count.n


def test_the_ring_costs_a_fixed_few_ops_a_step_where_running_mean_grows_with_its_window():
    """Why the window is not torchmetrics' ``RunningMean``: its ``compute`` reduces every slot,
    so a step that logs the window (each one does: the bar and the logger read it) costs
    O(window) tensor ops; at the default window of 50, ~3.8 ms a step against ~0.05 ms on one CPU
    thread (the ratio is this test's op counts), and 200+ kernel launches a step on a GPU."""
    loss, error = torch.tensor(2.3), torch.tensor(90.0)

    def ring_ops(window: int) -> int:
        module = _module()
        module._window = torch.zeros(2, window)
        return _ops(lambda: module._update_window(loss, error))

    def running_mean_ops(window: int) -> int:
        means = [RunningMean(window=window, nan_strategy="disable", sync_on_compute=False) for _ in range(2)]
        return _ops(lambda: [(m.update(v), m.compute()) for m, v in zip(means, (loss, error))])

    assert ring_ops(5) == ring_ops(50) <= 10
    assert running_mean_ops(50) > running_mean_ops(5) and running_mean_ops(50) >= 20 * ring_ops(50)


def test_a_resumed_runs_training_time_is_the_first_sessions_timer_state_plus_the_second_sessions(tmp_path):
    module = _module()
    trainer = _trainer(3)
    trainer.fit(module, _loader())
    assert module.wall_time_before == 0.0  # a fresh run: nothing before it
    trainer.save_checkpoint(tmp_path / "cut.ckpt")
    first = torch.load(tmp_path / "cut.ckpt", weights_only=True)["callbacks"]["Timer"]["time_elapsed"]["train"]
    assert first > 0

    resumed = _module()
    trainer = _trainer(6)
    trainer.fit(resumed, _loader(), ckpt_path=tmp_path / "cut.ckpt", weights_only=True)
    timer = next(c for c in trainer.callbacks if isinstance(c, L.pytorch.callbacks.Timer))
    second = timer.end_time() - timer.start_time()
    assert resumed.wall_time_before == first
    assert timer.time_elapsed() == pytest.approx(first + second, abs=1e-9)
    # Testing a checkpoint makes Lightning load its Timer state too (here: both sessions' time,
    # on top of this session's); the time before this session stays the one the fit resumed from.
    trainer.save_checkpoint(tmp_path / "end.ckpt")
    trainer.test(resumed, _loader(), ckpt_path=tmp_path / "end.ckpt", weights_only=True, verbose=False)
    assert timer.time_elapsed() == pytest.approx(first + 2 * second, abs=1e-9)
    assert resumed.wall_time_before == first


def test_curves_csv_keeps_both_sessions_of_a_resumed_run_where_lightnings_csv_logger_drops_the_first(tmp_path):
    """A run resumed into its own directory: TensorBoard adds an event file per session and
    curves.csv (built from them) has every step; Lightning's CSVLogger, pointed at the same
    folder, deletes the first session's metrics.csv when the second starts (Lightning 2.6,
    ``_ExperimentWriter._check_log_dir_exists``), so it cannot write a resumable run's curves."""
    def loggers():
        return [TensorBoardLogger(tmp_path / "tensorboard", name="net", version="", default_hp_metric=False),
                CSVLogger(tmp_path, name="csv", version="")]

    trainer = _trainer(8, logger=loggers())
    trainer.fit(_module(), _loader())
    trainer.save_checkpoint(tmp_path / "cut.ckpt")
    _trainer(16, logger=loggers()).fit(_module(), _loader(), ckpt_path=tmp_path / "cut.ckpt", weights_only=True)

    every_window = [WINDOW * k - 1 for k in range(1, 5)]  # steps 3, 7, 11, 15 (0-based)
    from_events = load_scalars(tmp_path, RECORD_TAGS)
    assert from_events["train/loss"][0] == every_window
    assert curves_csv(from_events).splitlines()[0] == "step,train_loss,train_error"
    assert [int(line.split(",")[0]) for line in curves_csv(from_events).splitlines()[1:]] == every_window
    with open(tmp_path / "csv" / "metrics.csv", newline="") as f:
        csv_steps = [int(row["step"]) for row in csv.DictReader(f) if row.get("train/loss")]
    assert csv_steps == every_window[2:]  # the second session's only


def test_welch_is_scipys_and_decides_two_sides_without_spread_where_scipy_returns_nan():
    """Seeds that agree exactly (a deterministic run repeated) have no standard error: scipy's
    ``ttest_ind(equal_var=False)`` returns NaN, which no verdict can use; ``welch`` calls the
    difference exact (p = 0) or absent (p = 1)."""
    differ, same = welch([1.0, 1.0, 1.0], [2.0, 2.0, 2.0]), welch([1.0, 1.0, 1.0], [1.0, 1.0, 1.0])
    assert (differ.t, differ.p, same.p) == (-math.inf, 0.0, 1.0)
    a, b = [1.0, 2.0, 3.0], [4.0, 5.0, 7.0]  # with any spread: scipy's test, unchanged
    ref = stats.ttest_ind(a, b, equal_var=False)
    assert (welch(a, b).t, welch(a, b).p) == (float(ref.statistic), float(ref.pvalue))
