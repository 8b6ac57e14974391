"""A summary.json that cannot be read, told apart from a missing one, and rebuilt where the
run left enough behind.

summary.json is written atomically (residual_lab.io), so a damaged one comes from outside the
run: a full disk while copying, a truncated sync, an editor. The run's other records still
say what it was and where it ended: ``config_resolved.yaml`` (its config), ``last.ckpt``
(its step, wall time and best-validation checkpoint) and the TensorBoard events (the metrics
it logged, test ones included). A finished run, whose ``last.ckpt`` is at
``trainer.max_steps`` and whose events hold its test error, is rebuilt from those.

``last.ckpt`` holds the final weights, so the report's training error (``train_error_full``,
docs/reproducing.md) is measured again from it, with the evaluation run.py itself uses
(:func:`residual_lab.summary.final_weights_errors`: eval mode, the whole unaugmented training
split): without it, one rebuilt run would leave a report without its registered statistic. That
needs the run's data where its config says (a few seconds for 50k CIFAR images with a
ResNet-56 on a GPU, minutes on a CPU; rebuilding is rare); where the data cannot be read it is
left absent, and ``not_rebuilt`` says so. What ran (precision after Lightning's substitution,
world size) is what the checkpoint recorded, not what this machine's Lightning would make of the
config; a checkpoint too old to say leaves them out and names them in ``not_rebuilt``. What only the
summary held (``diagnostics``, images per second) stays absent; ``rebuilt_from`` says where the
rest came from. Anything less is reported as damaged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from residual_lab.summary import (SUMMARY_FILE, SUMMARY_VERSION, config_fields, final_weights_errors, planned_processes,
                                  ran_fields, split_sizes, tidy)

#: Where a rebuilt summary's numbers come from (its ``rebuilt_from`` field).
REBUILT_FROM = ["checkpoints/last.ckpt", "tensorboard events"]
#: A rebuilt summary's ``not_rebuilt`` when ``train_error_full`` could not be measured again.
NOT_EVALUATED = "train_error_full: the run's data could not be read to evaluate checkpoints/last.ckpt"
#: ... when the checkpoint predates its record of what ran (``ran``).
NOT_RAN = ("precision: checkpoints/last.ckpt does not record what ran; the config's is given (world_size and "
           "global_batch only where the config fixes trainer.devices)")
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


def _what_ran(state: dict[str, Any], cfg: Any) -> tuple[dict[str, Any], bool]:
    """``({precision, world_size, accumulate}, known)`` of the run, from its checkpoint's record
    (``lit_module.on_save_checkpoint``). A checkpoint from before the record gives the config's
    precision and the world size only where the config fixes it (``trainer.devices=1``), with
    ``known`` False; this machine's Lightning is not asked, as it would substitute its own (a
    GPU's ``16-mixed`` read on a CPU is ``bf16-mixed``)."""
    ran = state.get("ran")
    if isinstance(ran, dict) and {"precision", "world_size", "accumulate"} <= ran.keys():
        return ran, True
    return {"precision": str(cfg.trainer.precision), "world_size": planned_processes(cfg)["world_size"],
            "accumulate": int(cfg.trainer.get("accumulate_grad_batches") or 1)}, False


def _evaluate_final_weights(cfg: Any, state: dict[str, Any], tested_final: bool) -> tuple[dict[str, float], dict[str, int]]:
    """``train_error_full`` and its companions (:func:`residual_lab.summary.final_weights_errors`)
    of the weights in ``last.ckpt``, and the split sizes; ``({}, {})`` when the data cannot be
    read or the weights do not load."""
    from hydra.utils import instantiate

    try:
        module = instantiate(cfg.task, net=instantiate(cfg.model), optimizer=instantiate(cfg.optimizer),
                             scheduler=instantiate(cfg.scheduler))
        module.load_state_dict(state["state_dict"])  # strict: a partial load would measure an untrained net
        datamodule = instantiate(cfg.data)
        datamodule.setup("fit")
    except Exception:  # data moved or unreadable: the rebuild goes on without the statistic
        return {}, {}
    return final_weights_errors(module, datamodule, tested_final=tested_final), split_sizes(datamodule)


def rebuild_summary(run_dir: str | Path) -> dict[str, Any] | None:
    """The summary of a finished run rebuilt from its records (module doc), or None when it
    did not finish (a checkpoint short of ``trainer.max_steps``, no test error logged) or its
    records cannot be read."""
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from residual_lab.tensorboard_events import read_event_scalars

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
    scalars = read_event_scalars(run_dir, tuple(FROM_EVENTS.values()))
    if "test/error" not in scalars:
        return None  # it never reached its test
    best, best_score = _best_checkpoint(state)
    if (cfg.get("protocol") or {}).get("test_weights") == "final":
        best = None
    fields = {key: scalars[tag][1][-1] for key, tag in FROM_EVENTS.items() if tag in scalars}
    full, splits = _evaluate_final_weights(cfg, state, tested_final=best is None)
    what, known = _what_ran(state, cfg)
    ran = ran_fields(cfg, precision=what["precision"], world_size=what["world_size"] or 1,
                     accumulate=what["accumulate"], splits=splits, tested_checkpoint="best-val" if best else "final")
    if what["world_size"] is None:  # leave it out rather than guess
        ran.pop("world_size"), ran.pop("global_batch")
    not_rebuilt = ([] if full else [NOT_EVALUATED]) + ([] if known else [NOT_RAN])
    params = sum(p.numel() for p in instantiate(cfg.model).parameters())
    train_images, global_batch = ran.get("train_images"), ran.get("global_batch")
    return tidy({
        "status": "completed", "reason": None, **fields, **full,
        "best_val_error": best_score if best else None,
        **config_fields(cfg), **ran, "params": params, "steps": steps,
        "epochs": steps * global_batch / train_images if train_images and global_batch else None,
        "wall_time_s": _training_time(state),
        "tested_checkpoint": "best-val" if best else "final", "best_checkpoint": best,
        "output_dir": str(cfg.paths.output_dir), "summary_version": SUMMARY_VERSION,
        "rebuilt_from": REBUILT_FROM, **({"not_rebuilt": not_rebuilt} if not_rebuilt else {}),
    })
