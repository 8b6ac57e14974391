"""Diagnostic callbacks on synthetic data: exact tags, exact steps, values equal to autograd."""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from residual_lab.callbacks import (BlockInputGradients, BlockRMS, GradNorms, ResourceMonitor,
                                    UpdateRatio)
from residual_lab.models.layer_names import blocks, sortable, weighted_layers
from residual_lab.run import train
from tests.helpers import RESNET20_BLOCKS, RESNET20_LAYERS, block_hooks, fit

#: Tag prefixes of each switchable diagnostic (its name in conf/callbacks/default.yaml).
PREFIXES = {
    "grad_norm": ("grad_norm/", "grad_norm_stage/", "grad_norm_total"),
    "block_grad": ("block_grad/", "block_grad_ratio/"),
    "block_rms": ("block_rms/",),
    "update_ratio": ("update_ratio/",),
    "resources": ("perf/rss_mb",),
}
ALL_PREFIXES = tuple(p for ps in PREFIXES.values() for p in ps)


class HookProbe(L.Callback):
    """Counts hooks on the blocks at batch start (after the diagnostics attached theirs) and end."""

    def __init__(self) -> None:
        self.at_start: dict[int, int] = {}
        self.at_end: dict[int, int] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.at_start[trainer.global_step] = block_hooks(pl_module.net)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.at_end[trainer.global_step] = block_hooks(pl_module.net)


QUICK = ("~callbacks.model_checkpoint", "~callbacks.lr_monitor", "~logger.tensorboard")


def test_resnet20_tags_in_network_order_only_on_logging_steps(make_cfg):
    probe = HookProbe()
    _, trainer, logger = fit(make_cfg("depth=20", "trainer.max_steps=5", "diagnostics.every_n_steps=2", *QUICK),
                             probe)
    records = logger.tagged(ALL_PREFIXES)
    # Batch k (1-based) is measured when k % 2 == 0 and logged at x = k - 1, like Lightning's train/loss.
    assert sorted({s for s, _ in records}) == [1, 3]
    for step in (1, 3):
        grad = next(m for s, m in records if s == step and "grad_norm_total" in m)
        # TensorBoard's sortable tags (1_s1.b00.conv1): name order is network order.
        assert list(grad) == ([f"grad_norm/{t}" for t in sortable(RESNET20_LAYERS)]
                              + [f"grad_norm_stage/{g}" for g in ("0_stem", "1_s1", "2_s2", "3_s3", "9_head")]
                              + ["grad_norm_total"])
        assert list(grad)[:-6] == sorted(list(grad)[:-6]) and list(grad)[1] == "grad_norm/1_s1.b00.conv1"
        block = next(m for s, m in records if s == step and "block_grad_ratio/first_over_last" in m)
        assert list(block) == ([f"block_grad/{t}" for t in sortable(RESNET20_BLOCKS)]
                               + ["block_grad_ratio/first_over_last"])
        block_rms = next(m for s, m in records if s == step and any(k.startswith("block_rms/") for k in m))
        assert list(block_rms) == [f"block_rms/{k}/{t}" for k in ("rms_in", "rms_residual", "rms_out", "ratio")
                                for t in sortable(RESNET20_BLOCKS)]
        update = next(m for s, m in records if s == step and any(k.startswith("update_ratio/") for k in m))
        assert list(update) == [f"update_ratio/{t}" for t in sortable(RESNET20_LAYERS)]
        assert any(s == step and "perf/rss_mb" in m for s, m in records)
    # Hooks exist only inside logging steps: block_grad 1 pre-hook, block_rms 1 pre + 1 post + 1 on F(x), per block.
    assert probe.at_start == {0: 0, 1: 4 * 9, 2: 0, 3: 4 * 9, 4: 0}
    assert set(probe.at_end.values()) == {0}
    update = next(c for c in trainer.callbacks if isinstance(c, UpdateRatio))
    assert update._before is None


@pytest.mark.parametrize("name", sorted(PREFIXES))
def test_switching_a_diagnostic_off_removes_its_tags(make_cfg, name):
    _, trainer, logger = fit(make_cfg("trainer.max_steps=2", "diagnostics.every_n_steps=1", *QUICK,
                                      f"~callbacks.{name}"))
    tags = {k for _, m in logger.tagged(ALL_PREFIXES) for k in m}
    for other, prefixes in PREFIXES.items():
        present = any(t.startswith(prefixes) for t in tags)
        assert present == (other != name), other


class CaptureStep(L.Callback):
    """At batch index ``at``: the net's state and the batch before the forward, weights after the step."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.at:
            self.state = copy.deepcopy(pl_module.net.state_dict())
            self.batch = [t.clone() for t in batch]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.at + 1:
            self.after = {t: m.weight.detach().clone() for t, m in weighted_layers(pl_module.net)}


def rel_err(got, want) -> float:
    got, want = torch.tensor(got, dtype=torch.float64), torch.as_tensor(want, dtype=torch.float64)
    return ((got - want).abs() / want.abs()).max().item()


def test_values_equal_a_hand_computed_autograd_reference(make_cfg):
    capture = CaptureStep(at=1)
    module, trainer, _ = fit(make_cfg("depth=20", "trainer.max_steps=2", "diagnostics.every_n_steps=2", *QUICK),
                             first=capture)
    net = copy.deepcopy(module.net)
    net.load_state_dict(capture.state)
    net.train()
    images, labels = capture.batch
    # The same forward as ImageClassifier.forward, split at every block input x_l.
    x = net.stem(images.contiguous(memory_format=module.memory_format))
    xs, residuals, outs = [], [], []
    for _, blk in blocks(net):
        xs.append(x)
        residuals.append(blk.residual(x).detach().clone())  # F(x) before the in-place ReLU of plain blocks
        x = blk(x)
        outs.append(x)
    loss = F.cross_entropy(net.head(x), labels)
    layers = weighted_layers(net)
    grads = torch.autograd.grad(loss, xs + [m.weight for _, m in layers])
    dx = [g.double().square().mean().sqrt() for g in grads[: len(xs)]]  # RMS, per element
    dw = torch.stack([g.double().norm() for g in grads[len(xs):]])

    by_type = {type(c): c.latest for c in trainer.callbacks if hasattr(c, "latest")}
    grad = by_type[GradNorms]
    assert grad["step"] == 1 and grad["layers"] == RESNET20_LAYERS
    assert rel_err(grad["grad_norm"], dw) < 1e-5
    assert rel_err(grad["total"], dw.square().sum().sqrt()) < 1e-5
    assert rel_err(grad["stages"]["s2"], dw[7:13].square().sum().sqrt()) < 1e-5
    assert rel_err(grad["stages"]["head"], dw[19]) < 1e-5

    # Activation norms are float32 sums over ~1M elements (64x16x32x32): ~2e-5 relative, a
    # rounding no log-scale figure shows; weight norms (<= 37k elements) stay at 1e-5.
    tol = 1e-4
    block = by_type[BlockInputGradients]
    assert block["blocks"] == RESNET20_BLOCKS
    assert rel_err(block["grad_rms"], dx) < tol
    assert rel_err(block["first_over_last"], dx[0] / dx[-1]) < tol

    def rms(t):
        return t.double().square().mean().sqrt()

    signal = by_type[BlockRMS]
    assert rel_err(signal["rms_in"], [rms(t) for t in xs]) < tol
    assert rel_err(signal["rms_residual"], [rms(t) for t in residuals]) < tol
    assert rel_err(signal["rms_out"], [rms(t) for t in outs]) < tol
    assert rel_err(signal["ratio"], [rms(f) / rms(t) for f, t in zip(residuals, xs)]) < tol

    update = by_type[UpdateRatio]
    names = [n for n, m in net.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    before = [capture.state[f"{n}.weight"].double() for n in names]
    want = [(capture.after[t].double() - b).norm() / b.norm() for t, b in zip(RESNET20_LAYERS, before)]
    assert rel_err(update["update_ratio"], want) < 1e-5
    assert by_type[ResourceMonitor]["peak_rss_mb"] > 0


def test_block_grad_reads_a_flat_per_element_gradient_as_ratio_one():
    """dL/dx = 0.5 at every element of a stage-1-sized (16x32x32) and a stage-3-sized (64x8x8)
    block input: the gradient is flat, so first/last must be 1 (an L2 norm would read 2)."""
    first, last = torch.nn.Identity(), torch.nn.Identity()
    callback = BlockInputGradients(every_n_steps=1)
    callback._blocks, callback.blocks, callback._enabled = [("s1.b0", first), ("s3.b0", last)], ["s1.b0", "s3.b0"], True
    trainer = SimpleNamespace(global_step=0, loggers=[], precision_plugin=None)
    callback.on_train_batch_start(trainer, None, None, 0)
    signs = [torch.randn(shape).sign() for shape in ((8, 16, 32, 32), (8, 64, 8, 8))]
    x0, x1 = (torch.zeros_like(s, requires_grad=True) for s in signs)
    loss = 0.5 * ((first(x0) * signs[0]).sum() + (last(x1) * signs[1]).sum())
    callback.on_before_backward(trainer, None, loss)
    loss.backward()
    callback.on_before_optimizer_step(trainer, None, None)
    assert callback.latest["first_over_last"] == 1.0
    assert callback.latest["grad_rms"] == [0.5, 0.5]  # RMS, the unit of block_grad/<block>


def test_summary_json_and_tensorboard_end_to_end(make_cfg, tmp_path, monkeypatch):
    import matplotlib.image
    from matplotlib.figure import Figure
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    draws = []
    figure_draw = Figure.draw
    monkeypatch.setattr(Figure, "draw", lambda self, renderer: draws.append(1) or figure_draw(self, renderer))
    train(make_cfg("trainer.max_steps=6", "diagnostics.every_n_steps=3", figures=True))
    summary = json.loads((tmp_path / "summary.json").read_text())["diagnostics"]
    assert "token_stats" not in summary  # a token-model diagnostic measures nothing in a ResNet: no empty entry
    assert set(summary) == {"grad_norm", "block_grad", "block_rms", "update_ratio", "resources"}
    resnet8 = ["stem.conv", "s1.b0.conv1", "s1.b0.conv2", "s2.b0.conv1", "s2.b0.conv2",
               "s3.b0.conv1", "s3.b0.conv2", "head.fc"]
    assert summary["grad_norm"]["layers"] == summary["update_ratio"]["layers"] == resnet8
    assert summary["block_grad"]["blocks"] == summary["block_rms"]["blocks"] == ["s1.b0", "s2.b0", "s3.b0"]
    assert [len(summary["grad_norm"]["grad_norm"]), len(summary["update_ratio"]["update_ratio"]),
            len(summary["block_grad"]["grad_rms"]), len(summary["block_rms"]["ratio"])] == [8, 8, 3, 3]
    assert {v["step"] for v in summary.values()} == {5}

    acc = EventAccumulator(str(tmp_path / "tensorboard" / "resnet-8-identity")).Reload()
    for tag in ("grad_norm/2_s2.b00.conv1", "grad_norm_total", "block_grad_ratio/first_over_last",
                "block_rms/ratio/3_s3.b00", "update_ratio/9_head.fc", "perf/rss_mb"):
        assert [e.step for e in acc.Scalars(tag)] == [2, 5], tag
    assert set(acc.Tags()["images"]) == {"diagnostics/grad_norm_heatmap", "diagnostics/gradient_profile"}
    # each figure is drawn once per validation: the PNG is the TensorBoard image, not a second drawing
    images = acc.Images("diagnostics/gradient_profile")
    assert len(draws) == 2 * len(images) == 2 * len(acc.Images("diagnostics/grad_norm_heatmap"))
    png = matplotlib.image.imread(tmp_path / "diagnostics" / "gradient_profile.png")
    assert png.shape[:2] == (images[-1].height, images[-1].width)
    assert sorted(p.name for p in (tmp_path / "diagnostics").iterdir()) == ["grad_norm_heatmap.png",
                                                                            "gradient_profile.png"]
