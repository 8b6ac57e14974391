"""Tests compose the real Hydra config and shrink it (CPU, synthetic data, few steps)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

import residual_lab  # noqa: F401  (registers the run_name resolver)
from residual_lab.run import CONFIG_DIR

# Under pytest-xdist (`make test`: one worker per core) every worker, and every process a test
# starts (OMP_NUM_THREADS is read when torch is imported), gets one intra-op thread: two workers
# with two threads each on two cores spend their time in thread hand-offs (tests/probes/conftest.py
# measured 10x on tiny nets). Alone, a test process keeps two threads.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
else:
    torch.set_num_threads(2)


def compose_config(*overrides: str, output_dir: Path) -> DictConfig:
    """The real config with ``overrides``, writing into ``output_dir``."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("config", overrides=[f"paths.output_dir={output_dir}", *overrides])


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """``make_cfg(*overrides)``: the smoke experiment (synthetic data, CPU, 40 steps) + overrides.

    Without the diagnostic figures unless ``figures=True``: drawing them is most of a tiny
    run's cost, and only the tests of the figures look at them."""

    def make(*overrides: str, output_dir: Path | None = None, figures: bool = False) -> DictConfig:
        cfg = compose_config("experiment=smoke", *overrides, output_dir=output_dir or tmp_path)
        with open_dict(cfg):  # no progress bar in test logs
            if cfg.get("callbacks"):
                cfg.callbacks.pop("progress_bar", None)
                if not figures:
                    cfg.callbacks.pop("diagnostic_figures", None)
            cfg.trainer.enable_progress_bar = False
        return cfg

    return make


def run_cli(capsys, monkeypatch, *args: str, run_dir: Path) -> tuple[int, str]:
    """``python -m residual_lab.run <args>`` in this process: (exit code, stdout + stderr).

    What a real process would print and return, for the cost of a config composition instead
    of a Python start-up (tests/test_run.py keeps one real process for the command line)."""
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
