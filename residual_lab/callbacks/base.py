"""What every diagnostic callback shares: one interval, a summary for summary.json, and norms."""

from __future__ import annotations

import math
from typing import Any, Sequence

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn

from residual_lab.models.layer_names import blocks, compiled, network, sortable
from residual_lab.schema import PositiveInt


def norms(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """L2 norm of each tensor, as one 1-d tensor on their device (no host sync).

    One fused ``torch._foreach_norm`` call, the kernel ``torch.nn.utils.get_total_norm``
    uses. Sums run in float32 at least (bf16 tensors are not summed in bf16): relative error
    about 1e-7 on a weight tensor and 3e-5 on a 2M-element activation, far below what the
    log-scale figures show. A 0-element tensor has norm 0.
    """
    tensors = list(tensors)
    dtype = torch.promote_types(tensors[0].dtype, torch.float32)
    return torch.stack(torch._foreach_norm([t.detach() for t in tensors], 2, dtype=dtype))


def rms(x: torch.Tensor) -> torch.Tensor:
    """Root mean square of all elements of ``x`` (||x|| / sqrt(numel)), a 0-dim tensor on its
    device. Per element, so tensors of different sizes compare: 1 means the same size."""
    norm = torch.linalg.vector_norm(x.detach(), dtype=torch.promote_types(x.dtype, torch.float32))
    return norm / math.sqrt(max(1, x.numel()))


class IntervalCallback(L.Callback):
    """A diagnostic that measures only every ``every_n_steps`` optimizer steps.

    Between intervals a diagnostic must do no work at all (no hooks attached, no tensors
    kept, no host sync), so leaving diagnostics on costs almost nothing.

    Subclasses fill ``self.latest`` with per-layer values (plain Python floats, keyed by
    layer name in network order); :func:`residual_lab.run.train` writes it to
    ``summary.json`` under ``diagnostics.<summary_key>``.

    Args:
        every_n_steps: optimizer steps between measurements (``diagnostics.every_n_steps``).
    """

    summary_key: str = "diagnostic"

    def __init__(self, every_n_steps: PositiveInt = 50) -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.latest: dict[str, Any] = {}

    def is_logging_step(self, trainer: L.Trainer) -> bool:
        """True on the step whose update will make ``global_step`` a multiple of the interval.

        Called before the optimizer step (``global_step`` not yet incremented), so
        step k (1-based) measures when k % every_n_steps == 0, like Lightning's own
        ``log_every_n_steps``.
        """
        return (trainer.global_step + 1) % self.every_n_steps == 0

    @staticmethod
    def log_metrics(trainer: L.Trainer, metrics: dict[str, float], step: int) -> None:
        """Write ``metrics`` to every logger at ``step``.

        Straight to the loggers rather than through ``LightningModule.log``: Lightning
        flushes logged values only every ``trainer.log_every_n_steps``, which need not
        match this interval. Callers pass ``step = trainer.global_step`` as read before the
        optimizer step, the x value Lightning gives ``train/loss`` of the same batch.
        """
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)

    def summary(self) -> dict[str, Any]:
        """The latest measurement, for summary.json (empty if none was taken)."""
        return dict(self.latest)


class BlockHookCallback(IntervalCallback):
    """A diagnostic that hooks every block's forward: knows the blocks in network order and
    stands down on a ``torch.compile``'d net, whose forward ignores hooks added later."""

    def __init__(self, every_n_steps: PositiveInt = 50) -> None:
        super().__init__(every_n_steps)
        self.block_tags: list[str] = []
        self._handles: list = []  # the hooks attached for the current measuring step
        self._values: dict = {}   # what those hooks measured, until the step reads it

    def _remove_hooks(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._remove_hooks()  # nothing survives the step, even if backward was skipped
        self._values = {}

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._remove_hooks()
        self._values = {}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        net = network(pl_module)
        self._blocks = blocks(net)
        self.blocks = [tag for tag, _ in self._blocks]
        self.block_tags = sortable(self.blocks)  # TensorBoard's names, in network order
        self._enabled = not compiled(net)
        if not self._enabled:
            rank_zero_warn(f"{type(self).__name__}: the net is torch.compile'd (compile=true), which ignores "
                           "forward hooks added later; this diagnostic is off for the run.")
