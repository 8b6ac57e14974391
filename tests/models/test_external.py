"""model=external: anyone's factory, as written or as its plain twin, trained and diagnosed."""

from __future__ import annotations

import json

import pytest
import torch
from hydra.utils import instantiate
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

from residual_lab.errors import UserFacingError
from residual_lab.models.external import BlockView, external_net, named_blocks
from residual_lab.models.layer_names import blocks
from residual_lab.naming import external_run_name
from residual_lab.run import train
from tests.helpers import ONE_STEP, compose_config


def tiny_torchvision_resnet(num_classes: int = 10) -> nn.Module:
    """torchvision's ResNet class with one BasicBlock per stage: a factory by import path."""
    return ResNet(BasicBlock, [1, 1, 1, 1], num_classes=num_classes)


FACTORY = f"{__name__}.tiny_torchvision_resnet"
STAGE_BLOCKS = [f"layer{i}.0" for i in range(1, 5)]
MAIN_LAYERS = ["conv1"] + [f"layer{i}.0.conv{c}" for i in range(1, 5) for c in (1, 2)]


@pytest.mark.parametrize("shortcut", ["identity", "none"])
def test_one_step_run_writes_summary_with_diagnostics_on_the_found_blocks(make_cfg, tmp_path, shortcut):
    # depth=null: experiment=smoke (make_cfg) sets the CIFAR ResNet's depth 8
    summary = train(make_cfg("model=external", f"model.factory={FACTORY}", f"shortcut={shortcut}", "depth=null", *ONE_STEP))
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["status"] == summary["status"] == "completed"
    package = FACTORY.split(".")[0]  # this test module's top package, as pytest imported it
    assert on_disk["run_name"] == ("plain-" if shortcut == "none" else "") + f"{package}-tiny_torchvision_resnet"
    assert on_disk["model"] == FACTORY and on_disk["depth"] is None
    diag = on_disk["diagnostics"]
    assert diag["block_grad"]["blocks"] == diag["block_rms"]["blocks"] == STAGE_BLOCKS
    projections = [f"layer{i}.0.downsample.0" for i in (2, 3, 4)]
    expected = MAIN_LAYERS + (projections if shortcut == "identity" else []) + ["fc"]
    assert sorted(diag["grad_norm"]["layers"]) == sorted(expected)
    assert all(v > 0 for v in diag["block_grad"]["grad_rms"] + diag["block_rms"]["rms_residual"])
    # the plain twin lacks exactly the three projections' conv and BN
    proj_params = sum(64 * 2**i * 64 * 2**(i - 1) + 2 * 64 * 2**i for i in (1, 2, 3))
    full = sum(p.numel() for p in tiny_torchvision_resnet().parameters())
    assert on_disk["params"] == full - (proj_params if shortcut == "none" else 0)


def test_the_composed_config_names_timm_runs_by_model_name(tmp_path):
    cfg = compose_config("model=external", "model.factory=timm.create_model", "+model.kwargs.model_name=resnet18",
                         "shortcut=none", output_dir=tmp_path)
    assert cfg.run_name == "plain-timm-resnet18"
    assert external_run_name("torchvision.models.resnet50", "identity") == "torchvision-resnet50"


def test_a_hub_model_name_gives_a_run_name_without_a_path_separator():
    """A timm hub name (``hf-hub:timm/resnet18.a1_in1k``) has a '/', which would nest the run's
    directory and records one level deeper, and which run_name refuses."""
    name = external_run_name("timm.create_model", "none", "hf-hub:timm/resnet18.a1_in1k")
    assert name == "plain-timm-hf-hub:timm_resnet18.a1_in1k"


@pytest.mark.parametrize("kwargs, message", [
    ({"factory": "torchvision.models.resnet99"}, "model.factory='torchvision.models.resnet99' cannot be imported"),
    ({"factory": "torchvision.models.resnet18", "kwargs": {"colour": 1}},
     "model.factory=torchvision.models.resnet18 refused model.kwargs={'colour': 1}"),
    ({"factory": "math.pi"}, "model.factory='math.pi' is not callable"),
    ({"factory": "torchvision.models.resnet18", "shortcut": "projection"},
     "shortcut='projection' is not valid for model=external; valid: identity"),
    ({"factory": "torch.nn.Linear", "kwargs": {"in_features": 2, "out_features": 2}, "shortcut": "none"},
     "found no residual addition, so the model is its own plain twin"),
    ({"factory": "torchvision.models.resnet18", "kwargs": {"zero_init_residual": True}, "shortcut": "none"},
     "the branch of 8 blocks ends in a layer whose weight is all zero (layer1.0.bn2, ...)"),
])
def test_bad_external_settings_are_one_sentence(kwargs, message):
    with pytest.raises(UserFacingError, match=None) as err:
        external_net(**kwargs)
    assert message in str(err.value)


class Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc(x) if x.sum() > 0 else self.fc(x)


def test_untraceable_model_trains_as_written_and_block_diagnostics_say_they_do_not_apply():
    net = Untraceable()
    with pytest.warns(UserWarning, match="torch.fx cannot trace Untraceable .*Block-level diagnostics .* do not apply"):
        assert blocks(net) == []
    with pytest.raises(UserFacingError, match="shortcut=none on model.factory=.*by hand"):
        external_net(factory=f"{__name__}.Untraceable", shortcut="none")


def test_plain_net_has_no_blocks_and_says_so():
    with pytest.warns(UserWarning, match="found no residual addition in Sequential"):
        assert list(named_blocks(nn.Sequential(nn.Linear(2, 2), nn.ReLU()))) == []


def test_blocks_of_the_model_as_written_and_of_its_twin_hook_the_same_layers():
    net = instantiate({"_target_": "residual_lab.models.external.external_net", "factory": FACTORY})
    twin = external_net(factory=FACTORY, shortcut="none")
    for model, shortcut in ((net, nn.Identity), (twin, type(None))):
        found = blocks(model)
        assert [tag for tag, _ in found] == STAGE_BLOCKS
        assert all(isinstance(b, BlockView) and isinstance(b.shortcut, shortcut) for _, b in found)
        assert [b.residual for _, b in found] == [model.get_submodule(f"{n}.bn2") for n in STAGE_BLOCKS]


def test_timm_resnet_twin_needs_zero_init_last_off():
    pytest.importorskip("timm")
    with pytest.raises(UserFacingError, match=r"timm: \+model.kwargs.zero_init_last=false"):
        external_net(factory="timm.create_model", kwargs={"model_name": "resnet18"}, shortcut="none")
    twin = external_net(factory="timm.create_model", kwargs={"model_name": "resnet18", "zero_init_last": False},
                        shortcut="none")
    assert len(twin.residual_adds.removed) == 8


def test_external_resnet18_preset_is_torchvision_resnet18_with_the_cifar_stem_against_its_twin():
    from tests.test_presets import expand

    cfgs = expand("experiment=external_resnet18", "budget=cpu")
    assert [c.run_name for c in cfgs] == ["plain-torchvision-resnet18_cifar", "torchvision-resnet18_cifar"]
    cfg = cfgs[1]
    assert (cfg.depth, cfg.block, cfg.width, cfg.norm) == (18, "basic", 64, "batch")
    assert (cfg.optimizer._target_, cfg.optimizer.lr, cfg.scheduler.warmup_steps) == ("torch.optim.Adam", 1e-3, 0)
    assert (cfg.model.kwargs.dropout, cfg.data.pad, cfg.data.flip, cfg.trainer.max_steps) == (0.5, 4, True, 500)
    nets = [instantiate(c.model) for c in cfgs]
    # model=resnet18's counts: 11,173,962 with projections, 11,000,138 for the plain twin
    assert [sum(p.numel() for p in n.parameters()) for n in nets] == [11_000_138, 11_173_962]
    assert nets[0](torch.randn(2, 3, 32, 32)).shape == (2, 10)


class Holder(nn.Module):
    """Like a LightningModule without ``forward``: the network is an attribute (``self.model``)."""

    def __init__(self) -> None:
        super().__init__()
        self.model = tiny_torchvision_resnet()


def test_a_module_without_forward_gets_the_blocks_of_its_children():
    found = blocks(Holder())
    assert [tag for tag, _ in found] == [f"model.{b}" for b in STAGE_BLOCKS]
