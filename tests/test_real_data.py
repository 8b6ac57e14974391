"""Real CIFAR-10 (the JPEG image-folder copy): slow, skipped by default (`pytest -m slow`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from residual_lab.run import train

CIFAR = Path(os.environ.get("RESIDUAL_LAB_CIFAR_JPEG", "/tmp/cifar10-jpeg"))

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (CIFAR / "train").is_dir(), reason=f"no CIFAR-10 image folder at {CIFAR}")]


def test_resnet20_learns_cifar10_in_150_steps(make_cfg, tmp_path):
    """Paper hyper-parameters, 45k/5k split: 150 steps take ~1 min on 2 cores."""
    s = train(make_cfg("data=imagefolder", f"data.root={CIFAR}", "depth=20", "data.batch_size=128",
                       "trainer.max_steps=150", "trainer.val_check_interval=150", "callbacks=none"))
    assert s["status"] == "completed" and s["steps"] == 150
    assert s["params"] == 269_722
    assert s["test_error"] < 75.0  # chance is 90%
