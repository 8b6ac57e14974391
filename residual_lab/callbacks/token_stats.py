"""Transformer diagnostics per block: how much the branch adds, and rank collapse of the tokens."""

from __future__ import annotations

import lightning as L
import torch

from residual_lab.callbacks.base import BlockHookCallback
from residual_lab.models.layer_names import network
from residual_lab.schema import PositiveInt


def var_ratio(branch: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """Var[F(x)] / Var[x + F(x)] over all elements, a 0-dim float32 tensor on the device."""
    return branch.detach().float().var() / total.detach().float().var()


def rank_collapse(tokens: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ||X - 1 x^T||_F / ||X||_F for each (tokens x features) matrix X.

    ``x`` is the mean token, the x that minimises the Frobenius residual (Dong et al. 2021,
    "Attention is not all you need: pure attention loses rank doubly exponentially with
    depth", sec. 2.2, measure it in a composite l1/l-inf norm; Frobenius is the common
    variant). 0: every token the same (rank one); about 1: tokens as diverse as they are large.
    """
    x = tokens.detach().float()
    residual = torch.linalg.matrix_norm(x - x.mean(1, keepdim=True))
    return (residual / torch.linalg.matrix_norm(x).clamp_min(torch.finfo(torch.float32).tiny)).mean()


class TokenStats(BlockHookCallback):
    """Per block of a token model: Var[F(x)] / Var[x + F(x)] and the rank-collapse measure.

    Logs ``token/var_ratio/<block>``: the share of the branch in the sum a residual block
    forms (Liu et al. 2020, "Understanding the Difficulty of Training Transformers", sec. 4:
    post-LN blocks' sums are dominated by the branch, which amplifies parameter updates);
    1 for plain blocks, whose "sum" is F(x) alone. And ``token/rank_collapse/<block>``:
    :func:`rank_collapse` of the block's output token matrix (Dong et al. 2021: without
    skips it falls towards 0 with depth). Measured on the first batch (at init) and every
    ``every_n_steps`` steps; summary.json keeps the latest and the initial one.

    A no-op for nets whose blocks carry no (batch, tokens, features) matrix: only nets
    with a true class attribute ``tokens`` (:class:`~residual_lab.models.VisionTransformer`)
    are measured, so it is registered for every family.

    Cost: on a measuring step, per block, a forward pre-hook keeps a reference to x and two
    forward hooks reduce F(x) and the output to 0-dim device tensors at once; all cross to
    the host in one transfer, and the hooks are removed before backward.
    """

    summary_key = "token_stats"
    KINDS = ("var_ratio", "rank_collapse")

    def __init__(self, every_n_steps: PositiveInt = 50) -> None:
        super().__init__(every_n_steps)
        self.blocks: list[str] = []
        self.initial: dict = {}
        self._enabled = False
        self._inputs: dict[int, torch.Tensor] = {}
        self._values: dict[tuple[str, int], torch.Tensor] = {}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if getattr(network(pl_module), "tokens", False):
            super().on_fit_start(trainer, pl_module)
        else:
            self._enabled, self._blocks, self.blocks, self.block_tags = False, [], [], []

    def _residual_hook(self, index: int, shortcut):
        def hook(module, args, out):
            x = self._inputs.pop(index, None)
            if x is not None:
                self._values["var_ratio", index] = var_ratio(out, out if shortcut is None else out + shortcut(x))
        return hook

    def _output_hook(self, index: int):
        def hook(module, args, out):
            if out.dim() == 3:
                self._values["rank_collapse", index] = rank_collapse(out)
        return hook

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not (self._enabled and (trainer.global_step == 0 or self.is_logging_step(trainer))):
            return
        for i, (_, blk) in enumerate(self._blocks):
            self._handles += [
                blk.register_forward_pre_hook(lambda m, args, i=i: self._inputs.__setitem__(i, args[0])),
                blk.residual.register_forward_hook(self._residual_hook(i, blk.shortcut)),
                blk.register_forward_hook(self._output_hook(i)),
            ]

    def _remove_hooks(self) -> None:
        super()._remove_hooks()
        self._inputs = {}

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss) -> None:
        self._remove_hooks()
        if not self._values:
            return
        values, self._values = self._values, {}
        n = len(self._blocks)
        if len(values) != 2 * n:
            return
        with torch.no_grad():
            table = torch.stack([torch.stack([values[k, i] for i in range(n)]) for k in self.KINDS])
        rows = dict(zip(self.KINDS, table.tolist()))  # the one host transfer
        step = trainer.global_step
        self.log_metrics(trainer, {f"token/{k}/{t}": v for k, row in rows.items()
                                   for t, v in zip(self.block_tags, row)},
                         step)
        self.latest = {"step": step, "blocks": list(self.blocks), **rows}
        if not self.initial:
            self.initial = dict(self.latest)


    def summary(self) -> dict:
        """The latest measurement and, under ``initial``, the first (at init); empty if none."""
        return {**self.latest, "initial": self.initial} if self.latest else {}
