"""RMS per block during training: how large x, F(x) and the block output are, and their ratio.

Named for what it measures, not "signal": ``analyze signal`` is Brock et al. 2021's signal
propagation plot (channel mean and variance at init, a probe); this is a callback's per-block RMS
along the run. Records written before 2026-12-03 keep it under ``diagnostics.signal`` (read under
the new name: ``residual_lab.results.loading.RENAMED_DIAGNOSTICS``)."""

from __future__ import annotations

import lightning as L
import torch

from residual_lab.callbacks.base import BlockHookCallback, rms
from residual_lab.schema import PositiveInt


class BlockRMS(BlockHookCallback):
    """Per block: RMS of its input x, of its residual-branch output F(x), of its output.

    Logs ``block_rms/rms_in/<block>``, ``block_rms/rms_residual/<block>``, ``block_rms/rms_out/<block>``
    and ``block_rms/ratio/<block>`` = RMS(F(x)) / RMS(x). F(x) is the branch ``blk.residual``
    before a SkipInit or ReZero gate, as Brock et al. 2021 measure it (whatever the gate's
    value). For blocks that keep the shape the ratio equals ||F(x)|| / ||x||; for the
    downsampling first block of a stage (half the elements) it is the per-element version,
    which stays comparable across stages. A
    ratio << 1 means the block barely changes the signal (near identity); for plain
    blocks F(x) is the whole output. Units: activations as the network sees them
    (after the stem's normalization, if any).

    Cost: hooks are attached in ``on_train_batch_start`` of a logging step and removed
    in ``on_before_backward``; each computes a 0-dim RMS on the device at once, so no
    activation is kept (plain blocks apply an in-place ReLU to F(x) right after).
    """

    summary_key = "block_rms"
    KINDS = ("rms_in", "rms_residual", "rms_out")

    def __init__(self, every_n_steps: PositiveInt = 50) -> None:
        super().__init__(every_n_steps)
        self.blocks: list[str] = []
        self._values: dict[tuple[str, int], torch.Tensor] = {}

    def _store(self, kind: str, index: int, tensor: torch.Tensor) -> None:
        self._values[kind, index] = rms(tensor)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not (self._enabled and self.is_logging_step(trainer)):
            return
        for i, (_, blk) in enumerate(self._blocks):
            self._handles += [
                blk.register_forward_pre_hook(lambda m, args, i=i: self._store("rms_in", i, args[0])),
                blk.residual.register_forward_hook(lambda m, args, out, i=i: self._store("rms_residual", i, out)),
                blk.register_forward_hook(lambda m, args, out, i=i: self._store("rms_out", i, out)),
            ]

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss) -> None:
        self._remove_hooks()
        if not self._values:
            return
        n = len(self._blocks)
        if len(self._values) != 3 * n:
            self._values = {}
            return
        table = torch.stack([torch.stack([self._values[k, i] for i in range(n)]) for k in self.KINDS])
        self._values = {}
        table = torch.cat([table, (table[1] / table[0]).unsqueeze(0)])
        rows = dict(zip((*self.KINDS, "ratio"), table.tolist()))  # the one host transfer
        step = trainer.global_step
        metrics = {f"block_rms/{k}/{t}": v for k, row in rows.items() for t, v in zip(self.block_tags, row)}
        self.log_metrics(trainer, metrics, step)
        self.latest = {"step": step, "blocks": list(self.blocks), **rows}

