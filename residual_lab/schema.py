"""The typed schema of a run's config: every bad value is stopped with one sentence.

One mechanism, OmegaConf's structured configs (what Hydra's structured configs are), in two
places:

- :class:`TrainerSchema` lists every ``lightning.Trainer`` argument with its type and
  Lightning's default. It is stored in Hydra's ConfigStore as ``trainer/schema`` and heads the
  defaults list of conf/trainer/default.yaml, so Hydra itself types ``trainer.*`` while it
  composes, and any Trainer argument is reachable as ``trainer.<name>=...`` (no ``+``).
- :func:`check_config` checks the whole composed config when a run starts (also a resumed
  run's saved config, which Hydra does not compose again): the top-level keys against
  :class:`RunSchema`, and every node with a ``_target_`` against a schema made from the
  target's signature (the arguments it takes and their types; :func:`target_schema`), then
  the ranges in :data:`RANGES`. A root schema in conf/config.yaml's defaults list is not used
  because ``residual_lab.bench`` and ``residual_lab.analyze`` compose config.yaml and add
  their own top-level nodes (``bench``, ``analyze``, ``run_dir``).

Every refusal is a :class:`~residual_lab.errors.UserFacingError` whose message names the key,
the value and what is valid, e.g. ``trainer.max_steps must be an integer >= 1 (or -1 to use
max_epochs), got 'abc'``; ``residual_lab.run`` prints it and exits with code 2.

This module imports no torch or Lightning at import time: ``import residual_lab`` registers
the schema for every Hydra app, test and script that composes conf/.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import fnmatch
import functools
import inspect
import os
import pathlib
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Iterator, List, Literal, Optional, Sequence, Union

from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, ValidationError

from residual_lab.errors import UserFacingError

#: The seeds numpy's legacy ``np.random.seed`` (which Lightning's ``seed_everything`` calls)
#: accepts: 0 .. 2**32 - 1.
MAX_SEED = 2**32 - 1

#: Hydra instantiate's own keys, allowed in every node with a ``_target_``.
HYDRA_KEYS = ("_target_", "_partial_", "_recursive_", "_convert_", "_args_")


# --- the Trainer, typed for Hydra -------------------------------------------------------

@dataclass
class TrainerSchema:
    """Every ``lightning.pytorch.Trainer`` argument (Lightning 2.6), its type and its default.

    Types are what a config can hold: an argument that also takes objects (``strategy``,
    ``plugins``, ``profiler``...) is ``Any`` so a ``_target_`` node fits; ``callbacks`` and
    ``logger`` are filled in by ``residual_lab.run`` from conf/callbacks and conf/logger.
    tests/test_schema.py checks this list against the installed Lightning's signature.
    """

    _target_: str = "lightning.pytorch.Trainer"
    accelerator: Any = "auto"
    strategy: Any = "auto"
    devices: Any = "auto"
    num_nodes: int = 1
    precision: Optional[Union[int, str]] = None
    logger: Any = None
    callbacks: Any = None
    fast_dev_run: Union[int, bool] = False
    max_epochs: Optional[int] = None
    min_epochs: Optional[int] = None
    max_steps: int = -1
    min_steps: Optional[int] = None
    max_time: Any = None
    limit_train_batches: Optional[Union[float, int]] = None
    limit_val_batches: Optional[Union[float, int]] = None
    limit_test_batches: Optional[Union[float, int]] = None
    limit_predict_batches: Optional[Union[float, int]] = None
    overfit_batches: Union[int, float] = 0.0
    val_check_interval: Any = None
    check_val_every_n_epoch: Optional[int] = 1
    num_sanity_val_steps: Optional[int] = None
    log_every_n_steps: Optional[int] = None
    enable_checkpointing: Optional[bool] = None
    enable_progress_bar: Optional[bool] = None
    enable_model_summary: Optional[bool] = None
    accumulate_grad_batches: int = 1
    gradient_clip_val: Optional[Union[float, int]] = None
    gradient_clip_algorithm: Optional[str] = None
    deterministic: Optional[Union[bool, str]] = None
    benchmark: Optional[bool] = None
    inference_mode: bool = True
    use_distributed_sampler: bool = True
    profiler: Any = None
    detect_anomaly: bool = False
    barebones: bool = False
    plugins: Any = None
    sync_batchnorm: bool = False
    reload_dataloaders_every_n_epochs: int = 0
    default_root_dir: Optional[str] = None
    enable_autolog_hparams: bool = True
    model_registry: Optional[str] = None


# --- the top-level keys ------------------------------------------------------------------

@dataclass
class DiagnosticsSchema:
    every_n_steps: int = MISSING


@dataclass
class RunSchema:
    """The top-level keys of conf/config.yaml (conf/config.yaml documents each).

    Groups are ``Any`` here: each node with a ``_target_`` is checked against its target's
    own signature (:func:`target_schema`).
    """

    # null for model=external: the model is as its factory builds it (the built-in models'
    # own arguments still refuse null).
    depth: Optional[int] = MISSING
    shortcut: str = MISSING
    block: Optional[str] = MISSING
    width: Optional[int] = MISSING
    norm: Optional[str] = MISSING
    seed: int = MISSING
    deterministic: bool = False
    resume: Optional[str] = None
    run_name: str = MISSING
    diagnostics: DiagnosticsSchema = dataclasses.field(default_factory=DiagnosticsSchema)
    compile: bool = False
    torch_threads: Optional[int] = None
    task: Any = None
    model: Any = None
    data: Any = None
    optimizer: Any = None
    scheduler: Any = None
    trainer: Any = None
    callbacks: Any = None
    logger: Any = None
    paths: Any = None
    protocol: Any = None


# --- ranges: what the types do not say ----------------------------------------------------

@dataclass(frozen=True)
class Range:
    """A condition on a value the type allows, and how to say it (``>= 1``).

    Args:
        check: True when the (typed, non-null) value is valid.
        valid: the condition in words, completing "<key> must be ...".
    """

    check: Callable[[Any], bool]
    valid: str


def _at_least(low: float) -> Range:
    return Range(lambda v: not _is_number(v) or v >= low, f">= {low:g}")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


POSITIVE = Range(lambda v: not _is_number(v) or v > 0, "> 0")
_FRACTION_OR_COUNT = Range(lambda v: not _is_number(v) or (v >= 0 if isinstance(v, int) else 0 <= v <= 1),
                           "a batch count >= 0 or a fraction from 0.0 to 1.0")

#: Conditions beyond the type, by dotted key (``*`` matches any name, e.g. any callback).
#: Checked after the types, on the values a run will use.
RANGES: dict[str, Range] = {
    "depth": _at_least(1),
    "width": _at_least(1),
    "seed": Range(lambda v: 0 <= v <= MAX_SEED, f"from 0 to {MAX_SEED} (the seeds numpy accepts)"),
    "torch_threads": _at_least(1),
    "diagnostics.every_n_steps": _at_least(1),
    "task.schedule_steps": _at_least(1),
    "optimizer.lr": POSITIVE,
    "optimizer.momentum": _at_least(0),
    "optimizer.weight_decay": _at_least(0),
    "scheduler.warmup_steps": _at_least(0),
    "scheduler.warmup_factor": POSITIVE,
    "scheduler.warmup_mode": Range(lambda v: v in ("constant", "linear"), "constant or linear"),
    "scheduler.gamma": POSITIVE,
    "scheduler.min_factor": _at_least(0),
    "scheduler.milestones": Range(lambda v: all(0 <= m <= 1 for m in v),
                                  "a list of fractions of the run from 0.0 to 1.0"),
    "data.num_classes": _at_least(2),
    "data.batch_size": _at_least(1),
    "data.eval_batch_size": _at_least(1),
    "data.val_size": _at_least(0),
    "data.subset": _at_least(1),
    "data.split_seed": _at_least(0),
    "data.shuffle_seed": _at_least(0),
    "data.pad": _at_least(0),
    "data.source.num_train": _at_least(1),
    "data.source.num_test": _at_least(1),
    "data.source.num_classes": _at_least(2),
    "data.source.image_size": _at_least(1),
    "data.source.noise": _at_least(0),
    "callbacks.*.every_n_steps": _at_least(1),
    "callbacks.*.every_n_train_steps": _at_least(0),
    "callbacks.*.refresh_rate": _at_least(0),
    "trainer.max_steps": Range(lambda v: v == -1 or v >= 1, ">= 1 (or -1 to use max_epochs)"),
    "trainer.max_epochs": Range(lambda v: v >= -1, ">= 0 (or -1 for no limit)"),
    "trainer.min_steps": _at_least(0),
    "trainer.min_epochs": _at_least(0),
    "trainer.num_nodes": _at_least(1),
    "trainer.log_every_n_steps": _at_least(1),
    "trainer.check_val_every_n_epoch": _at_least(1),
    "trainer.num_sanity_val_steps": _at_least(-1),
    "trainer.accumulate_grad_batches": _at_least(1),
    "trainer.gradient_clip_val": _at_least(0),
    "trainer.gradient_clip_algorithm": Range(lambda v: v in ("norm", "value"), "norm or value"),
    "trainer.reload_dataloaders_every_n_epochs": _at_least(0),
    "trainer.val_check_interval": Range(
        lambda v: not _is_number(v) or (v >= 1 if isinstance(v, int) else 0 < v <= 1),
        "optimizer steps >= 1 (an integer) or a fraction of an epoch from 0.0 to 1.0"),
    "trainer.limit_train_batches": _FRACTION_OR_COUNT,
    "trainer.limit_val_batches": _FRACTION_OR_COUNT,
    "trainer.limit_test_batches": _FRACTION_OR_COUNT,
    "trainer.devices": Range(lambda v: not isinstance(v, int) or isinstance(v, bool) or v >= 1 or v == -1,
                             "a count >= 1, -1 (all), 'auto' or a list of device indices"),
}


def _literal_choices(target: str, name: str) -> tuple | None:
    """The values a ``Literal`` annotation of the target's argument allows (None if not one)."""
    hints = _hints(target)
    hint = hints.get(name)
    if hint is None:
        return None
    choices: list = []
    for arg in _union_args(hint):
        if typing.get_origin(arg) is not Literal:
            return None
        choices += [c for c in typing.get_args(arg) if c not in choices]
    return tuple(choices) or None


# --- schemas made from a target's signature ------------------------------------------------

_PRIMITIVES = (int, float, bool, str)


def _union_args(hint: Any) -> tuple:
    """The members of a Union (``X | Y`` too) without None; ``(hint,)`` for anything else."""
    if typing.get_origin(hint) in (Union, types.UnionType):
        return tuple(a for a in typing.get_args(hint) if a is not type(None))
    return (hint,)


def config_type(hint: Any) -> Any:
    """The OmegaConf type of a config value that feeds an argument annotated ``hint``.

    Primitives and Unions of primitives keep their type (``Literal`` values give theirs);
    ``Sequence[float]`` and the like become ``List[float]``. An argument that also takes an
    object (a Tensor for torch's ``lr``, a Strategy for the Trainer's ``strategy``...) is typed
    by its primitive members when a tensor is the only object (a config cannot hold one), else
    ``Any``, so a ``_target_`` node still fits.
    """
    if hint is Any or hint is inspect.Parameter.empty:
        return Any
    optional = typing.get_origin(hint) in (Union, types.UnionType) and type(None) in typing.get_args(hint)
    members: list = []
    for arg in _union_args(hint):
        origin = typing.get_origin(arg)
        if origin is Literal:
            members += [type(v) for v in typing.get_args(arg)]
        elif arg in _PRIMITIVES:
            members.append(arg)
        elif getattr(arg, "__name__", "") == "Tensor":
            continue
        elif arg in (pathlib.Path, os.PathLike):
            members.append(str)  # a config holds a path as a string
        elif origin in (list, tuple, collections.abc.Sequence) and \
                len(set(typing.get_args(arg)) - {Ellipsis}) == 1 and typing.get_args(arg)[0] in _PRIMITIVES:
            members.append(List[typing.get_args(arg)[0]])  # type: ignore[valid-type]
        else:
            return Any
    members = list(dict.fromkeys(members))
    if not members:
        return Any
    if any(typing.get_origin(m) is list for m in members) and len(members) > 1:
        return Any
    core = members[0] if len(members) == 1 else Union[tuple(members)]  # type: ignore[valid-type]
    return Optional[core] if optional else core


def _callable(target: str) -> Callable | None:
    from hydra.utils import get_object

    try:
        return get_object(target)
    except Exception:
        return None


@functools.lru_cache(maxsize=None)
def _signature(target: str) -> inspect.Signature | None:
    obj = _callable(target)
    if obj is None:
        return None
    try:
        return inspect.signature(obj)
    except (TypeError, ValueError):
        return None


@functools.lru_cache(maxsize=None)
def _hints(target: str) -> dict[str, Any]:
    obj = _callable(target)
    fn = obj.__init__ if inspect.isclass(obj) else obj
    try:
        return typing.get_type_hints(fn)
    except Exception:  # an annotation that does not resolve: no types, names still checked
        return {}


@functools.lru_cache(maxsize=None)
def target_schema(target: str) -> tuple[type, bool] | None:
    """A dataclass with one typed field per argument of ``target``, and whether it is open.

    Open (unknown keys allowed) when the target takes ``**kwargs``. None when the target cannot
    be imported or inspected (instantiate then says so itself).
    """
    sig = _signature(target)
    if sig is None:
        return None
    hints = _hints(target)
    fields = [(k, Any, dataclasses.field(default=None)) for k in HYDRA_KEYS]
    open_ = False
    for name, p in sig.parameters.items():
        if p.kind == p.VAR_KEYWORD:
            open_ = True
        elif p.kind != p.VAR_POSITIONAL and name not in HYDRA_KEYS:
            fields.append((name, config_type(hints.get(name, p.annotation)), dataclasses.field(default=MISSING)))
    name = "Schema_" + target.replace(".", "_")
    return dataclasses.make_dataclass(name, fields), open_


# --- checking a composed config -------------------------------------------------------------

class _Unresolved:
    """A value that needs the Hydra runtime (``${hydra:...}``) outside a Hydra app: not checked."""


UNRESOLVED = _Unresolved()


def show(value: Any) -> str:
    """A value as the person typed it: strings quoted, lists and numbers plain."""
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


def describe(hint: Any) -> str:
    """``an integer``, ``a number or null``, ``true or false``..."""
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    if len(_union_args(hint)) > 1:
        names[bool] = "a boolean (true/false)"
    optional = typing.get_origin(hint) is Union and type(None) in typing.get_args(hint)
    parts = []
    for arg in _union_args(hint):
        if typing.get_origin(arg) is list:
            inner = typing.get_args(arg)[0]
            parts.append("a list of " + {int: "integers", float: "numbers", bool: "booleans", str: "strings"}[inner])
        else:
            parts.append(names.get(arg, getattr(arg, "__name__", str(arg))))
    if float in _union_args(hint) and int in _union_args(hint):
        parts.remove("an integer")
    text = " or ".join(dict.fromkeys(parts))
    return text + (", or null" if optional else "")


def _range_for(key: str) -> Range | None:
    if key in RANGES:
        return RANGES[key]
    return next((r for pattern, r in RANGES.items() if "*" in pattern and fnmatch.fnmatchcase(key, pattern)), None)


def closest(name: str, candidates: Sequence[str]) -> str | None:
    """The candidate nearest to a misspelt name (difflib), or None if none is near."""
    found = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return found[0] if found else None


def unknown_key_message(key: str, value: Any, candidates: Sequence[str], owner: str = "") -> str:
    """``unknown config key 'detph' (+detph=56); did you mean 'depth'?``, in one sentence."""
    prefix, _, name = key.rpartition(".")
    near = closest(name, candidates)
    where = f": {owner} takes no '{name}'" if owner else ""
    if near:
        hint = f"did you mean '{prefix + '.' if prefix else ''}{near}'?"
    else:
        shown = ", ".join(sorted(candidates)[:40]) + (", ..." if len(candidates) > 40 else "")
        hint = f"valid keys{' under ' + prefix if prefix else ''}: {shown}"
    return f"unknown config key '{key}' (set to {show(value)}){where}; {hint}"


def value_error(key: str, value: Any, hint: Any, choices: tuple | None = None) -> str:
    """``<key> must be <type> <range>, got <value>``."""
    rng = _range_for(key)
    if choices:
        return f"{key} must be one of {', '.join(show(c) for c in choices)}, got {show(value)}"
    text = describe(hint)
    if rng is not None:
        core, nullable, _ = text.partition(", or null")
        text = f"{core} {rng.valid}{nullable}"
    return f"{key} must be {text}, got {show(value)}"


def _resolve(node: DictConfig | ListConfig, prefix: str = "") -> Any:
    """The config as plain values, interpolations resolved.

    An interpolation that needs the Hydra runtime (``${hydra:...}`` in a test that composes
    without it) is :data:`UNRESOLVED` and left unchecked; any other that fails names its key.
    A :class:`UserFacingError` raised by a resolver (the data's class count when the data is
    missing) is raised as it is.
    """
    items = node.items_ex(resolve=False) if isinstance(node, DictConfig) else enumerate(node)
    out: dict | list = {} if isinstance(node, DictConfig) else []
    for key, _ in list(items):
        if isinstance(node, ListConfig):
            full = f"{prefix}[{key}]"
        else:
            full = f"{prefix}.{key}" if prefix else str(key)
        try:
            value = node[key]
        except InterpolationResolutionError as err:
            cause = _user_facing_cause(err)
            if cause is not None:
                raise cause from None
            if "HydraConfig was not set" in str(err):
                value = UNRESOLVED
            else:
                raw = OmegaConf.to_container(node, resolve=False)[key]
                raise UserFacingError(f"{full}={raw} cannot be resolved: {str(err).splitlines()[0]}") from None
        if isinstance(value, (DictConfig, ListConfig)):
            value = _resolve(value, full)
        if isinstance(out, dict):
            out[key] = value
        else:
            out.append(value)
    return out


def _user_facing_cause(err: BaseException) -> UserFacingError | None:
    """The UserFacingError a resolver raised, under OmegaConf's wrapping (None if none)."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, UserFacingError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def _check_fields(schema: type, values: dict, prefix: str, *, closed: bool, owner: str = "",
                  choices_of: str | None = None, converted: dict | None = None) -> None:
    """Assign each value to a structured config of ``schema``: OmegaConf checks the type.

    Values OmegaConf converts (``"yes"`` to true, ``"5"`` to 5) are put in ``converted``, by
    dotted key, so the run uses the typed value.
    """
    conf = OmegaConf.structured(schema)
    fields = typing.get_type_hints(schema)
    for key, value in values.items():
        full = f"{prefix}.{key}" if prefix else key
        if value is UNRESOLVED or (isinstance(value, dict) and "_target_" in value):
            continue  # checked as its own node
        if key not in fields:
            if closed:
                known = [f for f in fields if f not in HYDRA_KEYS]
                raise UserFacingError(unknown_key_message(full, value, known, owner))
            continue
        if isinstance(value, dict) and fields[key] is not Any and dataclasses.is_dataclass(fields[key]):
            _check_fields(fields[key], value, full, closed=True, converted=converted)
            continue
        choices = _literal_choices(choices_of, key) if choices_of else None
        try:
            conf[key] = value
        except ValidationError:
            raise UserFacingError(value_error(full, value, fields[key])) from None
        typed = conf[key]
        if converted is not None and not isinstance(value, (dict, list)) and type(typed) is not type(value):
            converted[full] = typed
        if choices and value is not None and value not in choices and not isinstance(value, dict):
            raise UserFacingError(value_error(full, value, fields[key], choices))


def _target_nodes(values: Any, prefix: str = "") -> Iterator[tuple[str, dict]]:
    """``(dotted key, node)`` of every dict with a ``_target_``, outermost first."""
    if isinstance(values, dict):
        if isinstance(values.get("_target_"), str):
            yield prefix, values
        for key, value in values.items():
            yield from _target_nodes(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(values, list):
        for i, value in enumerate(values):
            yield from _target_nodes(value, f"{prefix}[{i}]")


def _leaves(values: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(values, dict):
        for key, value in values.items():
            yield from _leaves(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, values


def check_overrides(overrides: Sequence[str]) -> None:
    """Refuse a ``+key=value`` override that adds a top-level key no run reads.

    Hydra accepts ``+detph=56`` (it is what Hydra suggests for ``detph=56``) and the run would
    ignore it; the closest real key is named instead. Keys added deeper are checked by the
    schema of the node they land in (:func:`check_config`).
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    known = [f.name for f in dataclasses.fields(RunSchema)]
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.key_or_group
        adds = override.is_add() or override.is_force_add()  # +key=... or ++key=...
        if adds and override.package is None and "/" not in key and "." not in key and key not in known:
            raise UserFacingError(unknown_key_message(key, override.value(), known))


def _hydra_overrides() -> list[str]:
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    except Exception:
        return []


def check_config(cfg: DictConfig, overrides: Sequence[str] | None = None) -> None:
    """Check every value of a composed run config; raise a one-sentence UserFacingError.

    Args:
        cfg: the composed (or a resumed run's saved) config.
        overrides: the command line's overrides (default: the running Hydra app's), to refuse
            unknown keys added with ``+``.
    """
    check_overrides(_hydra_overrides() if overrides is None else overrides)
    values = _resolve(cfg)
    converted: dict[str, Any] = {}
    _check_fields(RunSchema, values, "", closed=False, converted=converted)
    for path, node in _target_nodes(values):
        found = target_schema(node["_target_"])
        if found is None:
            continue
        schema, open_ = found
        _check_fields(schema, node, path, closed=not open_, owner=node["_target_"], choices_of=node["_target_"],
                      converted=converted)
    typed_values = dict(_leaves(values))  # as typed; messages show what was written
    for key, typed in converted.items():
        parent_key, _, name = key.rpartition(".")
        parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
        if not OmegaConf.is_interpolation(parent, name):
            parent[name] = typed
        typed_values[key] = typed
    written = dict(_leaves(values))
    for key, value in typed_values.items():
        rng = _range_for(key)
        if rng is None or value is None or value is UNRESOLVED or isinstance(value, dict):
            continue
        try:
            ok = rng.check(value)
        except TypeError:
            ok = False
        if not ok:
            raise UserFacingError(f"{key} must be {rng.valid}, got {show(written[key])}")


# --- registration ------------------------------------------------------------------------------

def num_classes_of(source: DictConfig) -> int:
    """Resolver ``${num_classes_of:${.source}}``: how many classes a data source holds, read
    from the source itself (an image folder's class folders, CIFAR-10/100 by name) without
    loading any image, so no ``data.num_classes`` is needed."""
    from hydra.utils import instantiate

    count = getattr(instantiate(source), "num_classes", None)
    if count is None:
        raise UserFacingError(f"{source._target_} cannot say how many classes it holds; set data.num_classes")
    return int(count)


def register() -> None:
    """Store :class:`TrainerSchema` as ``trainer/schema`` and add the ``num_classes_of``
    resolver. Idempotent; ``import residual_lab`` calls it."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(group="trainer", name="schema", node=TrainerSchema)
    if not OmegaConf.has_resolver("num_classes_of"):
        OmegaConf.register_new_resolver("num_classes_of", num_classes_of)
