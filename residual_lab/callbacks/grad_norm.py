"""Per-layer weight-gradient norms: where in depth the learning signal is, step by step."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch

from residual_lab.callbacks.base import IntervalCallback, norms
from residual_lab.models.layer_names import group_of, network, sortable, weighted_layers
from residual_lab.schema import PositiveInt


class GradNorms(IntervalCallback):
    """L2 norm of the weight gradient of every conv and linear layer, in network order.

    Logs ``grad_norm/<layer>`` (e.g. ``grad_norm/1_s1.b00.conv1``, the sortable form of
    :func:`~residual_lab.models.layer_names.sortable`), ``grad_norm_stage/<group>`` for
    ``0_stem``, ``1_s1``..``3_s3`` and ``9_head`` (the norm of the group's weight gradients
    seen as one vector) and ``grad_norm_total`` (all tracked weights together; BN scales
    and biases are not tracked). Unit: the gradient of the mean cross-entropy per batch.

    Lightning's ``lightning.pytorch.utilities.grad_norm`` was considered and does not fit:
    it reports every parameter (BN too) under raw ``named_parameters`` names, and forms its
    total with ``torch.tensor(list_of_tensors)``, a device-to-host copy per parameter. Here
    the norms stay on the device and cross to the host in one transfer per logging step.

    Keeps the logged vectors (a few hundred floats each) for the heat map of
    :class:`~residual_lab.callbacks.figures.DiagnosticFigures`; past ``max_history``
    columns every other one is dropped, so memory stays bounded on long runs.

    Args:
        every_n_steps: optimizer steps between measurements.
        max_history: logged steps kept for the heat map.
    """

    summary_key = "grad_norm"

    def __init__(self, every_n_steps: PositiveInt = 50, max_history: int = 256) -> None:
        super().__init__(every_n_steps)
        self.max_history = max_history
        self.layers: list[str] = []
        self.history_steps: list[int] = []
        self.history: list[np.ndarray] = []

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._modules = weighted_layers(network(pl_module))
        self.layers = [tag for tag, _ in self._modules]
        groups = [group_of(tag) for tag in self.layers]
        self.groups = list(dict.fromkeys(groups))  # network order; layers of a group are contiguous
        self._tb_layers, self._tb_groups = sortable(self.layers), sortable(self.groups)
        self._group_slices = [slice(groups.index(g), len(groups) - groups[::-1].index(g)) for g in self.groups]

    def measure(self) -> torch.Tensor:
        """[per-layer norms..., per-group norms..., total] as one device tensor."""
        # A layer without a gradient (frozen, unused) reads 0: the norm of an empty tensor.
        layer = norms([m.weight.grad if m.weight.grad is not None else m.weight.new_zeros(0)
                       for _, m in self._modules])
        sq = layer.square()
        group = torch.stack([sq[s].sum() for s in self._group_slices]).sqrt()
        return torch.cat([layer, group, sq.sum().sqrt().reshape(1)])

    # Lightning 2.6 (plugins/precision/precision.py `_after_closure`, amp.py `optimizer_step`):
    # this hook runs after backward, after the AMP scaler's `unscale_` and before
    # `_clip_gradients`, so the norms are the true, unclipped gradients.
    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        if not self.is_logging_step(trainer):
            return
        values = self.measure().tolist()  # the one host transfer
        n, g = len(self.layers), len(self.groups)
        layer, group, total = values[:n], values[n:n + g], values[-1]
        metrics = {f"grad_norm/{t}": v for t, v in zip(self._tb_layers, layer)}
        metrics.update({f"grad_norm_stage/{t}": v for t, v in zip(self._tb_groups, group)})
        metrics["grad_norm_total"] = total
        step = trainer.global_step
        self.log_metrics(trainer, metrics, step)
        self.latest = {"step": step, "layers": list(self.layers), "grad_norm": layer,
                       "stages": dict(zip(self.groups, group)), "total": total}
        self.history_steps.append(step)
        self.history.append(np.asarray(layer, dtype=np.float64))
        if len(self.history) > self.max_history:
            self.history_steps, self.history = self.history_steps[1::2], self.history[1::2]
