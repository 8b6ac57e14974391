"""Gradient at every block input, dL/dx_l: does the learning signal survive the depth?"""

from __future__ import annotations

import lightning as L
import torch

from residual_lab.callbacks.base import BlockHookCallback, rms
from residual_lab.schema import PositiveInt


def loss_scale(trainer: L.Trainer) -> torch.Tensor | None:
    """The AMP loss scale as a device tensor (None without a grad scaler, e.g. fp32, bf16).

    Tensor hooks see gradients of the *scaled* loss; dividing by this recovers dL/dx.
    ``_get_scale_async`` returns the scale without a host sync (``get_scale`` would sync).
    """
    scaler = getattr(trainer.precision_plugin, "scaler", None)
    if scaler is None or not scaler.is_enabled():
        return None
    return scaler._get_scale_async()


class BlockInputGradients(BlockHookCallback):
    """RMS of dL/dx_l at the input x_l of every block, and the ratio first / last block.

    For a residual net dL/dx_l = dL/dx_L (1 + d/dx_l sum_i F_i) (He et al. 2016,
    "Identity Mappings in Deep Residual Networks", eq. 5): the gradient reaches every
    block at the same order of magnitude. Plain nets without normalization let it
    vanish or explode with depth. Logs ``block_grad/<block>`` (e.g. ``block_grad/1_s1.b00``)
    and ``block_grad_ratio/first_over_last``.

    Unit: the root mean square per element, ||dL/dx_l|| / sqrt(numel), over the whole batch,
    of the gradient of the mean batch loss. Per element because block inputs differ in size
    (16x32x32 in stage 1, 64x8x8 in stage 3): the plain L2 norm would read a perfectly flat
    gradient as first/last = 2; the RMS reads 1. summary.json keeps them as ``grad_rms``
    (records written before 2026-12-03 call it ``grad_norm``; :attr:`residual_lab.results.Run.diagnostics`
    reads both).

    Cost: on a logging step a forward pre-hook per block registers a tensor hook on the
    block input; the pre-hooks are removed right after the forward (``on_before_backward``)
    and the tensor hooks die with the graph. On other steps nothing is attached. Each hook
    leaves a 0-dim tensor on the device; all cross to the host in one transfer.
    """

    summary_key = "block_grad"

    def __init__(self, every_n_steps: PositiveInt = 50) -> None:
        super().__init__(every_n_steps)
        self.blocks: list[str] = []

    def _pre_hook(self, index: int):
        def hook(module, args):
            x = args[0]
            if x.requires_grad:
                x.register_hook(lambda g: self._values.__setitem__(index, rms(g)))
        return hook

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._enabled and self.is_logging_step(trainer):
            self._handles = [blk.register_forward_pre_hook(self._pre_hook(i))
                             for i, (_, blk) in enumerate(self._blocks)]

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        self._remove_hooks()  # forward is done; the tensor hooks are on the graph now

    def measure(self, trainer: L.Trainer) -> torch.Tensor | None:
        """[dL/dx_l RMS..., first/last] as one device tensor, or None if not all fired."""
        if len(self._values) != len(self._blocks):
            return None
        norms = torch.stack([self._values[i] for i in range(len(self._blocks))])
        scale = loss_scale(trainer)
        if scale is not None:
            norms = norms / scale
        return torch.cat([norms, (norms[0] / norms[-1]).reshape(1)])

    # After backward and AMP unscaling, before clipping and the step (Lightning 2.6
    # precision plugins' `_after_closure`); the hooks have fired by now.
    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        if not self._values:
            return
        values = self.measure(trainer)
        self._values = {}
        if values is None:
            return
        *norms, ratio = values.tolist()  # the one host transfer
        step = trainer.global_step
        metrics = {f"block_grad/{t}": v for t, v in zip(self.block_tags, norms)}
        metrics["block_grad_ratio/first_over_last"] = ratio
        self.log_metrics(trainer, metrics, step)
        self.latest = {"step": step, "blocks": list(self.blocks), "grad_rms": norms, "first_over_last": ratio}
