"""Errors meant for the person at the keyboard, not for a traceback."""

from __future__ import annotations

import functools
import os
import re
import sys
import traceback
from typing import Any, Callable

#: Exit code of a run stopped by bad input (a usage error, as argparse uses it).
USAGE_EXIT_CODE = 2


class UserFacingError(Exception):
    """A problem with the user's input or environment, explained in the message.

    ``residual_lab.run`` prints the message and exits with code 2 without a traceback
    (set ``HYDRA_FULL_ERROR=1`` to see one).
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
        value = re.search(r"use \+\S+?=(.*)$", text, re.M)
        candidates = list(cause.parent_node.keys()) if cause.parent_node is not None else []
        return schema.unknown_key_message(cause.full_key, _parsed(value.group(1)) if value else "?",
                                          [c for c in candidates if c not in schema.HYDRA_KEYS])
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
    import dataclasses
    import typing

    if object_type is not None and dataclasses.is_dataclass(object_type):
        return typing.get_type_hints(object_type).get(key, Any)
    return Any


def _raised_in_job(err: BaseException) -> bool:
    """True if ``err`` came out of the task function (Hydra's ``run_job``), not composition."""
    return any(frame.name == "run_job" for frame in traceback.extract_tb(err.__traceback__))


def usage_errors(hydra_main: Callable) -> Callable:
    """Decorate a ``@hydra.main`` function: an error in composing the config (an unknown group
    option, a misspelt key, a value of the wrong type) prints one sentence and exits with
    code 2, the code of the run's own bad-input errors, so ``&&`` chains stop for both.

    Hydra reports composition errors through ``hydra._internal.utils.run_and_report`` with
    exit code 1 and several lines; that function is wrapped for the duration of the call
    (Hydra 1.3 offers no hook for it). Errors raised by the task itself, and every error with
    ``HYDRA_FULL_ERROR=1``, go to Hydra's reporting unchanged.
    """
    @functools.wraps(hydra_main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import hydra._internal.utils as hydra_utils

        original = hydra_utils.run_and_report

        def run_and_report(func: Callable) -> Any:
            return original(lambda: _exit_on_composition_error(func))

        hydra_utils.run_and_report = run_and_report
        try:
            return hydra_main(*args, **kwargs)
        finally:
            hydra_utils.run_and_report = original

    return wrapper


def _exit_on_composition_error(func: Callable) -> Any:
    try:
        return func()
    except Exception as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1" or _raised_in_job(err):
            raise
        message = composition_message(err)
        if message is None:
            raise
        print(f"\nresidual_lab: {message}\n", file=sys.stderr)
        sys.exit(USAGE_EXIT_CODE)
