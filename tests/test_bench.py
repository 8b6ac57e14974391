"""`python -m residual_lab.bench` end to end on a tiny config (numbers are not timed here)."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from residual_lab.bench import TRAIN_FLOPS_PER_FORWARD, _translate_flags, forward_flops_per_image
from residual_lab.callbacks import IntervalCallback
from residual_lab.models import CifarResNet
from residual_lab.run import CONFIG_DIR

ROOT = Path(__file__).resolve().parent.parent
TINY = ["experiment=smoke", "~callbacks.progress_bar", "bench.steps=3", "bench.warmup_steps=1",
        "bench.rounds=2", "bench.reference_workers=1", "bench.reference_steps=2", "diagnostics.every_n_steps=2"]


def _resnet8_forward_flops() -> int:
    """By hand: 2 FLOPs per multiply-add, k*k*c_in*c_out per output pixel, plus the classifier."""
    def conv(c_in, c_out, side):
        return 2 * 9 * c_in * c_out * side * side
    return (conv(3, 16, 32) + 2 * conv(16, 16, 32) + conv(16, 32, 16) + conv(32, 32, 16)
            + conv(32, 64, 8) + conv(64, 64, 8) + 2 * 64 * 10)


def test_flops_per_image_equal_the_hand_count():
    net = CifarResNet(depth=8, shortcut="identity")
    assert _resnet8_forward_flops() == 24_478_976
    assert forward_flops_per_image(net, (3, 32, 32), torch.device("cpu")) == 24_478_976
    assert net.training  # left as found


def test_peak_gflops_flag_becomes_an_override():
    assert _translate_flags(["depth=56", "--peak-gflops", "400", "x=1"]) == ["depth=56", "bench.peak_gflops=400", "x=1"]
    assert _translate_flags(["--peak-gflops=12.5"]) == ["bench.peak_gflops=12.5"]


def test_bench_runs_end_to_end_and_writes_all_three_variants(tmp_path):
    out = tmp_path / "b.json"
    proc = subprocess.run(
        [sys.executable, "-m", "residual_lab.bench", *TINY, f"bench.output={out}",
         f"hydra.run.dir={tmp_path / 'run'}", "--peak-gflops", "50"],
        cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())

    assert sorted(report["variants"]) == ["full", "no_diagnostics", "reference"]
    assert report["config"]["depth"] == 8 and report["config"]["batch_size"] == 64
    assert report["protocol"] == {"warmup_steps": 1, "timed_steps_per_window": 3,
                                  "reference_timed_steps_per_window": 2, "rounds": 2,
                                  "statistic": "median over windows"}
    flops = report["flops_per_image"]
    assert flops["forward"] == 24_478_976 and flops["training"] == TRAIN_FLOPS_PER_FORWARD * 24_478_976
    assert report["peak_gflops"] == 50 and report["peak_source"] == "bench.peak_gflops"
    for row in report["variants"].values():
        assert len(row["images_per_s_windows"]) == 2 and min(row["images_per_s_windows"]) > 0
        assert row["timed_steps_per_window"] == (2 if row is report["variants"]["reference"] else 3)
        assert row["images_per_s"] == statistics.median(row["images_per_s_windows"])
        assert row["achieved_gflops"] == pytest.approx(row["images_per_s"] * flops["training"] / 1e9)
        assert row["fraction_of_peak"] == pytest.approx(row["achieved_gflops"] / 50)
        assert row["peak_memory_mb"] > 0 and row["memory_kind"] == "process_rss"
    v, r = report["variants"], report["ratios"]
    assert r["full_over_reference"] == pytest.approx(v["full"]["images_per_s"] / v["reference"]["images_per_s"])
    assert r["no_diagnostics_over_full"] == pytest.approx(
        v["no_diagnostics"]["images_per_s"] / v["full"]["images_per_s"])
    (c1, c2), (b1, b2) = v["no_diagnostics"]["images_per_s_windows"], v["full"]["images_per_s_windows"]
    assert r["no_diagnostics_over_full_paired"] == pytest.approx((c1 / b1 + c2 / b2) / 2)  # median of 2
    assert v["reference"]["workers"] == 1
    # Per-step times on the CPU: 3 timed steps (global steps 2-4) of which 2 and 4 measure.
    for name in ("full", "no_diagnostics"):
        level = v[name]["step_level"]
        assert level["seconds_per_step"] == pytest.approx(
            level["ordinary_step_s"] + level["measuring_step_extra_s"] / 2)
    assert r["no_diagnostics_over_full_step_level"] == pytest.approx(
        v["full"]["step_level"]["seconds_per_step"] / v["no_diagnostics"]["step_level"]["seconds_per_step"])
    assert "step_level" not in v["reference"]

    # (b) runs the default callbacks; (c) exactly those minus the diagnostics.
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("bench", overrides=[*TINY, f"paths.output_dir={tmp_path}"])
    made = [instantiate(c) for c in cfg.callbacks.values() if c]
    diagnostics = sorted(type(c).__name__ for c in made if isinstance(c, IntervalCallback))
    full, bare = v["full"]["callbacks"], v["no_diagnostics"]["callbacks"]
    assert sorted(set(full) - set(bare)) == diagnostics
    assert {type(c).__name__ for c in made} <= set(full)
    assert "bench.json" not in {p.name for p in tmp_path.iterdir()}  # bench.output honoured
    assert "b/a (pipeline speed-up)" in proc.stdout and "c/b (diagnostics overhead)" in proc.stdout


def test_step_level_overhead_is_the_median_ordinary_step_plus_the_amortised_extra():
    from residual_lab.bench import step_level_overhead

    # Two windows of 5 steps, the 4th a measuring step; a slow outlier (0.9) in window 2.
    windows = [([0.5, 0.5, 0.6, 0.8, 0.5], [False, False, False, True, False]),
               ([0.6, 0.9, 0.6, 1.0, 0.6], [False, False, False, True, False])]
    out = step_level_overhead(windows, every_n_steps=4)
    # ordinary steps 0.5 0.5 0.6 0.5 | 0.6 0.9 0.6 0.6 -> median 0.6; extras 0.8-0.5=0.3, 1.0-0.6=0.4 -> 0.35
    assert out["ordinary_step_s"] == pytest.approx(0.6)
    assert out["measuring_step_extra_s"] == pytest.approx(0.35)
    assert out["seconds_per_step"] == pytest.approx(0.6 + 0.35 / 4)
    assert step_level_overhead([([0.5, 0.5], [False, False])], every_n_steps=4) is None
    assert step_level_overhead([], every_n_steps=4) is None
