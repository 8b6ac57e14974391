"""The classification task: loss, metrics and optimizers around an injected network."""

from __future__ import annotations

import contextlib
from typing import Annotated, Callable

import lightning as L
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.trainer.states import TrainerFn
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score, MulticlassRecall

from residual_lab.schema import at_least


class ImageClassifier(L.LightningModule):
    """Cross-entropy image classification; the architecture is injected, never defined here.

    Train loss and top-1 error are the mean over the last logging window (a ring buffer
    of ``trainer.log_every_n_steps`` steps kept on the device), like the smoothed training
    curves of He et al. 2015 fig. 6, and cost no host sync in the step. Not torchmetrics'
    ``RunningMean``: its ``compute`` reduces every slot of the window, 270 tensor ops a step
    at window 50 against the ring's 6 (tests/test_library_pieces.py; ~3.8 ms against ~0.05 ms
    a step on one CPU thread), and resuming it would need its private place in the window
    (``Running._num_vals_seen``, not a metric state). Wall time across resumes is Lightning's
    ``Timer`` (:meth:`configure_callbacks`). Every rate is in
    percent (the paper's unit for errors): ``*/error``, ``*/accuracy``, ``*/recall`` and
    ``*/f1`` alike. The progress bar shows the train loss and error and the last val error.

    Args:
        net: the network, e.g. :class:`residual_lab.models.CifarResNet`.
        optimizer: partial optimizer, called with the parameters.
        scheduler: partial schedule, called with the optimizer and ``total_steps``.
        num_classes: classes, for the metrics.
        channels_last: run the net in NHWC memory format (faster convs on CPU and GPU).
        compile: wrap the net with ``torch.compile``.
        schedule_steps: optimizer steps the lr schedule is laid out over (None: the run's
            ``max_steps``). A run resumed to more steps keeps its original schedule this way
            (milestones are fractions of the schedule's length).
    """

    def __init__(self, net: nn.Module, optimizer: Callable, scheduler: Callable, *,
                 num_classes: int, channels_last: bool = True, compile: bool = False,
                 schedule_steps: Annotated[int | None, at_least(1)] = None) -> None:
        super().__init__()
        # Only plain values: checkpoints must load with weights_only=True (the partials live in
        # the run's .hydra/config.yaml, which is what rebuilds a run).
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"], logger=False)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.schedule_steps = schedule_steps
        self.net = net
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        if compile:
            self.net.compile()  # in place: state_dict keys stay `net.*`
        metrics = MetricCollection({
            "accuracy": MulticlassAccuracy(num_classes, average="micro"),
            "recall": MulticlassRecall(num_classes, average="macro"),
            "f1": MulticlassF1Score(num_classes, average="macro"),
        })
        self.val_metrics, self.test_metrics = metrics.clone("val/"), metrics.clone("test/")
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        self.register_buffer("_window", torch.zeros(2, 1), persistent=False)  # loss, error rows
        self._window_filled = 0
        #: Training time (s) of the sessions before this one; a resumed run adds it to its own.
        self.wall_time_before = 0.0

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self._window = torch.zeros(2, max(1, self.trainer.log_every_n_steps), device=self.device)

    def configure_callbacks(self) -> list[L.Callback]:
        # Lightning's Timer keeps the training time in the checkpoint (its state dict), so a
        # resumed run's wall time adds up; a Timer the config already has (a time limit) is kept.
        return [] if any(isinstance(c, Timer) for c in self.trainer.callbacks) else [Timer()]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.contiguous(memory_format=self.memory_format))

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, labels = batch
        logits = self(images)
        loss = F.cross_entropy(logits, labels)
        error = (logits.argmax(1) != labels).float().mean() * 100
        window = self._update_window(loss.detach(), error.detach())
        # prog_bar: the bar reads these on the host only when it refreshes (refresh_rate steps).
        self.log("train/loss", window[0], on_step=True, on_epoch=False, batch_size=len(labels), prog_bar=True)
        self.log("train/error", window[1], on_step=True, on_epoch=False, batch_size=len(labels), prog_bar=True)
        self.last_loss = loss.detach()  # divergence checks read it at their interval
        return loss

    def _update_window(self, loss: torch.Tensor, error: torch.Tensor) -> torch.Tensor:
        """Put this step's loss and error in the ring; return the window's (loss, error) mean."""
        slot = self.global_step % self._window.shape[1]
        self._window[:, slot] = torch.stack([loss, error])
        self._window_filled = min(self._window_filled + 1, self._window.shape[1])
        return self._window[:, : self._window_filled].mean(1)

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        # Stopping through should_stop (not only max_steps) makes Lightning validate and
        # checkpoint the final weights even when the last step falls mid-epoch.
        if 0 < self.trainer.max_steps <= self.global_step:
            self.trainer.should_stop = True

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # The window is a non-persistent buffer; keep it so a resumed run reports the
        # same final training error as an uninterrupted one.
        checkpoint["train_window"] = {"values": self._window.cpu(), "filled": self._window_filled}
        # What ran, for a summary rebuilt from this checkpoint on another machine, where
        # Lightning would make another precision or world size of the same trainer config.
        checkpoint["ran"] = {"precision": str(self.trainer.precision), "world_size": int(self.trainer.world_size),
                             "accumulate": int(self.trainer.accumulate_grad_batches)}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # Only a resumed fit continues the window; testing a checkpoint (e.g. the best-val one)
        # must not replace the final step's window with the window of the checkpoint's step.
        resuming = self._trainer is not None and self.trainer.state.fn == TrainerFn.FITTING
        if resuming and "train_window" in checkpoint:
            self._window = checkpoint["train_window"]["values"].to(self._window.device)
            self._window_filled = int(checkpoint["train_window"]["filled"])
        if resuming:
            # Read here, not from the Timer later: Lightning restores callback states whenever
            # a checkpoint is loaded, so testing the best-val one rewinds the Timer to its step.
            # Checkpoints from before the Timer kept the time under their own key.
            saved = checkpoint.get("callbacks", {}).get(Timer.__qualname__, {}).get("time_elapsed", {})
            self.wall_time_before = float(saved.get("train", checkpoint.get("wall_time_s", 0.0)))
            for timer in (c for c in self.trainer.callbacks if isinstance(c, Timer)):  # carried on
                timer.load_state_dict({"time_elapsed": {"train": self.wall_time_before}})

    def train_window(self) -> dict[str, float]:
        """Mean train loss and error (%) over the last logging window (syncs: call rarely)."""
        loss, error = self._window[:, : max(1, self._window_filled)].mean(1).tolist()
        return {"train_loss": loss, "train_error": error}

    @torch.no_grad()
    def evaluate(self, batches) -> dict[str, float]:
        """Error (%) and mean loss of the current weights over ``batches``, in eval mode.

        Used on the whole, unaugmented training split at the end of a fit
        (``train_error_full``): BN then uses its running statistics, as at test time, so
        the number measures the net, not the last minibatches' noise. Counts are summed
        over DDP ranks (each evaluates its shard); the precision plugin's autocast applies
        as in ``test``. The module's train/eval mode is restored afterwards.
        """
        was_training = self.training
        self.eval()
        wrong = torch.zeros((), dtype=torch.float64, device=self.device)
        loss_sum, count = torch.zeros_like(wrong), torch.zeros_like(wrong)
        forward_context = self.trainer.strategy.precision_plugin.forward_context() \
            if self._trainer is not None else contextlib.nullcontext()
        try:
            with forward_context:
                for images, labels in batches:
                    logits = self(images.to(self.device))
                    labels = labels.to(self.device)
                    loss_sum += F.cross_entropy(logits.float(), labels, reduction="sum").double()
                    wrong += (logits.argmax(1) != labels).sum()
                    count += len(labels)
        finally:
            self.train(was_training)
        if self._trainer is not None and self.trainer.world_size > 1:
            wrong, loss_sum, count = (self.trainer.strategy.reduce(t, reduce_op="sum")
                                      for t in (wrong, loss_sum, count))
        n = max(1.0, float(count))
        return {"error": float(wrong) / n * 100, "loss": float(loss_sum) / n, "images": int(count)}

    def _eval_step(self, batch, metrics: MetricCollection, loss_metric: MeanMetric) -> None:
        images, labels = batch
        logits = self(images)
        loss_metric.update(F.cross_entropy(logits, labels), len(labels))
        metrics.update(logits, labels)

    def _eval_epoch_end(self, prefix: str, metrics: MetricCollection, loss_metric: MeanMetric) -> None:
        values = {name: value * 100 for name, value in metrics.compute().items()}  # percent
        values[f"{prefix}/error"] = 100 - values[f"{prefix}/accuracy"]
        values[f"{prefix}/loss"] = loss_metric.compute()
        error = values.pop(f"{prefix}/error")
        self.log_dict(values)
        self.log(f"{prefix}/error", error, prog_bar=prefix == "val")  # the bar keeps the last val error
        metrics.reset()
        loss_metric.reset()

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, self.val_metrics, self.val_loss)

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val", self.val_metrics, self.val_loss)

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, self.test_metrics, self.test_loss)

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test", self.test_metrics, self.test_loss)

    def configure_optimizers(self):
        # A net may split its parameters into groups with an lr multiplier (Fixup's scalars
        # at lr/10, models/init.py); the multiplier applies before the schedule records each
        # group's initial lr, so every group follows the same schedule at its own scale.
        groups = self.net.parameter_groups() if hasattr(self.net, "parameter_groups") else None
        if groups is not None and sum(len(g["params"]) for g in groups) != len(list(self.parameters())):
            raise RuntimeError("net.parameter_groups() must hold every parameter exactly once")
        optimizer = self.optimizer_factory(params=self.parameters() if groups is None else groups)
        for group in optimizer.param_groups:
            group["lr"] *= group.get("lr_scale", 1.0)
        total = self.schedule_steps or int(self.trainer.estimated_stepping_batches)
        scheduler = self.scheduler_factory(optimizer, total_steps=total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
