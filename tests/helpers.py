"""What several test files share: the fast-run overrides, the ways to start a run, readers of
what a run leaves behind, and small fixtures on disk. Imported as ``tests.helpers`` (the
repository root is on ``pythonpath``); fixtures stay in conftest.py, which pytest loads itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import lightning as L
import numpy as np
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig
from PIL import Image

from residual_lab.run import CONFIG_DIR

ROOT = Path(__file__).resolve().parents[1]

#: Every per-step diagnostic and the figures off: a tiny run then costs its training steps
#: only. Tests of a diagnostic switch it on by leaving it out of their overrides.
FAST = ("~callbacks.grad_norm", "~callbacks.block_grad", "~callbacks.block_rms", "~callbacks.update_ratio",
        "~callbacks.token_stats", "~callbacks.resources", "~callbacks.diagnostic_figures",
        "~callbacks.train_split_error")
#: A 1-step run on a few synthetic images, every diagnostic measuring at that step.
ONE_STEP = ("trainer.max_steps=1", "trainer.val_check_interval=1", "diagnostics.every_n_steps=1",
            "data.batch_size=16", "data.eval_batch_size=32", "data.source.num_train=64", "data.val_size=16",
            "data.source.num_test=16", "~callbacks.last_checkpoint", "~callbacks.diagnostic_figures",
            "~callbacks.lr_monitor", "~logger.tensorboard")

# ResNet-20, option A: stem conv, 3 stages x 3 blocks x 2 convs, classifier (He et al. 2015 sec. 4.2).
RESNET20_LAYERS = (
    ["stem.conv"]
    + [f"s{s}.b{b}.conv{c}" for s in (1, 2, 3) for b in range(3) for c in (1, 2)]
    + ["head.fc"]
)
RESNET20_BLOCKS = [f"s{s}.b{b}" for s in (1, 2, 3) for b in range(3)]


# --- starting a run --------------------------------------------------------------------------

def compose_config(*overrides: str, output_dir: Path) -> DictConfig:
    """The real config with ``overrides``, writing into ``output_dir``."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("config", overrides=[f"paths.output_dir={output_dir}", *overrides])


def run_cli(capsys, monkeypatch, *args: str, run_dir: Path) -> tuple[int, str]:
    """``python -m residual_lab.run <args>`` in this process: (exit code, stdout + stderr).

    What a real process would print and return, for the cost of a config composition instead
    of a Python start-up (:func:`run_process` keeps a real process where the test needs one)."""
    from residual_lab.run import main

    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.setattr(sys, "argv", ["residual_lab.run", *args, f"hydra.run.dir={run_dir}"])
    GlobalHydra.instance().clear()
    code = 0  # Hydra's main returns when the run (or every job of a sweep) has ended normally
    try:
        main()
    except SystemExit as stop:
        code = stop.code or 0
    finally:
        GlobalHydra.instance().clear()
    out = capsys.readouterr()
    return code, out.out + out.err


def run_process(*args: str, cwd: Path = ROOT, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m residual_lab.run <args>`` in a new process, as a user types it (no
    ``HYDRA_FULL_ERROR``, which would turn the one-sentence errors into tracebacks)."""
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.run([sys.executable, "-m", "residual_lab.run", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def multirun(sweep_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    """``python -m residual_lab.run -m <overrides>`` into ``sweep_dir`` in a fresh process
    (Hydra's global state stays clean); fails the test with the output's tail unless it exits 0."""
    cmd = [sys.executable, "-m", "residual_lab.run", "-m", *overrides, f"hydra.sweep.dir={sweep_dir}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "RESIDUAL_LAB_ROOT": str(sweep_dir.parent)})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def summary_of(run_dir: Path) -> dict:
    """A run's summary.json."""
    return json.loads((Path(run_dir) / "summary.json").read_text())


# --- watching a fit --------------------------------------------------------------------------

class CaptureLogger(Logger):
    """Keeps every ``log_metrics`` call as ``(step, metrics)``, in call order."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple[int, dict]] = []

    @property
    def name(self) -> str:
        return "capture"

    @property
    def version(self) -> str:
        return "0"

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        self.records.append((step, dict(metrics)))

    def tagged(self, prefixes: tuple[str, ...]) -> list[tuple[int, dict]]:
        """The calls that logged a tag starting with one of ``prefixes``, only those tags."""
        return [(s, {k: v for k, v in m.items() if k.startswith(prefixes)}) for s, m in self.records
                if any(k.startswith(prefixes) for k in m)]


def fit(cfg: DictConfig, *extra: L.Callback, first: L.Callback | None = None):
    """Build a run from ``cfg``, log to a :class:`CaptureLogger` only, fit; ``first`` runs
    before every other callback, ``extra`` after. Returns (module, trainer, logger)."""
    from residual_lab.run import build

    module, datamodule, trainer = build(cfg)
    logger = CaptureLogger()
    trainer.loggers = [logger]
    if first is not None:
        trainer.callbacks.insert(0, first)
    trainer.callbacks.extend(extra)
    trainer.fit(module, datamodule=datamodule)
    return module, trainer, logger


def block_hooks(net) -> int:
    """Forward hooks on a net's blocks and their residual branches (diagnostics attach theirs
    only inside a logging step)."""
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) + len(m.residual._forward_hooks)
               for _, m in net.named_blocks())


# --- fixtures on disk ------------------------------------------------------------------------

def image_folder(root: Path, classes: Sequence[str] = ("cat", "dog"), per_class: int | Sequence[int] = 12,
                 test_per_class: int | None = None, size: tuple[int, int] = (32, 32), mode: str = "RGB",
                 seed: int = 0) -> Path:
    """An ImageFolder tree ``root/{train,test}/<class>/<i>.png`` of random images.

    Args:
        per_class: training images per class, one count for all or one per class.
        test_per_class: test images per class (default: as many as ``per_class``).
        size: (width, height) in pixels; mode: ``RGB`` or ``L`` (grayscale).
    """
    rng = np.random.default_rng(seed)
    for split, count in (("train", per_class), ("test", per_class if test_per_class is None else test_per_class)):
        counts = count if isinstance(count, Sequence) else [count] * len(classes)
        for c, n in zip(classes, counts):
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
                Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(root / split / c / f"{i}.png")
    return root
