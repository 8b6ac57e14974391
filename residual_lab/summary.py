"""summary.json: the one file per run that reports, sweeps and tests read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from residual_lab.io import write_json

#: Statuses a run can end with.
STATUSES = ("completed", "diverged", "failed", "interrupted")
SUMMARY_FILE = "summary.json"


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


def config_fields(cfg: DictConfig) -> dict[str, Any]:
    """The identifying fields of a run, straight from its config.

    ``protocol`` says where the numbers come from: ``heldout`` (45k/5k split, test error of
    the best-validation checkpoint) or ``paper`` (all training images, fixed schedule, test
    error of the final weights; He et al. 2015 sec. 4.2).
    """
    protocol = cfg.get("protocol")
    return {
        "protocol": protocol.name if protocol is not None else "heldout",
        "dataset": dataset_name(cfg.data), "data_root": cfg.data.get("root"),
        "run_name": cfg.run_name, "model": cfg.model._target_.rsplit(".", 1)[-1], "depth": cfg.depth, "shortcut": cfg.shortcut, "block": cfg.block,
        "width": cfg.width, "norm": cfg.norm, "init": cfg.model.get("init"), "seed": cfg.seed,
        "data": cfg.data.source._target_.rsplit(".", 1)[-1], "batch_size": cfg.data.batch_size,
        "optimizer": cfg.optimizer._target_.rsplit(".", 1)[-1], "lr": cfg.optimizer.lr,
        "max_steps": cfg.trainer.max_steps, "precision": str(cfg.trainer.precision),
    }


def write_summary(output_dir: str | Path, fields: dict[str, Any]) -> Path:
    """Atomically write ``summary.json``; ``status`` must be one of :data:`STATUSES`."""
    if fields.get("status") not in STATUSES:
        raise ValueError(f"status {fields.get('status')!r} is not one of {STATUSES}")
    return write_json(Path(output_dir) / SUMMARY_FILE, fields)
