"""summary.json: the one file per run that reports, sweeps and tests read.

Laid out for a person reading it: how the run ended (``status``, ``reason``), its errors, the
settings that identify it, then its progress, and the per-layer ``diagnostics`` last. Every
rate (errors, accuracy, recall, F1) is in percent, as in TensorBoard. Floats are rounded to
what they can tell: rates to 0.01 percentage points (one image in 10,000), losses and
diagnostics to 4 significant digits, seconds to 0.1 s.

``dataset`` names the data (``cifar10``, an image folder's directory name, ``synthetic``) and
``data_root`` is the absolute directory it was read from; ``data`` is the source's class.

``train_error_full`` (version 3 on) is the final weights' error on the whole training split in
eval mode, without augmentation: the report's training error (docs/reproducing.md). ``train_error``
is the mean over the last logging window (train mode, augmented batches): a curve's last point.

What ran, not only what was asked for (version 4 on): ``precision`` is the precision
Lightning ran after its substitutions (``16-mixed`` on a CPU runs as ``bf16-mixed``),
``world_size`` the processes that trained (devices x nodes) and ``global_batch`` the images of
one optimizer step (``batch_size`` per process x ``world_size`` x gradient accumulation);
``train_images``/``val_images``/``test_images`` the split sizes; ``tested_checkpoint`` which
weights the test error is of (``best-val``: the best-validation checkpoint; ``final``: the
final weights, which ``checkpoints/last.ckpt`` holds) and ``protocol`` the protocol that
follows from it and the split (:func:`protocol_of`). Where what ran differs from the config,
``requested`` keeps the config's values (``{"precision": "16-mixed"}``).

``summary_version`` 4 is this layout (3 lacked what ran, 2 ``train_error_full``); a summary
without it (version 1: sorted keys, accuracy, recall and F1 as fractions, no ``dataset`` before
the field existed) is converted on reading by :func:`upgrade`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from residual_lab.io import atomic_write

#: Statuses a run can end with.
STATUSES = ("completed", "diverged", "failed", "interrupted")
SUMMARY_FILE = "summary.json"
SUMMARY_VERSION = 4

#: Rates in percent (2 decimals). Version-1 summaries held the last three as fractions.
PERCENT = ("test_error", "best_val_error", "val_error", "train_error_full", "train_error", "test_error_final",
           "test_accuracy", "test_recall_macro", "test_f1_macro")
FRACTIONS_IN_VERSION_1 = ("test_accuracy", "test_recall_macro", "test_f1_macro")

#: The order of summary.json: outcome, errors, settings, progress; anything else after, then
#: ``diagnostics``.
ORDER = (
    "status", "reason",
    *PERCENT, "test_loss", "val_loss", "train_loss_full", "train_loss", "test_loss_final",
    "run_name", "model", "depth", "shortcut", "block", "width", "norm", "init", "params",
    "dataset", "data_root", "data", "protocol", "train_images", "val_images", "test_images", "seed", "batch_size",
    "world_size", "global_batch", "optimizer", "lr", "max_steps", "precision", "requested",
    "steps", "epochs", "wall_time_s", "train_images_per_s",
    "tested_checkpoint", "best_checkpoint", "resumed_from", "output_dir", "summary_version",
)


def dataset_name(data: DictConfig) -> str:
    """What the run trained on, by name: ``cifar10``/``cifar100`` (torchvision), ``synthetic``,
    or an image folder's directory name (``cifar10-jpeg`` for the JPEG copy)."""
    source = data.source
    kind = source._target_.rsplit(".", 1)[-1]
    if kind == "TorchvisionCIFAR":
        return str(source.name)
    if kind == "ImageFolderSource" and source.get("root"):
        return Path(str(source.root)).expanduser().resolve().name
    return {"SyntheticSource": "synthetic"}.get(kind, kind)


def data_root(data: DictConfig) -> str | None:
    """The absolute directory the data was read from (None for generated data)."""
    root = data.source.get("root", data.get("root"))
    return str(Path(str(root)).expanduser().resolve()) if root else None


def model_name(model: DictConfig) -> str:
    """The model's class (``CifarResNet``), or for ``model=external`` its factory
    (``torchvision.models.resnet18``, ``timm.create_model:vit_tiny_patch16_224``)."""
    factory = model.get("factory")
    if factory is None:
        return model._target_.rsplit(".", 1)[-1]
    name = (model.get("kwargs") or {}).get("model_name")
    return f"{factory}:{name}" if name else str(factory)


def config_fields(cfg: DictConfig) -> dict[str, Any]:
    """The identifying fields of a run, straight from its config.

    ``protocol`` says where the numbers come from: ``heldout`` (a train/val split, test error
    of the best-validation checkpoint) or ``paper`` (all training images, fixed schedule, test
    error of the final weights; He et al. 2015 sec. 4.2). These are the config's values: a
    finished run's summary replaces ``protocol`` and ``precision`` by what ran
    (:func:`ran_fields`).
    """
    protocol = cfg.get("protocol")
    return {
        "protocol": protocol.name if protocol is not None else "heldout",
        "dataset": dataset_name(cfg.data), "data_root": data_root(cfg.data),
        "data": cfg.data.source._target_.rsplit(".", 1)[-1],
        "run_name": cfg.run_name, "model": model_name(cfg.model), "depth": cfg.depth,
        "shortcut": cfg.shortcut, "block": cfg.block, "width": cfg.width, "norm": cfg.norm,
        "init": cfg.model.get("init"), "seed": cfg.seed, "batch_size": cfg.data.batch_size,
        **planned_processes(cfg), "optimizer": cfg.optimizer._target_.rsplit(".", 1)[-1], "lr": cfg.optimizer.lr,
        "max_steps": cfg.trainer.max_steps, "precision": str(cfg.trainer.precision),
    }


#: What each value of ``tested_checkpoint`` tested, and the protocol it gives with or without a
#: validation split (:func:`protocol_of`).
TESTED_PROTOCOL = {("best-val", True): "heldout", ("final", False): "paper", ("final", True): "heldout-final"}


def protocol_of(tested_checkpoint: str | None, val_images: int | None, requested: str) -> str:
    """The protocol a run's test error follows, from what was tested rather than what was asked.

    ``heldout``: a validation split and the best-validation checkpoint tested; ``paper``: every
    training image trained and the final weights tested (He et al. 2015 sec. 4.2), which is
    also what ``protocol=heldout data.val_size=0`` does; ``heldout-final``: a validation split
    held out, yet the final weights tested (no best-validation checkpoint was saved, or
    ``protocol=paper`` with a ``data.val_size`` override). A run that was not tested, or whose
    split is unknown, keeps the ``requested`` one.
    """
    if tested_checkpoint is None or val_images is None:
        return requested
    return TESTED_PROTOCOL.get((tested_checkpoint, val_images > 0), requested)


def split_sizes(datamodule: Any) -> dict[str, int]:
    """``train_images``, ``val_images``, ``test_images`` of a set-up datamodule (whole splits,
    before any DDP sharding), or {} before its splits exist."""
    splits = getattr(datamodule, "splits", None)
    if not splits:
        return {}
    return {f"{name}_images": len(splits[name][1]) for name in ("train", "val", "test") if name in splits}


def ran_fields(cfg: DictConfig, *, precision: str, world_size: int, accumulate: int, splits: dict[str, int],
               tested_checkpoint: str | None) -> dict[str, Any]:
    """What ran where the config alone cannot say it (module doc), with ``requested`` holding
    the config's values that differ from it.

    Args:
        precision: the precision plugin's (``trainer.precision``: after Lightning's substitutions).
        world_size: processes that trained (``trainer.world_size``).
        accumulate: batches per optimizer step (``trainer.accumulate_grad_batches``).
        splits: :func:`split_sizes`.
        tested_checkpoint: ``best-val``, ``final`` or None (not tested).
    """
    planned = config_fields(cfg)
    ran = {"precision": str(precision), "world_size": int(world_size),
           "global_batch": int(cfg.data.batch_size) * int(world_size) * int(accumulate or 1), **splits,
           "protocol": protocol_of(tested_checkpoint, splits.get("val_images"), planned["protocol"])}
    requested = {k: planned[k] for k in ("precision", "protocol") if ran[k] != planned[k]}
    return {**ran, **({"requested": requested} if requested else {})}


def planned_processes(cfg: DictConfig) -> dict[str, int | None]:
    """``world_size`` (devices x nodes) and ``global_batch`` as the config asks for them, None
    where Lightning decides (``devices=auto``, ``-1``); :func:`ran_fields` records what ran."""
    devices, nodes = cfg.trainer.get("devices"), int(cfg.trainer.get("num_nodes") or 1)
    if isinstance(devices, str) and devices.strip().isdigit():
        devices = int(devices)
    count = len(devices) if isinstance(devices, (list, tuple)) or OmegaConf.is_list(devices) else devices
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        return {"world_size": None, "global_batch": None}
    accumulate = int(cfg.trainer.get("accumulate_grad_batches") or 1)
    return {"world_size": count * nodes, "global_batch": int(cfg.data.batch_size) * count * nodes * accumulate}


def round_sig(x: float, digits: int = 4) -> float:
    """``x`` to ``digits`` significant digits (non-finite values unchanged)."""
    if not isinstance(x, float) or not math.isfinite(x) or x == 0:
        return x
    return round(x, digits - 1 - math.floor(math.log10(abs(x))))


def _rounded(value: Any, digits: int = 4) -> Any:
    if isinstance(value, float):
        return round_sig(value, digits)
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v, digits) for v in value]
    return value


def tidy(fields: dict[str, Any]) -> dict[str, Any]:
    """The summary in :data:`ORDER`, ``diagnostics`` last, floats rounded (module doc)."""
    out = {k: fields[k] for k in ORDER if k in fields}
    out.update({k: v for k, v in fields.items() if k not in out and k != "diagnostics"})
    if "diagnostics" in fields:
        out["diagnostics"] = fields["diagnostics"]
    for key, value in out.items():
        if not isinstance(value, float):
            out[key] = _rounded(value) if key == "diagnostics" else value
        elif key in PERCENT:
            out[key] = round(value, 2)
        elif key in ("wall_time_s", "train_images_per_s"):
            out[key] = round(value, 1)
        elif key == "epochs":
            out[key] = round(value, 2)
        elif key != "lr":
            out[key] = round_sig(value)
    return out


def upgrade(summary: dict[str, Any]) -> dict[str, Any]:
    """A summary of any version in this version's units: version-1 accuracy, recall and F1
    (fractions) become percent. Nothing else changes; the file is never rewritten."""
    if summary.get("summary_version", 1) >= 2:  # versions 2 to 4 differ only in added fields
        return summary
    out = dict(summary)
    for key in FRACTIONS_IN_VERSION_1:
        if isinstance(out.get(key), (int, float)):
            out[key] = round(out[key] * 100, 2)
    return out


def epochs(trainer: Any, steps: int) -> float | None:
    """Passes over the training split: images seen / training images (a fraction)."""
    data = getattr(trainer, "datamodule", None)
    try:
        return steps * data.batch_size * trainer.world_size / data.num_train
    except (AttributeError, TypeError, ZeroDivisionError):
        return None


def run_summary(cfg: DictConfig, trainer: Any, *, params: int, status: str, reason: str | None,
                val: dict[str, float], test: dict[str, float], best: str | None, resumed_from: str | None,
                elapsed_s: float, diverged_at: int | None = None,
                full: dict[str, float] | None = None) -> dict[str, Any]:
    """The summary of a finished (or stopped) fit, in the layout of this module.

    Args:
        val: the final ``val/*`` metrics; test: ``trainer.test``'s (empty if not tested).
        best: the best-validation checkpoint that was tested, or None for the final weights.
        resumed_from: the checkpoint this session continued from.
        elapsed_s: this session's wall time; earlier sessions' (a resumed run) are added from
            the checkpoint (:meth:`ImageClassifier.wall_time_before`).
        diverged_at: the step the loss went non-finite, reported as ``steps``.
        full: the final weights' errors on whole splits in eval mode (``train_error_full``,
            the report's training error; ``test_error_final`` where ``test`` scored another
            checkpoint), from :func:`final_weights_errors`.
    """
    from residual_lab.callbacks import IntervalCallback, TrainSpeed

    module = trainer.lightning_module
    ckpt = trainer.checkpoint_callback
    speed = next((c for c in trainer.callbacks if isinstance(c, TrainSpeed)), None)
    steps = diverged_at if diverged_at is not None else trainer.global_step
    tested = ("best-val" if best else "final") if test else None
    if not val and status == "completed":  # a resume of a finished run validates nothing: keep what it had
        val = _validated_before(cfg.paths.output_dir, steps)
    return tidy({
        "status": status,
        "reason": reason,
        "test_error": test.get("test/error"),
        "best_val_error": float(ckpt.best_model_score) if best and ckpt.best_model_score is not None else None,
        "val_error": val.get("val/error"),  # final weights
        **(full or {}),  # final weights, eval mode, whole split: the report's training error
        **module.train_window(),  # the final step's window, train mode, augmented: curves only
        "test_accuracy": test.get("test/accuracy"),
        "test_recall_macro": test.get("test/recall"),
        "test_f1_macro": test.get("test/f1"),
        "test_loss": test.get("test/loss"),
        "val_loss": val.get("val/loss"),
        **config_fields(cfg),
        **ran_fields(cfg, precision=trainer.precision, world_size=trainer.world_size,
                     accumulate=trainer.accumulate_grad_batches, splits=split_sizes(getattr(trainer, "datamodule", None)),
                     tested_checkpoint=tested),
        "params": params,
        "steps": steps,
        "epochs": epochs(trainer, steps),
        "wall_time_s": getattr(module, "wall_time_before", 0.0) + elapsed_s,
        "train_images_per_s": speed.images_per_s if speed else None,
        "tested_checkpoint": tested,
        "best_checkpoint": best,
        "resumed_from": resumed_from,
        "output_dir": str(cfg.paths.output_dir),
        "summary_version": SUMMARY_VERSION,
        # A diagnostic that measured nothing (token_stats on a ResNet) leaves no empty entry.
        "diagnostics": {c.summary_key: s for c in trainer.callbacks
                        if isinstance(c, IntervalCallback) and (s := c.summary())},
    })


def _validated_before(output_dir: str | Path, steps: int) -> dict[str, float]:
    """The final ``val/*`` metrics the run's own summary.json holds for this very step, or {}.

    A resume of a completed run (``resume=<run dir>`` without a longer ``trainer.max_steps``)
    fits no step, so Lightning validates nothing and its metrics are empty; the weights are
    those the summary already measured, so its ``val_error`` and ``val_loss`` still hold."""
    try:
        before = json.loads((Path(output_dir) / SUMMARY_FILE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(before, dict) or before.get("steps") != steps or before.get("status") != "completed":
        return {}
    return {f"val/{k}": before[f"val_{k}"] for k in ("error", "loss") if before.get(f"val_{k}") is not None}


def summary_line(summary: dict[str, Any]) -> str:
    """The run's last console line: how it ended, every error it has (as ``12.34%``) and what ran
    where the config asked for something else."""
    errors = ", ".join(f"{name} error {summary[key]:.2f}%"
                       for name, key in (("train (eval mode, whole split)", "train_error_full"),
                                         ("train (last window)", "train_error"), ("val", "val_error"),
                                         ("best val", "best_val_error"), ("test", "test_error"))
                       if summary.get(key) is not None)
    epochs_done = f" ({summary['epochs']:.2f} epochs)" if summary.get("epochs") is not None else ""
    # what ran where the config asked otherwise (ran_fields' ``requested``), as the record says it
    ran = ", ".join(f"{key} {summary.get(key)} (asked: {asked})"
                    for key, asked in (summary.get("requested") or {}).items())
    return (f"{summary.get('run_name')} {summary['status']} after {summary.get('steps')} steps{epochs_done}: "
            f"{errors or 'no errors measured'}" + (f"; ran as {ran}" if ran else ""))


def write_summary(output_dir: str | Path, fields: dict[str, Any]) -> Path:
    """Atomically write ``summary.json`` in the layout of :func:`tidy`; ``status`` must be one
    of :data:`STATUSES`."""
    if fields.get("status") not in STATUSES:
        raise ValueError(f"status {fields.get('status')!r} is not one of {STATUSES}")
    text = json.dumps(tidy({**fields, "summary_version": SUMMARY_VERSION}), indent=2, default=str) + "\n"
    return atomic_write(Path(output_dir) / SUMMARY_FILE, lambda f: f.write(text))


def final_weights_errors(module: Any, datamodule: Any,
                         tested_final: bool) -> dict[str, float]:
    """The final weights' error and loss on the whole training split, in eval mode without
    augmentation (``train_error_full``: the report's training error, docs/reproducing.md), and
    on the test split when ``test`` will score another checkpoint (protocol=heldout tests the
    best-validation one; ``test_error_final`` is then the final weights' own)."""
    device = module.device
    train = module.evaluate(datamodule.eval_batches("train", device))
    out = {"train_error_full": train["error"], "train_loss_full": train["loss"]}
    if not tested_final:
        test = module.evaluate(datamodule.eval_batches("test", device))
        out.update(test_error_final=test["error"], test_loss_final=test["loss"])
    return out
