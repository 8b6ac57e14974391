"""`python -m residual_lab.bench` end to end on a tiny config; its timings against a fake clock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

import residual_lab.bench as bench
from residual_lab.bench import _translate_flags, flops_per_image
from residual_lab.callbacks import GradNorms, IntervalCallback
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


#: Forward + backward: each conv and the classifier again for the input gradient and again for
#: the weight gradient, except the stem conv's input gradient (the image needs none).
RESNET8_TRAINING_FLOPS = 3 * 24_478_976 - 2 * 9 * 3 * 16 * 32 * 32


def test_flops_per_image_equal_the_hand_count():
    assert _resnet8_forward_flops() == 24_478_976
    model = OmegaConf.create({"model": {"_target_": "residual_lab.models.CifarResNet", "depth": 8,
                                        "shortcut": "identity"}})
    assert flops_per_image(model, (3, 32, 32)) == (24_478_976, RESNET8_TRAINING_FLOPS)


def test_peak_gflops_flag_becomes_an_override():
    assert _translate_flags(["depth=56", "--peak-gflops", "400", "x=1"]) == ["depth=56", "bench.peak_gflops=400", "x=1"]
    assert _translate_flags(["--peak-gflops=12.5"]) == ["bench.peak_gflops=12.5"]


def test_bench_runs_end_to_end_and_writes_all_three_variants(tmp_path):
    out = tmp_path / "b.json"
    proc = subprocess.run(
        [sys.executable, "-m", "residual_lab.bench", *TINY, f"bench.output={out}", "torch_threads=1",
         f"hydra.run.dir={tmp_path / 'run'}", "--peak-gflops", "50"],
        cwd=ROOT, capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())

    assert sorted(report["variants"]) == ["full", "no_diagnostics", "reference"]
    assert report["config"]["depth"] == 8 and report["config"]["batch_size"] == 64
    assert report["protocol"] == {"warmup_steps": 1, "timed_steps_per_window": 3,
                                  "reference_timed_steps_per_window": 2, "rounds": 2,
                                  "statistic": "median over windows"}
    flops = report["flops_per_image"]
    assert flops["forward"] == 24_478_976 and flops["training"] == RESNET8_TRAINING_FLOPS
    assert report["peak_gflops"] == 50 and report["peak_source"] == "bench.peak_gflops"
    assert report["device"].endswith(", 1 torch threads")  # torch_threads=1 as in `run`, over OMP_NUM_THREADS=2
    for row in report["variants"].values():
        assert len(row["images_per_s_windows"]) == 2 and min(row["images_per_s_windows"]) > 0
        assert row["timed_steps_per_window"] == (2 if row is report["variants"]["reference"] else 3)
        assert row["peak_memory_mb"] > 0 and row["memory_kind"] == "process_rss"
    v, r = report["variants"], report["ratios"]
    assert r["full_over_reference"] > 0 and v["reference"]["workers"] == 1
    assert "step_level" not in v["reference"] and v["full"]["step_level"]["seconds_per_step"] > 0

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


class FakeClock:
    """Stands in for ``time`` in residual_lab.bench: a step takes 0.5 s, plus 0.25 s when a
    diagnostic measured in it (GradNorms logged the step), so every timing has a known value."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    strftime = staticmethod(time.strftime)


class Tick(L.Callback):
    """Advances the fake clock at each batch end, before the bench's StepClock reads it."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        grad = next((c for c in trainer.callbacks if isinstance(c, GradNorms)), None)
        measured = grad is not None and grad.latest.get("step") == trainer.global_step - 1
        self.clock.now += 0.5 + 0.25 * measured


def test_bench_times_exactly_the_timed_steps_and_charges_the_diagnostics_to_full(tmp_path, monkeypatch):
    clock, builds = FakeClock(), []
    real_build = bench.build
    monkeypatch.setattr(bench, "time", clock)
    monkeypatch.setattr(bench, "build", lambda cfg: builds.append(1) or real_build(cfg, extra_callbacks=[Tick(clock)]))
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        # max_steps=5 is fewer than a variant's 2 x (1 + 3) steps: the bench must extend the fit.
        cfg = compose("bench", overrides=[*TINY, "bench.variants=[full,no_diagnostics]", "bench.peak_gflops=50",
                                          "trainer.max_steps=5", f"bench.output={tmp_path / 'b.json'}",
                                          f"paths.output_dir={tmp_path}"])
    report = bench.benchmark(cfg)

    assert len(builds) == 2  # one module, data module and trainer per variant, not per window
    v, r = report["variants"], report["ratios"]
    # Each window: 1 warm-up step, then 3 timed steps; global steps 2-4 and 6-8 (the step counter
    # runs on), of which 2, 4, 6, 8 measure: (b) 0.75 + 0.5 + 0.75 = 2 s, (c) 3 x 0.5 = 1.5 s.
    assert v["full"]["images_per_s_windows"] == [3 * 64 / 2.0] * 2
    assert v["no_diagnostics"]["images_per_s_windows"] == [3 * 64 / 1.5] * 2
    assert v["full"]["achieved_gflops"] == pytest.approx(96 * RESNET8_TRAINING_FLOPS / 1e9)
    assert v["full"]["fraction_of_peak"] == pytest.approx(96 * RESNET8_TRAINING_FLOPS / 1e9 / 50)
    assert r["no_diagnostics_over_full"] == r["no_diagnostics_over_full_paired"] == pytest.approx(128 / 96)
    # Step level: ordinary steps 0.5 s; the measuring step's extra 0.25 s, amortised over the interval of 2.
    assert v["full"]["step_level"] == pytest.approx(
        {"ordinary_step_s": 0.5, "measuring_step_extra_s": 0.25, "seconds_per_step": 0.625})
    assert v["no_diagnostics"]["step_level"] == pytest.approx(
        {"ordinary_step_s": 0.5, "measuring_step_extra_s": 0.0, "seconds_per_step": 0.5})
    assert r["no_diagnostics_over_full_step_level"] == pytest.approx(1.25)


def test_the_reference_loops_workers_are_not_persistent():
    """Persistent workers with pinned memory (the reference loop on a GPU) hold the process ~5 s
    per worker at exit (pytorch/pytorch#81794): the H200 bench of 2026-12-04 printed its table and
    then hung until `timeout` killed it. No GPU here, so the test checks the loader the loop builds."""
    import torch
    from torch import nn

    loop = bench.ReferenceLoop(nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10)),
                               lambda params: torch.optim.SGD(params, lr=0.1),
                               torch.zeros(8, 3, 8, 8, dtype=torch.uint8), torch.zeros(8, dtype=torch.long),
                               torch.full((3,), 0.5), torch.full((3,), 0.25), batch_size=4, workers=1,
                               device=torch.device("cpu"))
    assert loop.loader.num_workers == 1 and loop.loader.persistent_workers is False
    assert loop.step() > 0  # and the loop still trains through its workers


def bench_warnings(tmp_path, *overrides: str) -> list[str]:
    """The warnings a one-variant tiny bench emits, every one recorded."""
    import warnings

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("bench", overrides=[*TINY, "bench.variants=[full]", *overrides,
                                          f"bench.output={tmp_path / 'b.json'}", f"paths.output_dir={tmp_path}"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bench.benchmark(cfg)
    return [str(w.message) for w in caught]


def test_windows_after_the_first_do_not_warn_about_the_checkpoints_the_first_wrote(tmp_path):
    """Every window is a fit into the same run directory, so from the second window on Lightning
    found the first window's checkpoints and warned "Checkpoint directory ... exists and is not
    empty" once a window: noise in a bench, whose checkpoints nobody resumes."""
    caught = bench_warnings(tmp_path, "bench.rounds=2")
    assert not [message for message in caught if "exists and is not empty" in message]


def test_the_held_out_protocol_bench_does_not_warn_about_the_validation_it_skips(tmp_path):
    """The bench fits without validation by design (training speed only): ModelCheckpoint's
    "could not find the monitored key" warning under protocol=heldout is noise, every window."""
    caught = bench_warnings(tmp_path, "protocol=heldout", "bench.rounds=1")
    assert not [message for message in caught if "could not find the monitored key" in message]


#: Each ran into the windows first: steps=0 ended in "the fit stopped after 40 of 5 steps"
#: (a RuntimeError traceback), a misspelt variant in a ValueError traceback.
BENCH_REFUSED = [
    ("bench.steps=0", "bench.steps must be >= 1, got 0"),
    ("bench.rounds=0", "bench.rounds must be >= 1, got 0"),
    ("bench.warmup_steps=-1", "bench.warmup_steps must be >= 0, got -1"),
    ("bench.reference_steps=0", "bench.reference_steps must be >= 1, got 0"),
    ("bench.variants=[full,fast]",
     "bench.variants must be a list of reference, full, no_diagnostics, got ['full', 'fast']"),
    ("bench.peak_gflops=0", "bench.peak_gflops must be > 0, got 0"),
]


@pytest.mark.parametrize("override,message", BENCH_REFUSED, ids=[o for o, _ in BENCH_REFUSED])
def test_a_bench_setting_no_measurement_can_use_is_refused_before_any_window(tmp_path, override, message):
    from residual_lab.errors import UserFacingError

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("bench", overrides=[*TINY, override, f"bench.output={tmp_path / 'b.json'}",
                                          f"paths.output_dir={tmp_path}"])
    with pytest.raises(UserFacingError) as err:
        bench.benchmark(cfg)
    assert str(err.value) == message
    assert not (tmp_path / "b.json").exists()


def test_a_bench_directory_is_not_a_run_to_resume_or_report(tmp_path):
    """A bench leaves .hydra/ and the checkpoints of its windows: ``run resume=<bench dir>`` went on
    training from a window's checkpoint as if it were a run, and ``report`` listed the directory
    as an incomplete run."""
    from residual_lab.errors import UserFacingError
    from residual_lab.results import find_runs
    from residual_lab.run import load_run_config

    bench_dir = tmp_path / "bench"
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("bench", overrides=[*TINY, f"paths.output_dir={bench_dir}"])
    (bench_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, bench_dir / ".hydra" / "config.yaml")
    (bench_dir / "checkpoints").mkdir()
    (bench_dir / "checkpoints" / "last.ckpt").write_bytes(b"")
    with pytest.raises(UserFacingError) as err:
        load_run_config(bench_dir, [])
    assert str(err.value) == (f"resume={bench_dir} is a bench's directory (python -m residual_lab.bench), not a "
                              f"run's: its checkpoints are the bench's timing windows, not a run to continue")
    assert find_runs(tmp_path) == []
