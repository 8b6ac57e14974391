"""Checks that turn bad input into one short sentence instead of a traceback."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from residual_lab.errors import UserFacingError
from residual_lab.schema import ConfigError, check_config, show

#: Modules whose errors already name the config key, the value and the valid choices.
OWN_MODULES = ("residual_lab.",)


def validate_config(cfg: DictConfig, nodes: Mapping[str, type] | None = None) -> None:
    """Reject values no run can use, naming the key, the value and what is valid.

    The typed schema (:func:`residual_lab.schema.check_config`) checks every key's type and
    range; then the optimizer and the lr schedule are built once on a dummy parameter, so a
    value torch or a schedule refuses (Adam's ``betas``, an unknown warm-up mode) stops the
    run here, in one sentence, instead of at the first training step with a traceback.
    ``nodes``: dataclasses of nodes no target speaks for (``{"analyze": <probe>.Options}``).
    """
    try:
        check_config(cfg, nodes=nodes)
    except ConfigError as err:
        raise _raised_by_a_resolver(err) or UserFacingError(str(err)) from None
    _try_optimizer_and_schedule(cfg)


def _raised_by_a_resolver(err: BaseException | None) -> UserFacingError | None:
    """The UserFacingError a resolver raised (``num_classes_of`` on a missing image folder),
    under OmegaConf's wrapping: its own sentence says more than "cannot be resolved". Only a
    ConfigError's cause is searched (``schema._resolve`` raises it ``from`` the resolver's
    failure): the error being handled when the config was checked is not the config's."""
    err = err.__cause__ if err is not None else None
    for _ in range(20):  # a chain, not a loop
        if err is None or isinstance(err, UserFacingError):
            return err
        err = err.__cause__ or err.__context__
    return None


def _try_optimizer_and_schedule(cfg: DictConfig) -> None:
    from hydra.utils import instantiate

    param = torch.nn.Parameter(torch.zeros(1))
    try:
        optimizer = instantiate(cfg.optimizer)(params=[param])
    except Exception as err:  # torch raises ValueError, some optimizers TypeError/RuntimeError
        raise refusal(cfg.optimizer, err) from None
    steps = cfg.task.get("schedule_steps") or max(1, int(cfg.trainer.max_steps))
    try:
        instantiate(cfg.scheduler)(optimizer, total_steps=steps)
    except Exception as err:
        raise refusal(cfg.scheduler, err) from None


def refusal(node: DictConfig, err: BaseException) -> UserFacingError:
    """A one-sentence error for a library that refused a config node's values.

    Names the key the library's message mentions (``Invalid momentum value: -1`` names
    ``optimizer.momentum``) with its value; our own modules' messages are kept as they are.
    """
    message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    target = str(node.get("_target_", ""))
    if isinstance(err, UserFacingError) or target.startswith(OWN_MODULES):
        return UserFacingError(message)
    path = node._get_full_key(None) or "the config"
    keys = sorted((str(k) for k in node if not str(k).startswith("_")), key=len, reverse=True)
    words = message.lower().replace(" ", "_")  # "learning rate" -> learning_rate
    aliases = {"lr": "learning_rate"}
    # The key the message names ("Invalid beta parameter" -> betas), else the key whose value
    # it quotes ("No supported gpu backend" -> accelerator='gpu').
    named = next((k for k in keys if k.lower() in words or k.lower().rstrip("s") in words
                  or aliases.get(k, k) in words), None)
    if named is None:
        plain = {k: node.get(k) for k in keys if isinstance(node.get(k), (str, int, float))}
        named = next((k for k, v in plain.items() if not isinstance(v, bool)
                      and str(v).lower() in message.lower().split()), None)
    if named is not None:
        value = OmegaConf.to_container(node, resolve=True)[named]
        return UserFacingError(f"{path}.{named}={show(value)} is refused by {target}: {message}")
    return UserFacingError(f"{path} ({target}) refused its settings: {message}")


def instantiation_error(node: DictConfig, cause: BaseException | None) -> UserFacingError | None:
    """For ``hydra.utils.instantiate`` failures: a one-sentence error for a value the target
    refuses (a ValueError, or Lightning's MisconfigurationException, e.g. trainer=gpu on a
    machine without one), or None for a genuine bug (which keeps its traceback)."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    if isinstance(cause, (ValueError, UserFacingError, MisconfigurationException)):
        return refusal(node, cause)
    return None


def check_checkpoint_matches(module: torch.nn.Module, path: str | Path) -> None:
    """Raise if the checkpoint at ``path`` was saved from another architecture.

    Lightning's strict load would also fail, but with a wall of key names; this names
    how many keys differ and the first few, and the shapes that disagree.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    except Exception as err:
        raise UserFacingError(f"cannot read checkpoint {path}: {err}") from None
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        def first(items: list[str]) -> str:
            return ", ".join(items[:3]) + (f" (+{len(items) - 3} more)" if len(items) > 3 else "")

        parts = [f"{len(missing)} missing from the checkpoint ({first(missing)})" if missing else "",
                 f"{len(unexpected)} unexpected ({first(unexpected)})" if unexpected else "",
                 f"{len(shapes)} with another shape ({first(shapes)})" if shapes else ""]
        raise UserFacingError(f"checkpoint {path} is of another architecture: "
                              + "; ".join(p for p in parts if p))
