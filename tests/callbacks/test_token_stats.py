"""TokenStats: Transformer-only diagnostics, equal to a hand computation, a no-op elsewhere."""

from __future__ import annotations

import copy

import lightning as L
import torch

from residual_lab.callbacks.token_stats import TokenStats, rank_collapse
from tests import helpers
from tests.helpers import block_hooks

VIT = ("model=vit", "depth=2", "width=16", "model.heads=2", "data.batch_size=16")
QUICK = ("~callbacks.model_checkpoint", "~callbacks.last_checkpoint", "~callbacks.lr_monitor",
         "~callbacks.diagnostic_figures", "~logger.tensorboard", "+trainer.limit_val_batches=0",
         "data.source.num_train=128", "data.val_size=32", "data.source.num_test=32")
BLOCKS = ["b0.attn", "b0.mlp", "b1.attn", "b1.mlp"]


class CaptureFirst(L.Callback):
    """The net's state and the batch at the first step, before its forward; hooks on the blocks."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == 0:
            self.state = copy.deepcopy(pl_module.net.state_dict())
            self.batch = [t.clone() for t in batch]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.hooks_after = block_hooks(pl_module.net)


class CountHooks(L.Callback):
    """Hooks on the blocks right after every other callback's batch start."""

    def __init__(self) -> None:
        self.counts: list[int] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.counts.append(block_hooks(pl_module.net))


def fit(cfg, *extra: L.Callback, first: L.Callback | None = None):
    """:func:`tests.helpers.fit`, returning the TokenStats callback in place of the trainer."""
    module, trainer, logger = helpers.fit(cfg, *extra, first=first)
    return module, next(c for c in trainer.callbacks if isinstance(c, TokenStats)), logger


def test_rank_collapse_is_0_for_identical_tokens_and_1_for_zero_mean_tokens():
    same = torch.randn(3, 1, 8).expand(3, 5, 8)
    assert rank_collapse(same).item() < 1e-6
    centred = torch.randn(3, 5, 8)
    assert abs(rank_collapse(centred - centred.mean(1, keepdim=True)).item() - 1) < 1e-6


def test_vit_is_measured_at_init_and_every_n_steps_equal_to_a_hand_computation(make_cfg):
    capture, counter = CaptureFirst(), CountHooks()
    module, stats, logger = fit(make_cfg(*VIT, "trainer.max_steps=3", "diagnostics.every_n_steps=2", *QUICK,
                                         "~callbacks.block_rms", "~callbacks.block_grad"),  # only its own hooks
                                counter, first=capture)
    records = [(s, {k: v for k, v in m.items() if k.startswith("token/")}) for s, m in logger.records]
    records = [(s, m) for s, m in records if m]
    # At init (step 0) and when step k (1-based) % 2 == 0, logged at x = k - 1 (like train/loss).
    assert [s for s, _ in records] == [0, 1]
    assert list(records[0][1]) == [f"token/{k}/1_{t.replace('b', 'b0', 1)}" for k in ("var_ratio", "rank_collapse")
                                   for t in BLOCKS]  # TensorBoard's sortable form: token/var_ratio/1_b00.attn
    assert counter.counts == [3 * 4, 3 * 4, 0] and capture.hooks_after == 0  # 3 hooks per block, only then
    assert stats.summary()["initial"]["step"] == 0 and stats.summary()["step"] == 1

    net = copy.deepcopy(module.net)
    net.load_state_dict(capture.state)
    net.train()
    images, _ = capture.batch
    x = net.stem(images.contiguous(memory_format=module.memory_format))
    ratios, collapse = [], []
    with torch.no_grad():
        for layer in net.blocks:
            for unit in (layer.attn, layer.mlp):
                f = unit.residual(x)
                ratios.append((f.var() / (x + f).var()).item())
                x = unit(x)
                tokens = x - x.mean(1, keepdim=True)
                collapse.append((tokens.flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1)).mean().item())
    got = stats.initial
    assert torch.allclose(torch.tensor(got["var_ratio"]), torch.tensor(ratios), rtol=1e-4)
    assert torch.allclose(torch.tensor(got["rank_collapse"]), torch.tensor(collapse), rtol=1e-4)


def test_a_plain_vit_reads_var_ratio_1(make_cfg):
    _, stats, _ = fit(make_cfg(*VIT, "shortcut=none", "block=postln", "trainer.max_steps=1",
                               "diagnostics.every_n_steps=5", *QUICK))
    assert stats.initial["blocks"] == BLOCKS and stats.initial["var_ratio"] == [1.0] * 4


def test_a_no_op_for_nets_without_tokens(make_cfg):
    counter = CountHooks()
    _, stats, logger = fit(make_cfg("depth=8", "trainer.max_steps=2", "diagnostics.every_n_steps=1", *QUICK,
                                    "~callbacks.block_rms", "~callbacks.block_grad"), counter)
    assert counter.counts == [0, 0] and stats.blocks == [] and stats.summary() == {}
    assert not any(k.startswith("token/") for _, m in logger.records for k in m)
