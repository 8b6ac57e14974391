"""Errors meant for the person at the keyboard, not for a traceback."""

from __future__ import annotations

import dataclasses
import errno
import functools
import os
import re
import sys
from typing import Any, Callable

#: Exit code of a run stopped by bad input (a usage error, as argparse uses it).
USAGE_EXIT_CODE = 2


class UserFacingError(Exception):
    """A problem with the user's input or environment, explained in the message.

    Every command (:func:`entry_point`) prints the message and exits with code 2 without a
    traceback (set ``HYDRA_FULL_ERROR=1`` to see one).
    """


class DataUnavailableError(UserFacingError):
    """The requested data is not on disk and cannot be fetched."""


def composition_message(err: Exception) -> str | None:
    """One sentence for an error Hydra raises while composing the config (before any run
    starts), or None for anything else.

    Hydra's own text spans several lines (the config search path, OmegaConf's node
    details); this names the key or option, the value and what is valid, like the
    messages of :mod:`residual_lab.schema`.
    """
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
    from omegaconf import OmegaConf
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

    from residual_lab import schema

    text = str(err)
    if isinstance(err, MissingConfigException) and err.missing_cfg_file and err.options is not None:
        group, _, option = err.missing_cfg_file.rpartition("/")
        if not group:
            return None
        near = schema.closest(option, err.options)
        guess = f" (did you mean '{near}'?)" if near else ""
        return f"unknown {group} '{option}'{guess}; valid choices: {', '.join(sorted(err.options))}"
    if isinstance(err, OverrideParseException):
        return (f"cannot read an override: {text.splitlines()[0]} "
                f"(the syntax is key=value; https://hydra.cc/docs/advanced/override_grammar/basic)")
    if not isinstance(err, ConfigCompositionException):
        return None
    cause = err.__cause__
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and text.startswith("Could not override"):
        # `detph=56`: Hydra suggests `+detph=56`, which would add a key nothing reads.
        # A key the node's target takes but its yaml does not list (Adam's eps) needs that `+`.
        value = re.search(r"use \+\S+?=(.*)$", text, re.M)
        parsed = _parsed(value.group(1)) if value else "?"
        parent = cause.parent_node if cause.parent_node is not None else {}
        target = parent.get("_target_") if isinstance(parent.get("_target_"), str) else None
        takes = schema.target_schema(target) if target else None
        takes = schema.settable(takes, parent) if takes else []
        if cause.full_key.rpartition(".")[2] in takes:
            return (f"'{cause.full_key}' is not in the config, but {target} takes it: "
                    f"add it with +{cause.full_key}={schema.show(parsed)}")
        candidates = [c for c in dict.fromkeys([*parent.keys(), *takes]) if c not in schema.HYDRA_KEYS]
        # `init=fixup`: a top-level key that lives one node down (model.init) is named there
        below = schema.one_node_down(cause.full_key, OmegaConf.to_container(parent, resolve=False)) \
            if "." not in cause.full_key and OmegaConf.is_dict(parent) else []
        return schema.unknown_key_message(cause.full_key, parsed, candidates, "" if candidates else target or "",
                                          below=below)
    if isinstance(cause, ValidationError):
        key = cause.full_key
        merged = re.search(r"Error merging override (\S+?)=(.*)$", text, re.M)
        value = _parsed(merged.group(2)) if merged else "?"
        field_type = _field_type(cause.object_type, str(cause.key))
        return schema.value_error(key, value, field_type, schema.field_range(cause.object_type, str(cause.key)))
    if m := re.search(r"An item is already at '(.+?)'", text):
        plain = re.search(r"remove \+ prefix: '(.+?)'", text)
        return (f"'{m.group(1)}' is already a config key: set it without the +"
                + (f", as {plain.group(1)}" if plain else ""))
    if m := re.search(r"Could not delete from config\. '(.+?)' does not exist", text):
        return f"cannot delete '{m.group(1)}' (~{m.group(1)}): the config has no such key"
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def _parsed(text: str) -> Any:
    """An override's value as Hydra reads it (``56`` an int, ``abc`` a string)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_override(f"key={text}").value()
    except Exception:
        return text


def _field_type(object_type: Any, key: str) -> Any:
    import typing

    if object_type is not None and dataclasses.is_dataclass(object_type):
        return typing.get_type_hints(object_type).get(key, Any)
    return Any


def os_error_message(err: OSError) -> str:
    """One sentence for a file the command could not read or write, naming the path.

    The run's files are written atomically (:mod:`residual_lab.io`), so a full disk or a
    read-only directory leaves the last good checkpoint and summary as they were.
    """
    what = f"{err.filename or 'writing a file'}: {(err.strerror or str(err)).rstrip('.')}"
    if err.filename2 is not None:
        what += f" (to {err.filename2})"
    if err.errno in _OUTPUT_ADVICE:
        what += (f"; nothing was written over earlier files there: {_OUTPUT_ADVICE[err.errno]} "
                 f"(hydra.run.dir=<dir>, --out <dir>)")
    return what


#: Errors of a file that cannot be written, and what to do: a full disk, a read-only or forbidden
#: directory, a file where a directory must go.
_OUTPUT_ADVICE = {
    **dict.fromkeys((errno.ENOSPC, errno.EDQUOT), "free some space or give the outputs a directory on another disk"),
    **dict.fromkeys((errno.EROFS, errno.EACCES, errno.EPERM), "give the outputs a writable directory"),
    **dict.fromkeys((errno.EEXIST, errno.ENOTDIR, errno.EISDIR),
                    "a file stands where a directory must go, or the reverse; give the outputs another path"),
}

#: Set by :func:`entry_point` for the processes a command starts (launcher workers, Lightning's
#: device processes): whether the person asked for tracebacks (``HYDRA_FULL_ERROR=1``), which
#: the entry point itself sets for Hydra while a command runs.
_TRACEBACKS = "RESIDUAL_LAB_TRACEBACKS"


def tracebacks_wanted() -> bool:
    """True when the person set ``HYDRA_FULL_ERROR=1``: errors then end with a traceback."""
    return os.environ.get(_TRACEBACKS, os.environ.get("HYDRA_FULL_ERROR", "0")) == "1"


def entry_point(main: Callable) -> Callable:
    """Every command's one error path (run, analyze, report, bench, evaluate).

    Bad input (a :class:`UserFacingError`, a config Hydra cannot compose) and a file that cannot
    be written or read (an ``OSError``: full disk, read-only directory, a file where a directory
    must go) print one sentence and exit with code 2, without a traceback; any other error is a
    bug and keeps its traceback. ``HYDRA_FULL_ERROR=1`` shows the traceback of every error.

    Hydra 1.3 reports composition errors itself (several lines, exit code 1) unless
    ``HYDRA_FULL_ERROR=1``, its documented switch to re-raise them, is set: it is set while the
    command runs, and the person's own choice travels in ``RESIDUAL_LAB_TRACEBACKS``.
    """
    @functools.wraps(main)
    def command(*args: Any, **kwargs: Any) -> Any:
        saved = {name: os.environ.get(name) for name in ("HYDRA_FULL_ERROR", _TRACEBACKS)}
        os.environ[_TRACEBACKS] = "1" if tracebacks_wanted() else "0"
        os.environ["HYDRA_FULL_ERROR"] = "1"
        _held.clear()
        try:
            result = main(*args, **kwargs)
            if _held:
                raise _held.pop()
            return result
        except Exception as err:
            # a held error came first: what failed after it (a sweep launched with the launcher
            # settings a Hydra callback refused) failed because of it
            message = user_message(_held.pop() if _held else err)
            if message is None or os.environ[_TRACEBACKS] == "1":
                raise
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        print(f"\nresidual_lab: {message}\n", file=sys.stderr, flush=True)
        sys.exit(USAGE_EXIT_CODE)

    return command


#: The error a single run's Hydra job ended with, raised by :func:`entry_point` after Hydra returns.
_held: list[BaseException] = []


def hold(err: BaseException) -> None:
    """Keep a single run's error for :func:`entry_point` to raise once Hydra has returned: raised
    inside the job, Hydra 1.3 first writes "Error executing job with overrides: [...]" to stderr,
    a line that says nothing the one sentence after it does not. A Hydra callback holds its
    refusal too: Hydra turns a callback's exception into a warning and goes on."""
    _held.append(err)


def single_run_job(task: Callable) -> Callable:
    """A Hydra task whose error, in a single run, is :func:`hold`-ed rather than raised through
    Hydra (a sweep's jobs keep Hydra's handling: its launcher decides what one failure stops)."""
    @functools.wraps(task)
    def job(*args: Any, **kwargs: Any) -> Any:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        try:
            return task(*args, **kwargs)
        except Exception as err:
            if HydraConfig.get().mode != RunMode.RUN:
                raise
            hold(err)
            return None

    return job


def user_message(err: BaseException) -> str | None:
    """The one sentence for an error the person can act on, or None for a bug."""
    if isinstance(err, UserFacingError):
        return str(err)
    if isinstance(err, OSError) and (err.filename is not None or err.errno in (errno.ENOSPC, errno.EDQUOT)):
        return os_error_message(err)  # a file or a full disk; a dropped connection stays a traceback
    return composition_message(err) if isinstance(err, Exception) else None
