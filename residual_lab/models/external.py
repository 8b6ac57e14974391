"""``model=external``: anyone's ``nn.Module``, built by its factory, as written or as its plain twin.

The researcher's question is about their own architecture ("does my block need its skip?"),
so the model is built by the factory they already use (``torchvision.models.resnet18``,
``timm.create_model``, a function of their own project), by import path, with its keyword
arguments from the config. ``shortcut=identity`` trains it as written; ``shortcut=none``
trains its plain twin (:func:`residual_lab.models.plain_twin`), the same layers without the
skips (He et al. 2015 sec. 4.1's "plain counterpart").

Diagnostics need blocks; an external model has no ``named_blocks()``, so :func:`named_blocks`
presents the modules that hold residual additions (the ones the fx pass finds) in the block
protocol of :mod:`residual_lab.models`, or none, with a warning, where nothing traces.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Callable, Iterator

from torch import nn
from torch.utils.hooks import RemovableHandle

from residual_lab.errors import UserFacingError
from residual_lab.models.plain_twin import TraceError, TwinReport, mark, plain_twin, residual_adds

log = logging.getLogger(__name__)

#: ``shortcut`` values of an external model and what each means.
EXTERNAL_SHORTCUTS = {"identity": "the model as its factory builds it",
                      "none": "its plain twin: every residual addition's skip removed (torch.fx)"}


def _factory(path: str) -> Callable[..., Any]:
    from hydra.utils import get_object

    try:
        build = get_object(path)
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserFacingError(f"model.factory={path!r} cannot be imported: {first}") from None
    if not callable(build):
        raise UserFacingError(f"model.factory={path!r} is not callable (a {type(build).__name__})")
    return build


def external_net(*, factory: str, shortcut: str = "identity", kwargs: dict[str, Any] | None = None) -> nn.Module:
    """The module ``factory(**kwargs)`` builds, as written or as its plain twin.

    Args:
        factory: import path of a callable that returns an ``nn.Module``, e.g.
            ``torchvision.models.resnet18`` or ``timm.create_model``.
        shortcut: ``identity`` (the model as written) or ``none`` (its plain twin).
        kwargs: the factory's keyword arguments (``num_classes``, timm's ``model_name``...).

    Returns:
        The module, carrying its residual additions as ``residual_adds`` (a
        :class:`~residual_lab.models.plain_twin.TwinReport`) where the fx pass found any.

    Raises:
        UserFacingError: the factory cannot be imported or called, does not return a module,
            ``shortcut`` is not identity/none, or ``shortcut=none`` on a model fx cannot trace.
    """
    if shortcut not in EXTERNAL_SHORTCUTS:
        raise UserFacingError(f"shortcut={shortcut!r} is not valid for model=external; valid: "
                              + "; ".join(f"{k} ({v})" for k, v in EXTERNAL_SHORTCUTS.items()))
    build = _factory(factory)
    try:
        model = build(**(kwargs or {}))
    except TypeError as err:  # an argument the factory does not take
        raise UserFacingError(f"model.factory={factory} refused model.kwargs={dict(kwargs or {})}: {err}") from None
    if not isinstance(model, nn.Module):
        raise UserFacingError(f"model.factory={factory} returned a {type(model).__name__}, not an nn.Module")
    if shortcut == "identity":
        try:
            report = mark(model)
        except TraceError as err:
            warnings.warn(f"{err}. Trained as written; block-level diagnostics do not apply.", stacklevel=2)
            return model
        log.info("%s as written: %s", factory, report)
        return model
    try:
        twin = plain_twin(model)
    except TraceError as err:
        raise UserFacingError(f"shortcut=none on model.factory={factory}: {err}") from None
    report = getattr(twin, "residual_adds")
    if not report.removed:
        raise UserFacingError(f"shortcut=none on model.factory={factory}: the fx pass found no residual addition, "
                              f"so the model is its own plain twin; train it with shortcut=identity")
    if dead := zero_branch_ends(twin):
        raise UserFacingError(
            f"shortcut=none on model.factory={factory}: the branch of {len(dead)} blocks ends in a layer whose "
            f"weight is all zero ({dead[0]}, ...): a zero-init-last of the residual net (Goyal et al. 2017 "
            f"sec. 5.1), which in a plain net zeroes the signal, so the twin would not train; build the model "
            f"without it (timm: +model.kwargs.zero_init_last=false; torchvision: zero_init_residual=false)")
    log.info("%s plain twin: %s", factory, report)
    return twin


def zero_branch_ends(twin: nn.Module) -> list[str]:
    """The layers ending a removed branch whose ``weight`` is all zero (timm's ResNets zero the
    last BN scale of every block by default; torchvision's do with ``zero_init_residual``)."""
    ends = [a.branch for a in getattr(twin, "residual_adds").removed if a.branch]
    weights = {end: getattr(twin.get_submodule(end), "weight", None) for end in ends}
    return [end for end, w in weights.items() if isinstance(w, nn.Parameter) and not w.detach().any()]


def torchvision_cifar_resnet(arch: str = "resnet18", *, num_classes: int = 10, dropout: float = 0.0) -> nn.Module:
    """torchvision's ResNet with the CIFAR stem that kuangliu/pytorch-cifar (and our
    :class:`~residual_lab.models.ResNet18`) use: a 3x3 stride-1 ``conv1`` and no max-pool, so
    the four stages see 32/16/8/4 pixels instead of 8/4/2/1. ResNet-18 then has exactly our
    ResNet-18's 11,173,962 parameters for 10 classes (11,000,138 for its plain twin).

    Args:
        arch: a torchvision ResNet builder (``resnet18``, ``resnet34``, ``resnet50``...).
        num_classes: classifier outputs.
        dropout: probability of zeroing a pooled feature before ``fc`` (``fc`` becomes
            ``Sequential(Dropout, Linear)``, keys ``fc.1.*``, whatever the probability).
    """
    import torchvision

    net = getattr(torchvision.models, arch)(num_classes=num_classes)
    net.conv1 = nn.Conv2d(3, net.conv1.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")  # torchvision's own init
    net.maxpool = nn.Identity()
    net.fc = nn.Sequential(nn.Dropout(dropout), net.fc)
    return net


class _NoModule:
    """Stands for a branch that ends in a function (no module to hook): its hooks never fire."""

    def register_forward_hook(self, hook: Callable) -> RemovableHandle:
        return RemovableHandle({})


class BlockView:
    """A block of an external model in the block protocol of :mod:`residual_lab.models`.

    Hooks go on the module holding the block's residual addition(s) (``layer1.0``,
    ``blocks.3``): its input is the block's input x, its output the block's output.
    ``residual`` is the module whose output is the branch F(x) (``layer1.0.bn2``); a
    Transformer layer holds two additions (attention, then MLP) and its ``residual`` is the
    last one's. ``shortcut`` is None in a plain twin, ``nn.Identity()`` otherwise (the
    diagnostics only ask whether there is one).

    Args:
        module: the module holding the addition(s).
        residual: the module ending the (last) branch, or None if the branch ends in a function.
        plain: True in a plain twin.
    """

    def __init__(self, module: nn.Module, residual: nn.Module | None, plain: bool) -> None:
        self.module = module
        self.residual = residual if residual is not None else _NoModule()
        self.shortcut = None if plain else nn.Identity()
        self.gate = None

    def register_forward_pre_hook(self, hook: Callable) -> RemovableHandle:
        return self.module.register_forward_pre_hook(hook)

    def register_forward_hook(self, hook: Callable) -> RemovableHandle:
        return self.module.register_forward_hook(hook)

    def named_parameters(self, *args: Any, **kwargs: Any) -> Iterator[tuple[str, nn.Parameter]]:
        """The holding module's: the block's weights, grouped per block by the curvature probes."""
        return self.module.named_parameters(*args, **kwargs)

    def __repr__(self) -> str:
        return f"BlockView({type(self.module).__name__})"


def _report(net: nn.Module) -> TwinReport | None:
    try:
        return residual_adds(net)
    except TraceError as err:
        warnings.warn(f"{err}. Block-level diagnostics (block_grad, block_rms) do not apply to it.", stacklevel=3)
        return None


def named_blocks(net: nn.Module) -> Iterator[tuple[str, nn.Module | BlockView]]:
    """``(name, block)`` of any network, input to output.

    The built-in families list their own (``net.named_blocks()``); any other module's blocks
    are the modules holding the residual additions the fx pass finds, as :class:`BlockView`
    (none, with a warning saying why, where the model does not trace or has no residual).
    """
    if hasattr(net, "named_blocks"):
        yield from net.named_blocks()
        return
    report = _report(net)
    if report is None:
        return
    if not report.removed:
        warnings.warn(f"found no residual addition in {type(net).__name__}: block-level diagnostics "
                      f"(block_grad, block_rms) do not apply to it.", stacklevel=2)
    for block in report.blocks:
        last = [a for a in report.removed if a.block == block][-1]
        module = net.get_submodule(block)
        residual = net.get_submodule(last.branch) if last.branch else None
        yield block, BlockView(module, residual, plain=report.plain)
