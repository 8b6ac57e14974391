"""The plain twin of any network: a ``torch.fx`` pass that finds its residual additions and
removes the skip, leaving the branch.

He et al. 2015 (sec. 4.1) compare a ResNet with its "plain counterpart", the same layers with
the shortcuts taken out. For the built-in families that is ``shortcut=none``; for anyone's
``nn.Module`` this module builds it from the model as written:

1. **Find** (:func:`find_residual_adds`): trace the model with ``torch.fx.symbolic_trace``
   (or, where the top-level forward does not trace, each child module in turn) and keep every
   addition ``a + b`` (``operator.add``, ``torch.add``, ``Tensor.add``/``add_``) that is a
   residual join: the two operands meet at a fork ``v``, the latest value both are computed
   from; one operand, the *skip*, is ``v`` itself or a shorter path from it (a projection such
   as torchvision's ``downsample`` or option A's zero-pad), the other, the *branch*, runs
   through at least one learned layer. ``x + pos_embed`` (no common fork), ``x + 1`` or a
   GELU written as ``x + 0.044715 * x**3`` (no learned layer) are not residuals. The block of
   an addition is the innermost module whose forward holds it (``layer1.0``, ``blocks.3``).
2. **Remove** (:func:`plain_twin`): on a copy of the model, each such block is traced alone,
   every use of the addition is pointed at the branch, the addition is erased, and what only
   the skip used (a projection's conv and norm) is deleted; the traced block (a
   ``GraphModule`` keeping the block's parameter names) replaces the block in place. The rest
   of the model, its top-level forward included, is untouched, so parameter names stay those
   of the model as written (minus the deleted projections) and hooks on blocks keep working.

The twin carries its :class:`TwinReport` as ``twin.residual_adds`` (which additions, in which
modules) so diagnostics find its blocks without the additions that marked them.
"""

from __future__ import annotations

import copy
import operator
from dataclasses import dataclass, field

import torch
from torch import fx, nn

#: ``call_function`` targets and ``call_method`` names that add two tensors.
ADD_FUNCTIONS = (operator.add, operator.iadd, torch.add)
ADD_METHODS = ("add", "add_")
#: The attribute of a model (and of its twin) that lists its residual additions.
REPORT_ATTR = "residual_adds"

HAND_TWIN = ("write its plain twin by hand: in each block's forward return the branch instead of "
             "branch + skip (e.g. `return self.bn2(self.conv2(out))` for `return self.bn2(self.conv2(out)) + x`), "
             "keeping the layer names so the same weights load")


class TraceError(RuntimeError):
    """The model cannot be traced, so its residual additions cannot be found."""


@dataclass(frozen=True)
class ResidualAdd:
    """One residual addition ``skip + branch``.

    Attributes:
        block: the module whose forward holds the addition (``""`` for the model itself),
            e.g. ``layer1.0`` or ``blocks.3``.
        index: the addition's place among the block's residual additions, in the order its
            forward runs them (0, or 0 and 1 in a Transformer layer: attention, then MLP).
        skip: ``identity`` (the fork itself) or the modules of the projection, joined by
            ``+`` (``layer2.0.downsample.0+layer2.0.downsample.1``), or ``projection`` where
            the skip is computed by functions, not modules (option A's zero-pad).
        branch: the module whose output is the branch F(x) (``layer1.0.bn2``), or None where
            the branch ends in a function (``self.gamma * x``).
    """

    block: str
    index: int
    skip: str
    branch: str | None


@dataclass(frozen=True)
class TwinReport:
    """What :func:`plain_twin` changed.

    Attributes:
        removed: the residual additions whose skip was removed, in network order.
        removed_modules: modules deleted because only a removed skip used them.
        plain: True for a twin (its additions are gone), False for the model as written.
        untraced: modules whose own forward did not trace (``name: why``); additions written
            there are not found (their children were traced instead).
    """

    removed: tuple[ResidualAdd, ...]
    removed_modules: tuple[str, ...] = ()
    plain: bool = True
    untraced: tuple[str, ...] = ()

    @property
    def blocks(self) -> list[str]:
        """The modules holding a residual addition, in network order, each once."""
        return list(dict.fromkeys(a.block for a in self.removed))

    def __str__(self) -> str:
        verb = "removed" if self.plain else "found"
        lines = [f"{verb} {len(self.removed)} residual additions in {len(self.blocks)} blocks"]
        lines += [f"  {a.block or '<model>'} add #{a.index} (skip: {a.skip}; branch ends in {a.branch or 'a function'})"
                  for a in self.removed]
        if self.removed_modules:
            lines.append("  deleted, used only by a removed skip: " + ", ".join(self.removed_modules))
        if self.untraced:
            lines.append("  not traced (additions there not found): " + "; ".join(self.untraced))
        return "\n".join(lines)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix and name else prefix or name


def _is_add(node: fx.Node) -> bool:
    """``a + b`` of two computed values (not ``x + 1``, not ``torch.add(a, b, alpha=2)``)."""
    adds = (node.op == "call_function" and node.target in ADD_FUNCTIONS) or \
        (node.op == "call_method" and node.target in ADD_METHODS)
    return (adds and len(node.args) == 2 and all(isinstance(a, fx.Node) for a in node.args)
            and set(node.kwargs) <= {"alpha"} and node.kwargs.get("alpha", 1) == 1)


class _Graph:
    """Ancestor sets of a traced graph's nodes (each node counts as its own ancestor)."""

    def __init__(self, gm: fx.GraphModule) -> None:
        self.gm = gm
        self.order = {n: i for i, n in enumerate(gm.graph.nodes)}
        self._ancestors: dict[fx.Node, frozenset[fx.Node]] = {}
        for n in gm.graph.nodes:  # topological order: inputs first
            self._ancestors[n] = frozenset({n}).union(*(self._ancestors[i] for i in n.all_input_nodes))

    def ancestors(self, node: fx.Node) -> frozenset[fx.Node]:
        return self._ancestors[node]

    def path(self, start: fx.Node, end: fx.Node) -> set[fx.Node]:
        """Nodes computed from ``start`` on the way to ``end`` (``end`` included, ``start`` not)."""
        return {n for n in self._ancestors[end] if start in self._ancestors[n] and n is not start}

    def learned(self, nodes: set[fx.Node]) -> bool:
        """True if a node of ``nodes`` is a module with parameters or reads a parameter."""
        for n in nodes:
            if n.op == "call_module" and any(True for _ in self.gm.get_submodule(n.target).parameters()):
                return True
            if any(i.op == "get_attr" for i in n.all_input_nodes):
                return True
        return False

    def residual(self, node: fx.Node) -> tuple[fx.Node, fx.Node, set[fx.Node]] | None:
        """``(skip, branch, skip path)`` if ``node`` is a residual addition (module doc), else None."""
        if not _is_add(node):
            return None
        a, b = node.args
        common = self.ancestors(a) & self.ancestors(b)
        if not common:
            return None
        fork = max(common, key=self.order.__getitem__)
        path_a, path_b = self.path(fork, a), self.path(fork, b)
        if a is fork or (b is not fork and len(path_a) < len(path_b)):
            skip, branch, skip_path, branch_path = a, b, path_a, path_b
        elif b is fork or len(path_b) < len(path_a):
            skip, branch, skip_path, branch_path = b, a, path_b, path_a
        else:
            return None  # two equally long paths: a sum of two branches, not a skip
        if branch is fork or not self.learned(branch_path):
            return None
        return skip, branch, skip_path


def _innermost(node: fx.Node) -> str:
    """The qualified name of the innermost module whose forward holds ``node`` (``""``: the root)."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    path = list(stack.values())[-1]
    return path[0] if isinstance(path, tuple) else str(list(stack)[-1])


def _adds_in(gm: fx.GraphModule, prefix: str, owner: str | None = None) -> list[tuple[ResidualAdd, fx.Node, fx.Node]]:
    """The residual additions of a traced module, as ``(record, add node, branch node)``;
    only those held by the module itself when ``owner=""``."""
    graph = _Graph(gm)
    found = []
    for node in gm.graph.nodes:
        parts = graph.residual(node)
        if parts is None:
            continue
        block = _innermost(node)
        if owner is not None and block != owner:
            continue
        skip, branch, skip_path = parts
        modules = [n.target for n in sorted(skip_path, key=graph.order.__getitem__) if n.op == "call_module"]
        if skip_path:
            skip_name = "+".join(_join(prefix, m) for m in modules) if modules else "projection"
        else:
            skip_name = "identity"
        end = _join(prefix, branch.target) if branch.op == "call_module" else None
        full = _join(prefix, block)
        index = sum(1 for r, _, _ in found if r.block == full)
        found.append((ResidualAdd(full, index, skip_name, end), node, branch))
    return found


def _trace(module: nn.Module) -> fx.GraphModule:
    return fx.symbolic_trace(module)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


def find_residual_adds(module: nn.Module) -> list[ResidualAdd]:
    """Every residual addition of ``module``, in network order (module doc, step 1).

    The whole model is traced first; where its forward does not trace (data-dependent control
    flow, say), each child is traced instead, down to the modules that do.

    Raises:
        TraceError: the model's own forward does not trace and no residual addition was found
            in its children; the message says why and how to write the plain twin by hand.
    """
    return _find(module)[0]


def _find(module: nn.Module) -> tuple[list[ResidualAdd], list[str]]:
    """``(additions, untraced modules as "name: why")``; see :func:`find_residual_adds`."""
    found: list[ResidualAdd] = []
    failures: list[str] = []

    def visit(mod: nn.Module, prefix: str) -> None:
        try:
            gm = _trace(mod)
        except Exception as err:  # fx raises TraceError, TypeError, RuntimeError... by model
            failures.append(f"{prefix or type(mod).__name__}: {_first_line(err)}")
            for name, child in mod.named_children():
                visit(child, _join(prefix, name))
            return
        found.extend(record for record, _, _ in _adds_in(gm, prefix))

    visit(module, "")
    if failures and failures[0].startswith(type(module).__name__ + ":") and not found:
        why = failures[0].split(": ", 1)[1]
        raise TraceError(f"torch.fx cannot trace {type(module).__name__} ({why}), so its residual "
                         f"additions cannot be found; {HAND_TWIN}")
    return found, failures


def residual_adds(module: nn.Module) -> TwinReport:
    """The residual additions of ``module``: its own record (a twin's, or one set by
    :func:`mark`), else found by tracing (:func:`find_residual_adds`)."""
    report = getattr(module, REPORT_ATTR, None)
    if isinstance(report, TwinReport):
        return report
    adds, untraced = _find(module)
    return TwinReport(tuple(adds), plain=False, untraced=tuple(untraced))


def mark(module: nn.Module) -> TwinReport:
    """Find the residual additions of the model as written and keep them on it
    (``module.residual_adds``), so diagnostics do not trace it again."""
    report = residual_adds(module)
    setattr(module, REPORT_ATTR, report)
    return report


def _called(gm: fx.GraphModule) -> set[str]:
    return {n.target for n in gm.graph.nodes if n.op == "call_module"}


def _delete_unused(gm: fx.GraphModule, gone: set[str]) -> list[str]:
    """Delete the modules in ``gone`` (no longer called) and the containers they leave empty
    (``downsample`` once ``downsample.0`` and ``downsample.1`` are gone); return the topmost
    deleted names. Modules the block holds but never calls (timm's ``attn_drop`` under fused
    attention) are kept: only what the removed skip used goes."""
    deleted = set()
    for target in sorted(gone, key=lambda t: -t.count(".")):
        gm.delete_submodule(target)
        deleted.add(target)
        parent = target.rpartition(".")[0]
        while parent and not any(True for _ in gm.get_submodule(parent).children()) \
                and not any(True for _ in gm.get_submodule(parent).parameters()) and parent not in _called(gm):
            gm.delete_submodule(parent)
            deleted.add(parent)
            parent = parent.rpartition(".")[0]
    return sorted(n for n in deleted if not any(n.startswith(d + ".") for d in deleted))


def plain_twin(module: nn.Module) -> nn.Module:
    """The model with every residual addition's skip removed: each ``skip + branch`` becomes
    ``branch`` (module doc, step 2). ``module`` itself is not changed.

    Returns:
        A copy of ``module`` whose blocks are traced ``GraphModule`` s without their skips;
        ``twin.residual_adds`` is the :class:`TwinReport` (``print`` it to read it).

    Raises:
        TraceError: the model, or one of its blocks, cannot be traced (the message says how
            to write the twin by hand).
    """
    adds, untraced = _find(module)
    twin = copy.deepcopy(module)
    removed_modules: list[str] = []
    blocks = list(dict.fromkeys(a.block for a in adds))
    # Innermost blocks first: tracing an outer block inlines the inner ones, which must by then
    # have lost their own additions.
    for block in sorted(blocks, key=lambda b: -len(b.split("."))):
        expected = [a for a in adds if a.block == block]
        sub = twin.get_submodule(block)
        try:
            gm = _trace(sub)
        except Exception as err:
            raise TraceError(f"torch.fx cannot trace block {block} ({type(sub).__name__}) on its own "
                             f"({_first_line(err)}); {HAND_TWIN}") from None
        found = _adds_in(gm, block, owner="")
        if [r for r, _, _ in found] != expected:
            raise TraceError(f"block {block} traced alone shows {len(found)} residual additions, the whole "
                             f"model {len(expected)}; {HAND_TWIN}")
        for _, node, branch in found:
            node.replace_all_uses_with(branch)
            gm.graph.erase_node(node)
        called = _called(gm)
        gm.graph.eliminate_dead_code()
        gm.recompile()
        removed_modules += [_join(block, m) for m in _delete_unused(gm, called - _called(gm))]
        if block:
            parent, _, name = block.rpartition(".")
            setattr(twin.get_submodule(parent), name, gm)
        else:
            twin = gm
    report = TwinReport(tuple(adds), tuple(sorted(removed_modules)), plain=True, untraced=tuple(untraced))
    setattr(twin, REPORT_ATTR, report)
    return twin
