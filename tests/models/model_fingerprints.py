"""Fingerprints of every built-in family x option: what a refactor of the models must not change.

For each (family, shortcut, block, norm, init, ...) a user can ask for, at ``torch.manual_seed(0)``:

- ``state``: sha256 over the state_dict, key by key in order (name, dtype, shape, bytes): the
  parameter names a checkpoint is loaded by, their order (an optimizer's state is stored by
  parameter position, so a resumed run needs the same order), and the initial values (so the
  same draws from the generator, in the same order);
- ``out``: the forward output on a fixed input after every parameter was moved by a fixed
  random amount (so gates at 0 and zero classifiers no longer hide the block structure: a
  moved ReLU or a missing bias changes it);
- ``error``: the message of the ValueError a refused combination raises, instead.

``python -m tests.models.model_fingerprints <file>`` writes them; the committed
``fingerprints_68815a8.json`` was written by the models as of commit 68815a8 (before the block
base class, the build-time variants and the LSTM on ``nn.LSTM``), and
``test_fingerprints.py`` holds today's models to it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sys
from typing import Any, Iterator

import torch
from torch import nn

from residual_lab.models import MLP, CifarResNet, LSTMStack, ResNet18, VisionTransformer

INITS = ("kaiming_fan_in", "kaiming_fan_out", "skipinit", "rezero", "fixup")
SHORTCUTS = ("none", "identity", "projection", "full_projection")


def cases() -> Iterator[tuple[str, type[nn.Module], dict[str, Any], tuple[int, ...]]]:
    """``(case id, class, keyword arguments, input shape)`` of every option, on tiny nets."""
    for block, shortcut, norm, init in itertools.product(
            ("basic", "bottleneck", "preact", "preact_bottleneck"), SHORTCUTS, ("batch", "none"), INITS):
        depth = 14 if block in ("basic", "preact") else 20  # two blocks per stage
        for zero in (False, True) if init == "kaiming_fan_in" and shortcut != "none" else (False,):
            kw = dict(depth=depth, shortcut=shortcut, block=block, width=4, norm=norm, init=init,
                      zero_init_residual=zero)
            yield "cifar_resnet-" + "-".join(map(str, kw.values())), CifarResNet, kw, (2, 3, 16, 16)
    for shortcut, norm, init in itertools.product(SHORTCUTS, ("batch", "none"), INITS):
        kw = dict(depth=10, shortcut=shortcut, width=4, norm=norm, init=init, dropout=0.0)
        yield "resnet18-" + "-".join(map(str, kw.values())), ResNet18, kw, (2, 3, 16, 16)
    for shortcut, norm, init in itertools.product(("none", "identity"), ("batch", "layer", "none"), INITS):
        kw = dict(depth=6, shortcut=shortcut, block="basic", width=8, norm=norm, init=init)
        yield "mlp-" + "-".join(map(str, kw.values())), MLP, kw, (3, 3, 32, 32)
    for shortcut, block, pool in itertools.product(("none", "identity"), ("preln", "postln"), ("cls", "mean")):
        kw = dict(depth=2, shortcut=shortcut, block=block, width=8, norm="layer", heads=2, pool=pool, image_size=16)
        yield "vit-" + "-".join(map(str, kw.values())), VisionTransformer, kw, (2, 3, 16, 16)
    for shortcut in ("none", "identity"):
        kw = dict(depth=2, shortcut=shortcut, block="basic", width=8, norm="none")
        yield f"lstm-{shortcut}", LSTMStack, kw, (2, 3, 32, 32)


def state_hash(net: nn.Module) -> str:
    h = hashlib.sha256()
    for key, value in net.state_dict().items():
        h.update(f"{key}|{value.dtype}|{tuple(value.shape)}|".encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def fingerprint(cls: type[nn.Module], kwargs: dict[str, Any], shape: tuple[int, ...]) -> dict[str, Any]:
    torch.manual_seed(0)
    try:
        net = cls(**kwargs)
    except ValueError as err:
        return {"error": str(err)}
    record: dict[str, Any] = {"state": state_hash(net)}
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _, p in net.named_parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
        out = net(torch.randn(shape, generator=g))
    record["out"] = [float(f"{v:.9g}") for v in out.flatten().tolist()]  # 9 digits: float32 exactly
    return record


def fingerprints() -> dict[str, dict[str, Any]]:
    return {case: fingerprint(cls, kw, shape) for case, cls, kw, shape in cases()}


if __name__ == "__main__":
    torch.set_num_threads(1)
    prints = {"torch": torch.__version__.split("+")[0], "cases": fingerprints()}
    with open(sys.argv[1], "w") as f:
        json.dump(prints, f, indent=0, sort_keys=True)
        f.write("\n")
    print(len(prints["cases"]), "cases,", sum("error" in v for v in prints["cases"].values()), "refused")
