"""The run config's types and ranges, and the one sentence that refuses a bad value.

Types come from signatures, never from a copy: each node with a ``_target_`` is checked against a
dataclass made from its target's signature (:func:`schema_of`), the top-level keys against
:class:`RunSchema`. The Trainer's is also Hydra's ``trainer/schema`` (stored by
:func:`residual_lab.resolvers.register`), so Hydra types ``trainer.*`` while it composes.

A range is written once, next to the argument it guards (``batch_size: Annotated[int,
at_least(1)]``); arguments we cannot annotate (torch, Lightning) have theirs in
:data:`RANGES_BY_TARGET`; conditions between keys are :data:`RULES`. This module imports nothing
of residual_lab: a refusal is a :class:`ConfigError`, raised on as a ``UserFacingError`` by
:func:`residual_lab.validation.validate_config`.
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
from typing import Annotated, Any, Callable, List, Literal, Mapping, Optional, Sequence, Union

from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, ValidationError

#: Hydra instantiate's own keys, allowed in every node with a ``_target_``.
HYDRA_KEYS = ("_target_", "_partial_", "_recursive_", "_convert_", "_args_")
#: The seeds numpy's ``np.random.seed`` (which Lightning's ``seed_everything`` calls) accepts.
MAX_SEED = 2**32 - 1


class ConfigError(ValueError):
    """A config value no run can use, said in one sentence naming the key, value and what is valid."""


# --- ranges ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Range:
    """A condition on a value its type allows; ``valid`` completes "<key> must be ..."."""

    check: Callable[[Any], bool]
    valid: str

    def allows(self, value: Any) -> bool:
        try:
            return bool(self.check(value))
        except TypeError:
            return False


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def at_least(low: float) -> Range:
    return Range(lambda v: not _number(v) or v >= low, f">= {low:g}")


def one_of(*choices: Any) -> Range:
    return Range(lambda v: v in choices, " or ".join(map(str, choices)))


POSITIVE = Range(lambda v: not _number(v) or v > 0, "> 0")
#: A count of at least one: steps between measurements, heads, a patch's side.
PositiveInt = Annotated[int, at_least(1)]
SEED = Range(lambda v: 0 <= v <= MAX_SEED, f"from 0 to {MAX_SEED} (the seeds numpy accepts)")
FRACTION_OR_COUNT = Range(lambda v: not _number(v) or (v >= 0 if isinstance(v, int) else 0 <= v <= 1),
                          "a batch count >= 0 or a fraction from 0.0 to 1.0")
#: run_name names the run's directory, its TensorBoard run and its exported records (<name>-seed<k>).
RUN_NAME = Range(lambda v: bool(v) and "/" not in v,
                 "a name without '/' (it names the run's directory and its records)")
#: Precisions our data path feeds: Lightning's "-true" 16/64-bit casts the weights but not the
#: uint8 images this project normalises after the transfer, and transformer-engine is for H100s.
PRECISIONS = ("32-true", "32", 32, "16-mixed", "16", 16, "bf16-mixed", "bf16")

#: Ranges of arguments whose signature is not ours to annotate, by target (``*`` matches a name).
RANGES_BY_TARGET: dict[str, dict[str, Range]] = {
    "torch.optim.*": {"lr": POSITIVE, "weight_decay": at_least(0),
                      "momentum": Range(lambda v: 0 <= v < 1, ">= 0 and < 1 (the fraction of the last update kept)")},
    "lightning.pytorch.Trainer": {
        "max_steps": Range(lambda v: v == -1 or v >= 1, ">= 1 (or -1 to use max_epochs)"),
        "max_epochs": Range(lambda v: v >= -1, ">= 0 (or -1 for no limit)"),
        "min_steps": at_least(0), "min_epochs": at_least(0), "num_nodes": at_least(1),
        "log_every_n_steps": at_least(1), "check_val_every_n_epoch": at_least(1),
        "num_sanity_val_steps": at_least(-1), "accumulate_grad_batches": at_least(1),
        "gradient_clip_val": at_least(0), "gradient_clip_algorithm": one_of("norm", "value"),
        "reload_dataloaders_every_n_epochs": at_least(0),
        "val_check_interval": Range(lambda v: not _number(v) or (v >= 1 if isinstance(v, int) else 0 < v <= 1),
                                    "optimizer steps >= 1 (an integer) or a fraction of an epoch from 0.0 to 1.0"),
        "limit_train_batches": FRACTION_OR_COUNT, "limit_val_batches": FRACTION_OR_COUNT,
        "limit_test_batches": FRACTION_OR_COUNT,
        "devices": Range(lambda v: not isinstance(v, int) or isinstance(v, bool) or v >= 1 or v == -1,
                         "a count >= 1, -1 (all), 'auto' or a list of device indices"),
        "precision": Range(lambda v: v in PRECISIONS, "one of 32-true, 16-mixed, bf16-mixed (64-bit, 16-true, "
                                                      "bf16-true and transformer-engine are not supported)")},
    "lightning.pytorch.callbacks.*": {"every_n_train_steps": at_least(0)},
    "hydra_plugins.hydra_joblib_launcher.*": {
        "n_jobs": Range(lambda v: v != 0, "a number of parallel jobs >= 1, or negative (-1: one per CPU core)")},
}


# --- the top-level keys ------------------------------------------------------------------------

@dataclass
class DiagnosticsSchema:
    every_n_steps: Annotated[int, at_least(1)] = MISSING


@dataclass
class RunSchema:
    """The top-level keys of conf/config.yaml (documented there); groups are checked by target.

    Open: ``residual_lab.bench`` and ``residual_lab.analyze`` add their own top-level nodes; an
    analysis' node is checked against its probe's ``Options`` (:func:`check_config`'s ``nodes``).
    """

    OPEN: typing.ClassVar[bool] = True
    depth: Annotated[Optional[int], at_least(1)] = MISSING  # null for model=external
    shortcut: str = MISSING
    block: Optional[str] = MISSING
    width: Annotated[Optional[int], at_least(1)] = MISSING
    norm: Optional[str] = MISSING
    seed: Annotated[int, SEED] = MISSING
    deterministic: bool = False
    resume: Optional[str] = None
    run_name: Annotated[str, RUN_NAME] = MISSING
    diagnostics: DiagnosticsSchema = dataclasses.field(default_factory=DiagnosticsSchema)
    compile: bool = False
    torch_threads: Annotated[Optional[int], at_least(1)] = None
    analyze: Any = None


# --- schemas made from signatures ------------------------------------------------------------

_PRIMITIVES = (int, float, bool, str)


def _union_args(hint: Any) -> tuple:
    """The members of a Union (``X | Y`` too) without None; ``(hint,)`` for anything else."""
    if typing.get_origin(hint) in (Union, types.UnionType):
        return tuple(a for a in typing.get_args(hint) if a is not type(None))
    return (hint,)


def _unannotated(hint: Any) -> tuple[Any, Range | None]:
    """``Annotated[int, at_least(1)]`` -> ``(int, at_least(1))``, also inside an Optional."""
    for arg in (hint, *_union_args(hint)):
        if typing.get_origin(arg) is Annotated:
            rng = next((m for m in arg.__metadata__ if isinstance(m, Range)), None)
            return (arg.__origin__ if arg is hint else Optional[arg.__origin__]), rng
    return hint, None


def config_type(hint: Any) -> Any:
    """The OmegaConf type of a config value that feeds an argument annotated ``hint``.

    Primitives and their Unions keep their type (``Literal`` values give theirs); ``Sequence[float]``
    becomes ``List[float]``; a path is a string. An argument that also takes an object is ``Any``
    (so a ``_target_`` node fits) unless the object is a tensor, which no config holds.
    """
    hint = _unannotated(hint)[0]
    if hint is Any or hint is inspect.Parameter.empty:
        return Any
    members: list = []
    for arg in _union_args(hint):
        origin, args = typing.get_origin(arg), typing.get_args(arg)
        if origin is Literal:
            members += [type(v) for v in args]
        elif arg in _PRIMITIVES or arg in (pathlib.Path, os.PathLike):
            members.append(arg if arg in _PRIMITIVES else str)
        elif getattr(arg, "__name__", "") == "Tensor":
            continue
        elif origin in (list, tuple, collections.abc.Sequence) and len(set(args) - {Ellipsis}) == 1 and args[0] in _PRIMITIVES:
            members.append(List[args[0]])  # type: ignore[valid-type]
        else:
            return Any
    members = list(dict.fromkeys(members))
    if not members or (len(members) > 1 and any(typing.get_origin(m) is list for m in members)):
        return Any
    core = members[0] if len(members) == 1 else Union[tuple(members)]  # type: ignore[valid-type]
    return Optional[core] if type(None) in typing.get_args(hint) else core


def _default(value: Any) -> Any:
    ok = value is None or isinstance(value, _PRIMITIVES)
    return value if ok else MISSING


@functools.lru_cache(maxsize=None)
def schema_of(obj: Callable, target: str = "") -> type | None:
    """A dataclass with one typed field per argument of ``obj`` (a class, function or dataclass),
    with the signature's default; ``OPEN`` when ``obj`` takes ``**kwargs``. Each field's metadata
    holds its ``range``, its ``choices`` (a ``Literal``), the ``nested`` dataclass it is and whether
    it is ``required`` (no default).
    None when ``obj`` has no signature (instantiate then speaks for itself)."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    try:
        hints = typing.get_type_hints(obj if dataclasses.is_dataclass(obj) else
                                      obj.__init__ if inspect.isclass(obj) else obj, include_extras=True)
    except Exception:  # an annotation that does not resolve: names are still checked
        hints = {}
    ranges = ranges_of(target, f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}")
    fields, open_ = [], getattr(obj, "OPEN", False)
    for name, p in sig.parameters.items():
        if p.kind == p.VAR_KEYWORD:
            open_ = True
        elif p.kind != p.VAR_POSITIONAL and name not in HYDRA_KEYS:
            hint = hints.get(name, p.annotation)
            plain, rng = _unannotated(hint)
            literal = [c for a in _union_args(plain) for c in typing.get_args(a)] \
                if all(typing.get_origin(a) is Literal for a in _union_args(plain)) else []
            nested = next((a for a in _union_args(plain) if dataclasses.is_dataclass(a)), None)
            meta = {"range": rng or ranges.get(name), "choices": tuple(literal) or None, "nested": nested,
                    "required": p.default is p.empty}
            fields.append((name, Any if nested else config_type(plain),
                           dataclasses.field(default=_default(p.default), metadata=meta)))
    schema = dataclasses.make_dataclass(f"{getattr(obj, '__name__', 'Target')}Schema", fields)
    schema.OPEN = open_
    return schema


def ranges_of(*names: str) -> dict[str, Range]:
    """:data:`RANGES_BY_TARGET`'s ranges for the first pattern any of a target's ``names`` matches."""
    return next((r for pattern, r in RANGES_BY_TARGET.items()
                 if any(fnmatch.fnmatchcase(n, pattern) for n in names)), {})


def target_schema(target: str) -> type | None:
    from hydra.utils import get_object

    try:
        return schema_of(get_object(target), target)
    except Exception:  # not importable: instantiate says so
        return None


def trainer_schema() -> type:
    """``lightning.pytorch.Trainer``'s arguments as a dataclass Hydra can type ``trainer.*`` with."""
    fields = [("_target_", str, dataclasses.field(default="lightning.pytorch.Trainer"))]
    fields += [(f.name, f.type, dataclasses.field(default=f.default, metadata=f.metadata))
               for f in dataclasses.fields(target_schema("lightning.pytorch.Trainer"))]
    return dataclasses.make_dataclass("TrainerSchema", fields)


def out_of_range(obj: Callable, prefix: str, arguments: dict) -> str | None:
    """The sentence for the first argument of ``obj`` outside its range (None if none is), naming
    it as the config key ``<prefix>.<name>``: a constructor checks its own ``Annotated`` limits."""
    for f in dataclasses.fields(schema_of(obj)):
        rng, value = f.metadata["range"], arguments.get(f.name)
        if rng is not None and value is not None and not rng.allows(value):
            return f"{prefix}.{f.name} must be {rng.valid}, got {show(value)}"
    return None


def field_range(schema: Any, key: str) -> Range | None:
    found = {f.name: f for f in dataclasses.fields(schema)}.get(key) if dataclasses.is_dataclass(schema) else None
    return found.metadata.get("range") if found is not None else None


# --- sentences -------------------------------------------------------------------------------

def show(value: Any) -> str:
    """A value as the person typed it: strings quoted, lists and numbers plain."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return repr(value) if isinstance(value, str) else str(value)


def describe(hint: Any) -> str:
    """``an integer``, ``a number, or null``, ``true or false``..."""
    args = _union_args(hint)
    names = {int: "an integer", float: "a number", str: "a string",
             bool: "a boolean (true/false)" if len(args) > 1 else "true or false"}
    plural = {int: "integers", float: "numbers", bool: "booleans", str: "strings"}
    parts = [f"a list of {plural[typing.get_args(a)[0]]}" if typing.get_origin(a) is list
             else names.get(a, getattr(a, "__name__", str(a))) for a in args if not (a is int and float in args)]
    return " or ".join(dict.fromkeys(parts)) + (", or null" if type(None) in typing.get_args(hint) else "")


def closest(name: str, candidates: Sequence[str]) -> str | None:
    """The candidate nearest to a misspelt name (difflib), or None if none is near."""
    found = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return found[0] if found else None


def one_node_down(name: str, tree: Any) -> list[str]:
    """The keys called ``name`` one node below the top of ``tree`` (a plain dict): ``model.init``
    for ``init``, ``optimizer.lr`` for ``lr``."""
    return [f"{key}.{name}" for key, node in (tree or {}).items() if isinstance(node, dict) and name in node]


def unknown_key_message(key: str, value: Any, candidates: Sequence[str], owner: str = "",
                        below: Sequence[str] = ()) -> str:
    """``unknown config key 'detph' (set to 56); did you mean 'depth'?``; ``below``: keys of that
    name one node down (:func:`one_node_down`), suggested when no candidate is near."""
    prefix, _, name = key.rpartition(".")
    near = closest(name, candidates)
    where = f": {owner} takes no '{name}'" if owner else ""
    if near:
        hint = f"did you mean '{prefix + '.' if prefix else ''}{near}'?"
    elif below:
        hint = f"did you mean {' or '.join(repr(b) for b in below)}?"
    elif not candidates:
        hint = f"no key can be set under {prefix}"
    else:
        shown = ", ".join(sorted(candidates)[:40]) + (", ..." if len(candidates) > 40 else "")
        hint = f"valid keys{' under ' + prefix if prefix else ''}: {shown}"
    return f"unknown config key '{key}' (set to {show(value)}){where}; {hint}"


def value_error(key: str, value: Any, hint: Any, rng: Range | None = None) -> str:
    """``<key> must be <type> <range>, got <value>``."""
    core, nullable, _ = describe(hint).partition(", or null")
    return f"{key} must be {core}{' ' + rng.valid if rng else ''}{nullable}, got {show(value)}"


# --- checking a composed config ---------------------------------------------------------------

UNRESOLVED = object()  #: a ``${hydra:...}`` value outside a Hydra app: not checked


def _resolve(node: DictConfig | ListConfig, prefix: str = "") -> Any:
    """The config as plain values; an interpolation that fails names its key (the resolver's own
    error is the ConfigError's cause, e.g. the data's class count when the data is missing)."""
    is_dict = isinstance(node, DictConfig)
    out: dict | list = {} if is_dict else []
    for key in list(node.keys() if is_dict else range(len(node))):
        full = (f"{prefix}.{key}" if prefix else str(key)) if is_dict else f"{prefix}[{key}]"
        try:
            value = node[key]
        except InterpolationResolutionError as err:
            if "HydraConfig was not set" not in str(err):
                raw = OmegaConf.to_container(node, resolve=False)[key]
                raise ConfigError(f"{full}={raw} cannot be resolved: {str(err).splitlines()[0]}") from err
            value = UNRESOLVED
        if isinstance(value, (DictConfig, ListConfig)):
            value = _resolve(value, full)
        if is_dict:
            out[key] = value
        else:
            out.append(value)
    return out


def _check(schema: type, values: dict, node: DictConfig, prefix: str, owner: str = "") -> None:
    """Type every value through a structured config of ``schema`` (OmegaConf's check), then its
    range. A value OmegaConf converts (``"7"`` to 7) is written back into ``node`` typed."""
    typed = OmegaConf.structured(schema)
    fields = {f.name: f for f in dataclasses.fields(schema)}
    for key, value in values.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key in HYDRA_KEYS or value is UNRESOLVED or (isinstance(value, dict) and "_target_" in value):
            continue  # a node of its own
        if key not in fields:
            if not schema.OPEN:
                raise ConfigError(unknown_key_message(full, value, settable(schema, values), owner))
            continue
        meta = fields[key].metadata
        if meta.get("nested") and isinstance(value, dict):
            _check(schema_of(meta["nested"]), value, node[key], full)
            continue
        try:
            typed[key] = value
        except ValidationError:
            raise ConfigError(value_error(full, value, fields[key].type, meta.get("range"))) from None
        if not isinstance(value, (dict, list)) and type(typed[key]) is not type(value) \
                and not OmegaConf.is_interpolation(node, key):
            node[key] = values[key] = typed[key]
        rng, choices = meta.get("range"), meta.get("choices")
        if choices and value is not None and typed[key] not in choices:
            raise ConfigError(f"{full} must be one of {', '.join(map(show, choices))}, got {show(value)}")
        if rng and typed[key] is not None and not isinstance(value, dict) and not rng.allows(typed[key]):
            raise ConfigError(f"{full} must be {rng.valid}, got {show(value)}")


def settable(schema: type, node: Any) -> list[str]:
    """The keys a config sets: of a ``_partial_`` node, not the arguments it lacks a default for
    (an optimizer's ``params``, a schedule's ``total_steps``), which the code passes."""
    partial = bool(node.get("_partial_")) if hasattr(node, "get") else False
    return [f.name for f in dataclasses.fields(schema) if not (partial and f.metadata.get("required"))]


def _target_nodes(values: Any, prefix: str = ""):
    """``(dotted key, node)`` of every dict with a ``_target_``, outermost first."""
    if isinstance(values, dict):
        if isinstance(values.get("_target_"), str):
            yield prefix, values
        for key, value in values.items():
            yield from _target_nodes(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(values, list):
        for i, value in enumerate(values):
            yield from _target_nodes(value, f"{prefix}[{i}]")


def check_overrides(overrides: Sequence[str], cfg: DictConfig | None = None) -> None:
    """Refuse ``+detph=56``: Hydra adds a top-level key nothing reads (and suggests it for ``detph=56``).
    ``cfg``: the composed config, to name a key one node down (``+init=fixup``: model.init)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    known = [f.name for f in dataclasses.fields(RunSchema)]
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.key_or_group
        if (override.is_add() or override.is_force_add()) and override.package is None \
                and "/" not in key and "." not in key and key not in known:
            tree = OmegaConf.to_container(cfg, resolve=False) if cfg is not None else None
            raise ConfigError(unknown_key_message(key, override.value(), known, below=one_node_down(key, tree)))


def _hydra_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def check_config(cfg: DictConfig, overrides: Sequence[str] | None = None,
                 nodes: Mapping[str, type] | None = None) -> None:
    """Check every value of a composed (or a resumed run's saved) config; raise a ConfigError.

    Args:
        overrides: the command line's (default: the running Hydra app's), to refuse ``+`` keys.
        nodes: dataclasses of the keys of nodes no target speaks for (an analysis' probe options).
    """
    check_overrides(_hydra_overrides() if overrides is None else overrides, cfg)
    _check(schema_of(RunSchema), _resolve(cfg), cfg, "")
    values = _resolve(cfg)  # again: a top-level value converted (deterministic=2 -> true) reaches its interpolations
    for path, schema in (nodes or {}).items():
        node = functools.reduce(lambda d, key: d[key], path.split("."), values)
        _check(schema_of(schema), node, OmegaConf.select(cfg, path), path)
    for path, node in _target_nodes(values):
        schema = target_schema(node["_target_"])
        if schema is not None:
            _check(schema, node, OmegaConf.select(cfg, path), path, owner=node["_target_"])
    for rule in RULES:
        if (message := rule(values)) is not None:
            raise ConfigError(message)


def check_ranges(node: DictConfig, path: str) -> None:
    """A ``_target_`` node typed by someone else's dataclass (Hydra's launcher: the plugin's own)
    against its target's :data:`RANGES_BY_TARGET`; raise a ConfigError."""
    values = _resolve(node, path)
    for key, rng in ranges_of(str(values.get("_target_", ""))).items():
        if values.get(key) is not None and not rng.allows(values[key]):
            raise ConfigError(f"{path}.{key} must be {rng.valid}, got {show(values[key])}")


# --- rules between keys ---------------------------------------------------------------------------

def _warmup_within_run(v: dict) -> str | None:
    warmup = (v.get("scheduler") or {}).get("warmup_steps")
    steps = (v.get("task") or {}).get("schedule_steps") or (v.get("trainer") or {}).get("max_steps")
    if _number(warmup) and _number(steps) and 0 < steps <= warmup:
        return (f"scheduler.warmup_steps={warmup} is not shorter than the run ({steps} steps): the lr would never "
                f"reach optimizer.lr; set scheduler.warmup_steps below {steps}")
    return None


def _run_has_an_end(v: dict) -> str | None:
    """The lr schedule is laid out over the run's length, which Lightning gives as infinite when
    neither steps nor epochs limit it (it then trains until stopped)."""
    trainer = v.get("trainer") or {}
    if trainer.get("max_steps") == -1 and trainer.get("max_epochs") == -1 \
            and not (v.get("task") or {}).get("schedule_steps"):
        return ("trainer.max_steps=-1 and trainer.max_epochs=-1 give the run no end, so the lr schedule, laid out "
                "over the run, has no length; set trainer.max_steps, trainer.max_epochs or task.schedule_steps")
    return None


def _image_side(v: dict) -> int | None:
    """The side of the images the data gives: its ``image_size``, CIFAR's 32, else unknown."""
    source = (v.get("data") or {}).get("source") or {}
    if source.get("image_size") is not None:
        return source["image_size"]
    return 32 if str(source.get("_target_", "")).endswith("TorchvisionCIFAR") else None


def _setting(model: dict, key: str, value: Any) -> str:
    """The override that sets ``model.<key>``: with a ``+`` where conf/model/ does not list the key."""
    return f"{'' if key in model else '+'}model.{key}={value}"


def _model_fits_the_images(v: dict) -> str | None:
    """ViT: heads divide the width, the patch divides the image (else its last rows and columns
    are dropped), and the image is the size the position embedding is made for; LSTM: a row of
    the image is the step the input layer is made for."""
    model, side = v.get("model") or {}, _image_side(v)
    target = str(model.get("_target_", "")).rsplit(".", 1)[-1]
    if target == "VisionTransformer":
        width, heads, patch, size = model.get("width"), model.get("heads", 4), model.get("patch", 4), \
            model.get("image_size", 32)
        if _number(width) and width % heads:
            return f"model.heads={heads} must divide width={width} (each head takes width / heads features)"
        if size % patch:
            lost = f"{size % patch} rows and columns would be dropped" if patch < size else "no patch fits"
            return f"model.patch={patch} must divide the image side, {size} pixels (model.image_size): {lost}; " \
                   f"try model.patch=4"
        if side is not None and side != size:
            return (f"model=vit is made for {size}x{size} images (model.image_size={size}) but the data's are "
                    f"{side}x{side}; set {_setting(model, 'image_size', side)}")
    if target == "LSTMStack" and side is not None and side * 3 != model.get("row_features", 96):
        features = model.get("row_features", 96)
        return (f"model=lstm reads rows of {features // 3} pixels (model.row_features={features}) but the data's "
                f"images are {side}x{side}; set {_setting(model, 'row_features', 3 * side)}")
    return None


def _devices_on_this_machine(v: dict) -> str | None:
    """``num_nodes > 1`` without a launcher that starts the other machines' processes waits for
    them forever; more CPU processes than cores is not a speed-up but a slow-down."""
    trainer = v.get("trainer") or {}
    nodes, devices, accelerator = trainer.get("num_nodes", 1), trainer.get("devices"), trainer.get("accelerator")
    if _number(nodes) and nodes > 1:
        from lightning.fabric.plugins import environments as env

        # Kubeflow's detect() raises NotImplementedError (it cannot be detected): not asked
        launched = any(e.detect() for e in (env.SLURMEnvironment, env.TorchElasticEnvironment, env.LSFEnvironment,
                                            env.MPIEnvironment))
        if not launched and "NODE_RANK" not in os.environ:
            return (f"trainer.num_nodes={nodes} needs a launcher that starts this run on every machine (SLURM, "
                    f"torchrun); alone, this machine would wait for the others forever; set trainer.num_nodes=1")
    if _number(devices) and not isinstance(devices, bool) and devices > 1:
        import torch

        cores = os.cpu_count() or 1
        on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
        if on_cpu and devices > cores:
            return f"trainer.devices={devices} CPU processes but this machine has {cores} cores; set trainer.devices " \
                   f"to at most {cores}"
    return None


#: Conditions between keys, each a sentence or None; checked after every type and range.
RULES: list[Callable[[dict], str | None]] = [_run_has_an_end, _warmup_within_run, _model_fits_the_images,
                                             _devices_on_this_machine]
