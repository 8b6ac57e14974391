"""Fixup and SkipInit against the authors' own code, transcribed here on small nets.

- Fixup: hongyi-zhang/Fixup at f3fa449, ``cifar/models/fixup_resnet_cifar.py`` (the net and its
  init, transcribed below as ``AuthorsFixupResNet``) and ``cifar/cifar_train.py`` lines 113-122
  (the optimizer: every parameter whose name contains ``bias`` or ``scale`` at lr / 10).
- SkipInit: google-deepmind/deepmind-research at f5de0ed, ``nfnets/skipinit_resnet.py``
  (``NFResBlock.__call__``: ``act(x)`` starts the branch, projection shortcuts read ``act(x)``,
  ``out * skip_gain + shortcut`` with no activation after the sum; the head is
  ``fc(mean(act(out)))`` with ``fc_init=jnp.zeros``), with our two-3x3-conv branch.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from torch import nn

from residual_lab.lit_module import ImageClassifier
from residual_lab.models import CifarResNet
from residual_lab.schedules import multistep_schedule

# --- Authors' Fixup CIFAR ResNet, transcribed (names, order and init as in their file) --------


def _conv3x3(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class AuthorsFixupBasicBlock(nn.Module):
    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.bias1a = nn.Parameter(torch.zeros(1))
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bias1b = nn.Parameter(torch.zeros(1))
        self.relu = nn.ReLU(inplace=True)
        self.bias2a = nn.Parameter(torch.zeros(1))
        self.conv2 = _conv3x3(planes, planes)
        self.scale = nn.Parameter(torch.ones(1))
        self.bias2b = nn.Parameter(torch.zeros(1))
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.conv1(x + self.bias1a)
        out = self.relu(out + self.bias1b)
        out = self.conv2(out + self.bias2a)
        out = out * self.scale + self.bias2b
        if self.downsample is not None:
            identity = self.downsample(x + self.bias1a)
            identity = torch.cat((identity, torch.zeros_like(identity)), 1)
        out += identity
        return self.relu(out)


class AuthorsFixupResNet(nn.Module):
    def __init__(self, layers, num_classes=10):
        super().__init__()
        self.num_layers = sum(layers)
        self.inplanes = 16
        self.conv1 = _conv3x3(3, 16)
        self.bias1 = nn.Parameter(torch.zeros(1))
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(16, layers[0])
        self.layer2 = self._make_layer(32, layers[1], stride=2)
        self.layer3 = self._make_layer(64, layers[2], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.bias2 = nn.Parameter(torch.zeros(1))
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, AuthorsFixupBasicBlock):
                nn.init.normal_(m.conv1.weight, mean=0, std=np.sqrt(
                    2 / (m.conv1.weight.shape[0] * np.prod(m.conv1.weight.shape[2:]))) * self.num_layers ** (-0.5))
                nn.init.constant_(m.conv2.weight, 0)
            elif isinstance(m, nn.Linear):
                nn.init.constant_(m.weight, 0)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes, blocks, stride=1):
        downsample = nn.AvgPool2d(1, stride=stride) if stride != 1 else None
        layers = [AuthorsFixupBasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [AuthorsFixupBasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.relu(self.conv1(x) + self.bias1)
        x = self.layer3(self.layer2(self.layer1(x)))
        x = self.avgpool(x).view(x.size(0), -1)
        return self.fc(x + self.bias2)


def authors_optimizer_lr(name: str, base_lr: float) -> float:
    """cifar_train.py: ``'bias' in name or 'scale' in name`` -> base_lr / 10, else base_lr."""
    return base_lr / 10 if ("bias" in name or "scale" in name) else base_lr


def ours_name(ref: str, n: int) -> str:
    """Our parameter for the authors' parameter ``ref`` (n blocks per stage)."""
    top = {"conv1.weight": "stem.conv.weight", "bias1": "stem.bias_relu.bias",
           "bias2": "head.bias_fc.bias", "fc.weight": "head.fc.weight", "fc.bias": "head.fc.bias"}
    if ref in top:
        return top[ref]
    layer, j, leaf = ref.split(".", 2)
    stage, j = int(layer[len("layer"):]) - 1, int(j)
    block = f"stages.{stage}.blocks.{j}"
    downsampling = stage > 0 and j == 0
    return {"bias1a": f"{block}.{'preact' if downsampling else 'residual'}.bias_conv1.bias",
            "conv1.weight": f"{block}.residual.conv1.weight", "bias1b": f"{block}.residual.bias_relu1.bias",
            "bias2a": f"{block}.residual.bias_conv2.bias", "conv2.weight": f"{block}.residual.conv2.weight",
            "scale": f"{block}.residual.scale.weight", "bias2b": f"{block}.residual.bias_out.bias"}[leaf]


def _pair(depth: int, seed_ours: int, seed_ref: int):
    n = (depth - 2) // 6
    torch.manual_seed(seed_ref)
    ref = AuthorsFixupResNet([n, n, n])
    torch.manual_seed(seed_ours)
    ours = CifarResNet(depth=depth, shortcut="identity", width=16, norm="none", init="fixup")
    return ref, ours, n


def _mapped(ref: nn.Module, ours: nn.Module, n: int, strict: bool = True):
    """``(ref name, ref param, our param)`` for every parameter of the authors' net (``strict``:
    both nets have exactly these; else those we have, so a test can name every other mismatch)."""
    params = dict(ours.named_parameters())
    pairs = [(name, p, params[ours_name(name, n)]) for name, p in ref.named_parameters()
             if strict or ours_name(name, n) in params]
    assert not strict or len(pairs) == len(params)
    return pairs


# --- Fixup ----------------------------------------------------------------------------------


def test_fixup_has_every_parameter_of_the_authors_net():
    ref, ours, n = _pair(14, 0, 0)
    params = dict(ours.named_parameters())
    missing = [name for name, _ in ref.named_parameters() if ours_name(name, n) not in params]
    assert missing == []
    assert len(params) == len(list(ref.parameters()))


def test_fixup_init_statistics_equal_the_authors_per_parameter():
    """Different seeds, so the draws differ: each parameter's std (zeros and ones exactly) must
    agree. The stem conv keeps PyTorch's default U(+-1/sqrt(27)) (std 0.111, not He's 0.272);
    a downsampling block's conv1 is He-normal by its *output* channels (fan_out)."""
    ref, ours, n = _pair(20, seed_ours=1, seed_ref=0)
    L = 3 * n
    differ = []
    for name, a, b in _mapped(ref, ours, n, strict=False):
        if a.numel() == 1 or torch.count_nonzero(a) == 0:
            same = torch.equal(b.detach().reshape(-1), a.detach().reshape(-1))
        else:
            same = b.std().item() == pytest.approx(a.std().item(), rel=0.1)
        differ += [] if same else [f"{name}: std {b.std().item():.4f}, authors' {a.std().item():.4f}"]
    assert differ == []
    ds = ours.stages[1].blocks[0].residual.conv1.weight  # 16 -> 32 channels
    assert ds.std().item() == pytest.approx((2 / (32 * 9)) ** 0.5 / L ** 0.5, rel=0.05)
    assert ours.stem.conv.weight.abs().max().item() <= 1 / 27 ** 0.5


def test_fixup_parameters_equal_the_authors_with_the_same_seed():
    """Same seed, same construction order, same draws: every parameter equal, not only in law."""
    ref, ours, n = _pair(14, 0, 0)
    differ = [name for name, a, b in _mapped(ref, ours, n)
              if not torch.allclose(b.detach().reshape(a.shape), a.detach(), rtol=1e-6, atol=0)]
    assert differ == []


def test_fixup_forward_equals_the_authors_with_shared_random_weights():
    """Every parameter (scalar biases and multipliers too) set away from its init, copied
    across: the same function, so a bias before the stem's ReLU and the downsampling shortcut
    reading ``x + bias1a`` both show."""
    ref, ours, n = _pair(14, 0, 0)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, a, b in _mapped(ref, ours, n):
            a.copy_(torch.randn(a.shape, generator=g) * (0.5 if a.numel() == 1 else 0.1))
            b.copy_(a.reshape(b.shape))
    x = torch.randn(4, 3, 16, 16, generator=g)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-6)


def test_fixup_scalars_and_biases_train_at_a_tenth_of_the_lr():
    """The LightningModule's optimizer, from the model's config (``fixup_scalar_lr_scale``):
    each parameter's lr is what the authors' name filter gives it, through the schedule."""
    from omegaconf import OmegaConf
    from hydra.utils import instantiate

    from residual_lab.run import CONFIG_DIR

    model_cfg = OmegaConf.load(f"{CONFIG_DIR}/model/cifar_resnet.yaml")
    model_cfg = OmegaConf.merge(model_cfg, {"depth": 8, "shortcut": "identity", "block": "basic", "width": 16,
                                            "norm": "none", "num_classes": 10, "init": "fixup"})
    ref, _, n = _pair(8, 0, 0)
    torch.manual_seed(0)
    net = instantiate(model_cfg)
    task = ImageClassifier(net, functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=1e-4),
                           functools.partial(multistep_schedule, milestones=[0.5]), num_classes=10,
                           channels_last=False, schedule_steps=10)
    conf = task.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    ours = dict(task.named_parameters())

    def lrs():
        lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
        return {name: lr_of[id(ours["net." + ours_name(name, n)])] for name, _ in ref.named_parameters()
                if "net." + ours_name(name, n) in ours}

    assert sum(len(g["params"]) for g in opt.param_groups) == len(ours)
    want = {name: authors_optimizer_lr(name, 0.1) for name, _ in ref.named_parameters()}
    assert lrs() == pytest.approx({k: want[k] for k in lrs()})
    assert set(lrs()) == set(want)
    assert sorted(set(want.values())) == pytest.approx([0.01, 0.1])
    for _ in range(6):  # past the milestone: both groups / 10
        opt.step()
        sched.step()
    assert lrs() == pytest.approx({k: v / 10 for k, v in want.items()})
    assert all(g["weight_decay"] == 1e-4 for g in opt.param_groups)  # the authors decay every group


def test_other_inits_keep_one_parameter_group():
    net = CifarResNet(depth=8, shortcut="identity", width=4)
    task = ImageClassifier(net, functools.partial(torch.optim.SGD, lr=0.1),
                           functools.partial(multistep_schedule), num_classes=10, channels_last=False,
                           schedule_steps=10)
    opt = task.configure_optimizers()["optimizer"]
    assert [g["lr"] for g in opt.param_groups] == [0.1]


# --- SkipInit -------------------------------------------------------------------------------


def _reference_skipinit_block(blk, x, gain):
    """nfnets/skipinit_resnet.py NFResBlock.__call__ with our basic branch (two 3x3 convs):
    ``out = act(x)``; ``shortcut = conv_shortcut(out)`` if projecting else ``x``;
    ``branch = conv2(act(conv1(out)))``; ``branch * skip_gain + shortcut``."""
    r = blk.residual
    out = torch.relu(x)
    shortcut = blk.shortcut(out) if isinstance(blk.shortcut, nn.Sequential) else blk.shortcut(x)
    return r.conv2(torch.relu(r.conv1(out))) * gain + shortcut


@pytest.mark.parametrize("shortcut", ["identity", "projection"])
@pytest.mark.parametrize("which", [(0, 1), (1, 0)])  # a same-shape block, a downsampling block
def test_skipinit_block_equals_the_reference_formula(shortcut, which):
    torch.manual_seed(0)
    net = CifarResNet(depth=14, shortcut=shortcut, width=4, norm="none", init="skipinit").eval()
    net.reset_parameters()  # idempotent: one ReLU per place, not two
    blk = net.stages[which[0]].blocks[which[1]]
    with torch.no_grad():
        blk.gate.fill_(-0.7)
    x = torch.randn(2, blk.residual.conv1.in_channels, 8, 8)
    torch.testing.assert_close(blk(x), _reference_skipinit_block(blk, x, -0.7))
    assert (blk(x) < 0).any()  # no ReLU after the sum


def test_skipinit_net_is_the_references_head_with_a_zero_classifier():
    """``fc(mean(act(out)))`` with ``fc_init=jnp.zeros`` (and haiku's zero bias): logits 0 at init."""
    torch.manual_seed(0)
    net = CifarResNet(depth=14, shortcut="identity", width=4, norm="none", init="skipinit").eval()
    x = torch.randn(3, 3, 16, 16)
    assert torch.count_nonzero(net.head.fc.weight) == 0 and torch.count_nonzero(net.head.fc.bias) == 0
    assert torch.equal(net(x), torch.zeros(3, 10))
    with torch.no_grad():
        for _, blk in net.named_blocks():
            blk.gate.fill_(0.3)
        net.head.fc.weight.normal_()
    features = net.stem(x)
    for _, blk in net.named_blocks():
        features = _reference_skipinit_block(blk, features, 0.3)
    torch.testing.assert_close(net(x), net.head.fc(torch.relu(features).mean((2, 3))))


def test_resnet18_with_fixup_trains_its_scalars_at_a_tenth_of_the_lr_too():
    """The scalar group belongs to every staged ResNet (StagedNet), not only CifarResNet: a
    ResNet-18 with ``init=fixup`` had one group, so its scalars trained at the full lr."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from residual_lab.models.variants import ScalarBias, ScalarScale
    from residual_lab.run import CONFIG_DIR

    model_cfg = OmegaConf.merge(OmegaConf.load(f"{CONFIG_DIR}/model/resnet18.yaml").model,
                                {"depth": 10, "shortcut": "identity", "block": "basic", "width": 8, "norm": "none",
                                 "num_classes": 10, "init": "fixup"})
    net = instantiate(model_cfg)
    groups = net.parameter_groups()
    scalars = [p for m in net.modules() if isinstance(m, (ScalarBias, ScalarScale)) for p in m.parameters()]
    assert [g.get("lr_scale", 1.0) for g in groups] == [0.1, 1.0]
    assert {id(p) for p in scalars} <= {id(p) for p in groups[0]["params"]} and len(scalars) > 0
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters()))
