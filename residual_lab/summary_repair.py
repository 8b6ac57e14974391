"""A summary.json that cannot be read, told apart from a missing one, and rebuilt where the
run left enough behind.

summary.json is written atomically (residual_lab.io), so a damaged one comes from outside the
run: a full disk while copying, a truncated sync, an editor. The run's other records still
say what it was and where it ended: ``config_resolved.yaml`` (its config), ``last.ckpt``
(its step, wall time and best-validation checkpoint) and the TensorBoard events (the metrics
it logged, test ones included). A finished run, whose ``last.ckpt`` is at
``trainer.max_steps`` and whose events hold its test error, is rebuilt from those; what only
the summary held (``train_error_full``, ``diagnostics``, images per second) stays absent and
``rebuilt_from`` says where the rest came from. Anything less is reported as damaged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from residual_lab.summary import SUMMARY_FILE, SUMMARY_VERSION, config_fields, tidy

#: Where a rebuilt summary's numbers come from (its ``rebuilt_from`` field).
REBUILT_FROM = ["checkpoints/last.ckpt", "tensorboard events"]
#: The suffix a damaged summary.json is kept under once a rebuilt one replaces it.
DAMAGED_SUFFIX = ".damaged"
#: summary.json field <- TensorBoard tag (the last value logged).
FROM_EVENTS = {"test_error": "test/error", "test_loss": "test/loss", "test_accuracy": "test/accuracy",
               "test_recall_macro": "test/recall", "test_f1_macro": "test/f1", "val_error": "val/error",
               "val_loss": "val/loss", "train_error": "train/error", "train_loss": "train/loss"}


def _training_time(state: dict) -> float | None:
    """Seconds trained up to the checkpoint: Lightning's Timer state, or the key checkpoints
    kept before the Timer."""
    timer = state.get("callbacks", {}).get("Timer", {}).get("time_elapsed", {})
    seconds = timer.get("train", state.get("wall_time_s"))
    return float(seconds) if seconds is not None else None


def read_summary(run_dir: str | Path) -> tuple[dict[str, Any] | None, str | None]:
    """``(summary, None)``; ``(None, None)`` when there is none; ``(None, why)`` when there is
    one that cannot be read (``"not JSON"``, ``"not a JSON object"``, the OSError)."""
    path = Path(run_dir) / SUMMARY_FILE
    if not path.exists():
        return None, None
    try:
        summary = json.loads(path.read_bytes())
    except OSError as err:
        return None, f"cannot be read: {err.strerror or err}"
    except ValueError:  # JSONDecodeError, or bytes that are not UTF-8
        return None, "not JSON"
    if not isinstance(summary, dict) or "status" not in summary:
        return None, "not a JSON object with a status"
    return summary, None


def _best_checkpoint(state: dict[str, Any]) -> tuple[str | None, float | None]:
    """The best-validation ModelCheckpoint's path and score, from a checkpoint's callback state."""
    for key, value in (state.get("callbacks") or {}).items():
        if key.startswith("ModelCheckpoint") and isinstance(value, dict) and value.get("best_model_path"):
            score = value.get("best_model_score")
            return str(value["best_model_path"]), float(score) if score is not None else None
    return None, None


def rebuild_summary(run_dir: str | Path) -> dict[str, Any] | None:
    """The summary of a finished run rebuilt from its records (module doc), or None when it
    did not finish (a checkpoint short of ``trainer.max_steps``, no test error logged) or its
    records cannot be read."""
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from residual_lab.results.loading import load_scalars

    run_dir = Path(run_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    try:
        cfg = OmegaConf.load(run_dir / "config_resolved.yaml")
        state = torch.load(last, map_location="cpu", weights_only=True)
        steps = int(state["global_step"])
    except Exception:  # absent, truncated or of another kind: nothing to rebuild from
        return None
    if steps < int(cfg.trainer.max_steps):
        return None  # stopped early: a resume, not a rebuild
    scalars = load_scalars(run_dir, tags=tuple(FROM_EVENTS.values()))
    if "test/error" not in scalars:
        return None  # it never reached its test
    best, best_score = _best_checkpoint(state)
    if (cfg.get("protocol") or {}).get("test_weights") == "final":
        best = None
    params = sum(p.numel() for p in instantiate(cfg.model).parameters())
    fields = {key: scalars[tag][1][-1] for key, tag in FROM_EVENTS.items() if tag in scalars}
    return tidy({
        "status": "completed", "reason": None, **fields,
        "best_val_error": best_score if best else None,
        **config_fields(cfg), "params": params, "steps": steps,
        "wall_time_s": _training_time(state),
        "tested_checkpoint": "best-val" if best else "final", "best_checkpoint": best,
        "output_dir": str(cfg.paths.output_dir), "summary_version": SUMMARY_VERSION,
        "rebuilt_from": REBUILT_FROM,
    })
