"""Relative size of one optimizer update, ||delta w|| / ||w||, per layer."""

from __future__ import annotations

import lightning as L
import torch

from residual_lab.callbacks.base import IntervalCallback, norms
from residual_lab.models.layer_names import network, sortable, weighted_layers
from residual_lab.schema import PositiveInt


class UpdateRatio(IntervalCallback):
    """||w_after - w_before|| / ||w_before|| of every conv and linear weight for one step.

    A healthy ratio is of order lr (about 1e-3 for SGD at lr 0.1, Karpathy's rule of thumb);
    layers whose ratio sits orders of magnitude lower are not learning. The step includes
    everything the optimizer does: momentum, weight decay, clipping. Logs
    ``update_ratio/<layer>``, dimensionless.

    Cost: on a logging step the weights are copied in ``on_before_optimizer_step`` (they
    are still the pre-step weights there) and compared in ``on_train_batch_end``, after
    the step; the copy is dropped at once. Other steps: nothing.
    """

    summary_key = "update_ratio"

    def __init__(self, every_n_steps: PositiveInt = 50) -> None:
        super().__init__(every_n_steps)
        self.layers: list[str] = []
        self._before: list[torch.Tensor] | None = None
        self._step = 0

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._modules = weighted_layers(network(pl_module))
        self.layers = [tag for tag, _ in self._modules]
        self._tb_layers = sortable(self.layers)

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        if self.is_logging_step(trainer):
            self._before = [m.weight.detach().clone() for _, m in self._modules]
            self._step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._before is None:
            return
        before, self._before = self._before, None
        norm = norms(before)
        torch._foreach_sub_(before, [m.weight.detach() for _, m in self._modules])  # -(the step), in place
        ratios = (norms(before) / norm).tolist()  # the one host transfer
        self.log_metrics(trainer, {f"update_ratio/{t}": v for t, v in zip(self._tb_layers, ratios)}, self._step)
        self.latest = {"step": self._step, "layers": list(self.layers), "update_ratio": ratios}

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._before = None
