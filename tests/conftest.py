"""Tests compose the real Hydra config and shrink it (CPU, synthetic data, few steps).

Fixtures only: what tests import (overrides, run starters, readers) is in tests/helpers.py,
so no test imports this file (pytest loads it under another module name, and a second
import would run it twice)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest
import torch
from omegaconf import DictConfig, open_dict

import residual_lab  # noqa: F401  (registers the run_name resolver)
from tests.helpers import compose_config

# Under pytest-xdist (`make test`: one worker per core) every worker, and every process a test
# starts (OMP_NUM_THREADS is read when torch is imported), gets one intra-op thread: two workers
# with two threads each on two cores spend their time in thread hand-offs (tests/probes/conftest.py
# measured 10x on tiny nets). Alone, a test process keeps two threads.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
else:
    torch.set_num_threads(2)


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
