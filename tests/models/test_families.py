"""Every model family: exact sizes, forward/backward of every option, plain twins
without any skip, stable diagnostic tags, and a 1-step run that writes summary.json."""

from __future__ import annotations

import functools
import json

import pytest
import torch
from hydra.utils import instantiate

from residual_lab.models.layer_names import blocks, weighted_layers
from residual_lab.run import train
from tests.helpers import ONE_STEP, compose_config

#: Small nets of each family: (model, top-level overrides).
TINY = {
    "resnet18": ("depth=10", "width=8"),
    "mlp": ("depth=6", "width=16"),
    "vit": ("depth=2", "width=16", "model.heads=2"),
    "lstm": ("depth=2", "width=8"),
}
#: Every (family, shortcut, block, other model options) a user can choose.
OPTIONS = (
    [("resnet18", s, "basic", {}) for s in ("none", "identity", "projection", "full_projection")]
    + [("mlp", s, "basic", {"norm": n}) for s in ("none", "identity") for n in ("batch", "layer", "none")]
    + [("vit", s, b, {"pool": p}) for s in ("none", "identity") for b in ("preln", "postln") for p in ("cls", "mean")]
    + [("lstm", s, "basic", {}) for s in ("none", "identity")]
)


@functools.cache
def model_node(family: str):
    """``cfg.model`` of the real config with ``model=<family>`` and TINY (composed once)."""
    return compose_config(f"model={family}", *TINY[family], output_dir="unused").model


def build(family: str, **options) -> torch.nn.Module:
    """The TINY net of ``family`` with ``options`` (shortcut, block, norm, pool...) replaced."""
    return instantiate(model_node(family), **options)


def images(n: int = 4, seed: int = 0) -> torch.Tensor:
    """NCHW images in channels_last memory, as ImageClassifier feeds them."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, generator=g).contiguous(memory_format=torch.channels_last)


def test_resnet18_has_exactly_11_173_962_parameters_and_its_plain_twin_lacks_only_the_projections(tmp_path):
    cfg = compose_config("model=resnet18", output_dir=tmp_path)
    assert (cfg.depth, cfg.shortcut, cfg.width, cfg.run_name) == (18, "projection", 64, "resnet18")
    with torch.device("meta"):  # shapes only: no memory, no init
        count = sum(p.numel() for p in instantiate(cfg.model).parameters())
        plain = sum(p.numel() for p in instantiate(cfg.model, shortcut="none").parameters())
    assert count == 11_173_962  # kuangliu/pytorch-cifar's ResNet18()
    # Three 1x1 projections + BN: 64->128, 128->256, 256->512 (He et al. 2015 eq. 2).
    projections = sum(c * 2 * c + 2 * 2 * c for c in (64, 128, 256))
    assert plain == 11_173_962 - projections == 11_000_138


@pytest.mark.parametrize("family, name, plain", [
    ("resnet18", "resnet18", "plain-resnet18"), ("mlp", "mlp-16-identity", "plain-mlp-16"),
    ("vit", "vit-6-preln", "plain-vit-6-preln"), ("lstm", "lstm-4-identity", "plain-lstm-4"),
    ("cifar_resnet", "resnet-20-identity", "plain-20")])
def test_each_family_names_its_runs_and_its_yaml_defaults_add_no_suffix(tmp_path, family, name, plain):
    cfg = compose_config(f"model={family}", output_dir=tmp_path)
    assert cfg.run_name == name
    cfg.shortcut = "none"
    assert cfg.run_name == plain


@pytest.mark.parametrize("family, shortcut, block, options", OPTIONS,
                         ids=["-".join([f, s, b, *o.values()]) for f, s, b, o in OPTIONS])
def test_forward_backward_of_every_family_shortcut_and_block(family, shortcut, block, options):
    torch.manual_seed(0)
    net = build(family, shortcut=shortcut, block=block, **options)
    out = net(images())
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    out.square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    named = list(net.named_blocks())
    assert named and all((blk.shortcut is None) == (shortcut == "none") for _, blk in named)


@pytest.mark.parametrize("family, block", [("resnet18", "basic"), ("mlp", "basic"), ("vit", "preln"),
                                           ("vit", "postln"), ("lstm", "basic")])
def test_plain_twin_has_no_skip_anywhere(family, block):
    """With every block's branch F forced to zero, the plain net's output no longer depends on
    its input (every path goes through some F); the residual net's still does. (The ViT pools
    by mean here: with F zero a class token never meets the image, residual or not.)"""
    options = {"pool": "mean"} if family == "vit" else {}
    for shortcut, depends in (("none", False), ("identity", True)):
        torch.manual_seed(0)
        net = build(family, shortcut=shortcut, block=block, **options).eval()
        for _, blk in net.named_blocks():
            blk.residual.register_forward_hook(lambda m, args, out: torch.zeros_like(out))
        with torch.no_grad():
            a, b = net(images(seed=1)), net(images(seed=2))
        assert (not torch.allclose(a, b)) == depends, shortcut


#: Tags each diagnostic logs for the TINY nets, in network order.
LAYERS = {
    "resnet18": ["stem.conv"] + [f"s{s}.b0.{c}" for s in (1, 2, 3, 4) for c in ("conv1", "conv2")
                                 + (("shortcut.conv",) if s > 1 else ())] + ["head.fc"],
    "mlp": ["stem.fc"] + [f"b{b}.fc{i}" for b in (0, 1) for i in (1, 2)] + ["head.fc"],
    "vit": ["stem.proj"] + [f"b{b}.{t}" for b in (0, 1) for t in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")]
           + ["head.fc"],
    "lstm": ["stem.proj"] + [f"b{b}.{t}" for b in (0, 1) for t in ("ih", "hh")] + ["head.fc"],
}
BLOCKS = {
    "resnet18": [f"s{s}.b0" for s in (1, 2, 3, 4)],
    "mlp": ["b0", "b1"],
    "vit": [f"b{b}.{u}" for b in (0, 1) for u in ("attn", "mlp")],
    "lstm": ["b0", "b1"],
}


@pytest.mark.parametrize("family", sorted(TINY))
def test_one_step_run_writes_summary_with_the_familys_tags(make_cfg, tmp_path, family):
    summary = train(make_cfg(f"model={family}", *TINY[family], *ONE_STEP))
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["status"] == summary["status"] == "completed" and on_disk["steps"] == 1
    assert on_disk["run_name"] == {"resnet18": "resnet10-w8", "mlp": "mlp-6-identity-w16",
                                   "vit": "vit-2-preln-w16", "lstm": "lstm-2-identity-w8"}[family]
    diag = on_disk["diagnostics"]
    assert diag["grad_norm"]["layers"] == diag["update_ratio"]["layers"] == LAYERS[family]
    assert sorted(diag["grad_norm"]["stages"]) == sorted({t.split(".")[0] for t in LAYERS[family]})
    assert diag["block_grad"]["blocks"] == diag["block_rms"]["blocks"] == BLOCKS[family]
    assert all(v > 0 for v in diag["grad_norm"]["grad_norm"] + diag["block_grad"]["grad_rms"])
    if family == "vit":
        assert diag["token_stats"]["blocks"] == BLOCKS["vit"]
    else:  # nothing to measure: no empty entry
        assert "token_stats" not in diag


@pytest.mark.parametrize("preset, model, sweep", [
    ("seed_resnet18", "ResNet18", {"shortcut": "none,projection"}),
    ("depth_mlp", "MLP", {"depth": "4,8,16,32,64", "shortcut": "none,identity", "norm": "batch,none"}),
    ("depth_vit", "VisionTransformer", {"depth": "2,4,8,12,24", "block": "preln,postln", "shortcut": "none,identity"}),
    ("depth_lstm", "LSTMStack", {"depth": "1,2,4,6,8,12", "shortcut": "none,identity"}),
])
def test_presets_sweep_plain_and_residual_with_adam_and_no_warmup(preset, model, sweep):
    from hydra import compose, initialize_config_dir

    from residual_lab.run import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={preset}", "budget=cpu"], return_hydra_config=True)
    assert dict(cfg.hydra.sweeper.params) == sweep
    assert cfg.model._target_ == f"residual_lab.models.{model}"
    assert (cfg.optimizer._target_, cfg.optimizer.lr, cfg.scheduler.warmup_steps) == ("torch.optim.Adam", 1e-3, 0)
    assert cfg.trainer.max_steps == 500  # the budget sets the length
    if preset == "seed_resnet18":
        assert (cfg.model.dropout, cfg.data.pad, cfg.data.flip) == (0.5, 4, True)


def test_lstm_layer_computes_exactly_what_nn_lstm_computes():
    from residual_lab.models.lstm import LSTMLayer

    torch.manual_seed(0)
    ref, layer = torch.nn.LSTM(8, 8, batch_first=True), LSTMLayer(8)
    with torch.no_grad():
        for mine, theirs in ((layer.ih, "ih_l0"), (layer.hh, "hh_l0")):
            mine.weight.copy_(getattr(ref, f"weight_{theirs}"))
            mine.bias.copy_(getattr(ref, f"bias_{theirs}"))
    x = torch.randn(3, 32, 8)
    torch.testing.assert_close(layer(x), ref(x)[0], rtol=1e-5, atol=1e-6)
    assert sum(p.numel() for p in layer.parameters()) == sum(p.numel() for p in ref.parameters())
