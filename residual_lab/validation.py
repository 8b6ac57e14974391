"""Checks that turn bad input into one short sentence instead of a traceback."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig

from residual_lab.errors import UserFacingError


def validate_config(cfg: DictConfig) -> None:
    """Reject values no run can use, naming the key, the value and what is valid."""
    lr = cfg.optimizer.get("lr")
    if lr is not None and not lr > 0:
        raise UserFacingError(f"optimizer.lr must be > 0, got {lr}")
    max_steps = cfg.trainer.get("max_steps", -1)
    if max_steps == 0 or max_steps < -1:
        raise UserFacingError(f"trainer.max_steps must be >= 1 (or -1 to use max_epochs), got {max_steps}")
    for key in ("batch_size", "eval_batch_size"):
        if cfg.data.get(key) is not None and cfg.data[key] < 1:
            raise UserFacingError(f"data.{key} must be >= 1, got {cfg.data[key]}")
    every = cfg.get("diagnostics", {}).get("every_n_steps", 1)
    if every < 1:
        raise UserFacingError(f"diagnostics.every_n_steps must be >= 1, got {every}")


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
