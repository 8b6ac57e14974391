"""The Hydra app: compose -> instantiate -> fit -> test -> summary.json.

    python -m residual_lab.run depth=56 shortcut=identity
    python -m residual_lab.run -m depth=20,32,44,56 shortcut=none,identity
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from residual_lab.callbacks import IntervalCallback, TrainSpeed
from residual_lab.errors import UserFacingError
from residual_lab.summary import config_fields, write_summary

log = logging.getLogger(__name__)
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def build(cfg: DictConfig) -> tuple[L.LightningModule, L.LightningDataModule, L.Trainer]:
    """Instantiate the module, data and trainer a config describes (no training)."""
    net = instantiate(cfg.model)
    module = instantiate(cfg.task, net=net, optimizer=instantiate(cfg.optimizer),
                         scheduler=instantiate(cfg.scheduler))
    datamodule = instantiate(cfg.data)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    return module, datamodule, trainer


def _find(trainer: L.Trainer, cls: type) -> Any:
    return next((c for c in trainer.callbacks if isinstance(c, cls)), None)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train, validate and test one network; return (and write) its summary."""
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    start = time.perf_counter()
    module, datamodule, trainer = build(cfg)
    params = sum(p.numel() for p in module.net.parameters())
    log.info("%s: %d parameters, output in %s", cfg.run_name, params, output_dir)

    trainer.fit(module, datamodule=datamodule)
    val = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    ckpt = trainer.checkpoint_callback
    best = ckpt.best_model_path if ckpt is not None and ckpt.best_model_path else None
    # Test the best-validation checkpoint (never chosen on test), else the final weights.
    test = trainer.test(module, datamodule=datamodule, ckpt_path=best, verbose=False, weights_only=True)[0]

    speed = _find(trainer, TrainSpeed)
    summary = {
        **config_fields(cfg),
        "params": params,
        "steps": trainer.global_step,
        "epochs": trainer.current_epoch,
        **module.train_window(),
        "val_error": val.get("val/error"),  # final weights
        "best_val_error": float(ckpt.best_model_score) if best and ckpt.best_model_score is not None else None,
        "val_loss": val.get("val/loss"),
        "test_error": test.get("test/error"),
        "test_loss": test.get("test/loss"),
        "test_accuracy": test.get("test/accuracy"),
        "test_recall_macro": test.get("test/recall"),
        "test_f1_macro": test.get("test/f1"),
        "tested_checkpoint": "best-val" if best else "final",
        "best_checkpoint": best,
        "wall_time_s": time.perf_counter() - start,
        "train_images_per_s": speed.images_per_s if speed else None,
        "status": "completed",
        "output_dir": str(output_dir),
        "diagnostics": {c.summary_key: c.summary() for c in trainer.callbacks if isinstance(c, IntervalCallback)},
    }
    for lg in trainer.loggers:
        lg.log_hyperparams({k: summary[k] for k in ("depth", "shortcut", "block", "width", "norm", "seed",
                                                    "params", "lr", "batch_size", "max_steps")},
                           {"hp/train_error": summary["train_error"], "hp/val_error": summary["val_error"] or -1,
                            "hp/test_error": summary["test_error"]})
    write_summary(output_dir, summary)
    log.info("%s: train error %.2f%%, val error %s, test error %.2f%%", cfg.run_name,
             summary["train_error"], summary["val_error"], summary["test_error"])
    return summary


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> float | None:
    try:
        return train(cfg)["test_error"]
    except UserFacingError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"\nresidual_lab: {err}\n", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
