"""Run names that say what a run is: ``plain-56``, ``resnet-56-identity``, ``plain-mlp-16``, ...

Registered as the OmegaConf resolver ``run_name`` (residual_lab.resolvers) so the config, the output directory and
the TensorBoard run all use the same name. conf/config.yaml names CIFAR ResNets; each other
family's conf/model/<family>.yaml sets ``run_name`` with its family as the last argument.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    """How a family's runs are named.

    Attributes:
        tag: format of the family and depth, e.g. ``"mlp-{depth}"``.
        shortcut: the shortcut left out of residual names (None: always shown).
        block, width, norm: defaults left out of names (block None: always shown). They must
            equal the family's conf/model/<family>.yaml (a test composes each to check).
    """

    tag: str
    shortcut: str | None
    block: str | None
    width: int
    norm: str


FAMILIES: dict[str, Family] = {
    "cifar_resnet": Family("resnet-{depth}", None, "basic", 16, "batch"),  # residual: resnet-56-identity
    "resnet18": Family("resnet{depth}", "projection", "basic", 64, "batch"),  # resnet18, plain-resnet18
    "mlp": Family("mlp-{depth}", None, "basic", 256, "batch"),  # mlp-16-identity, plain-mlp-16
    "vit": Family("vit-{depth}", "identity", None, 128, "layer"),  # vit-12-preln, plain-vit-12-postln
    "lstm": Family("lstm-{depth}", None, "basic", 128, "none"),  # lstm-8-identity, plain-lstm-8
}


def run_name(depth: int, shortcut: str, block: str = "basic", width: int = 16, norm: str = "batch",
             family: str = "cifar_resnet") -> str:
    """``plain-<tag>`` or ``<tag>-<shortcut>``, plus block/width/norm when not the family's default.

    The CIFAR ResNet keeps its historical names (``plain-56``, ``resnet-56-identity``).
    """
    fam = FAMILIES[family]
    tag = fam.tag.format(depth=depth)
    if shortcut == "none":
        name = "plain-" + (tag if family != "cifar_resnet" else str(depth))
    else:
        name = tag if shortcut == fam.shortcut else f"{tag}-{shortcut}"
    if block != fam.block:
        name += f"-{block}"
    if int(width) != fam.width:
        name += f"-w{width}"
    if norm != fam.norm:
        name += f"-norm_{norm}"
    return name


def external_run_name(factory: str, shortcut: str, model_name: str | None = None) -> str:
    """``model=external``'s names: the factory's package and the model, ``plain-`` for the twin.

    ``torchvision.models.resnet18`` -> ``torchvision-resnet18`` / ``plain-torchvision-resnet18``;
    ``timm.create_model`` with ``model_name=vit_tiny_patch16_224`` -> ``timm-vit_tiny_patch16_224``.
    The package prefix keeps them apart from the built-in families (``resnet18``). A hub name's
    '/' (``hf-hub:timm/resnet18.a1_in1k``) becomes '_': the name is a directory's.
    """
    package, _, function = str(factory).rpartition(".")
    name = f"{package.split('.')[0] or function}-{model_name or function}".replace("/", "_")
    return f"plain-{name}" if shortcut == "none" else name
