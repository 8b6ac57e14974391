"""Reliability: divergence, interruption and resume, determinism, failures, bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf

from residual_lab.errors import UserFacingError
from residual_lab.run import build, load_run_config, train
from tests import helpers
from tests.helpers import run_cli
from tests.helpers import run_process as _cli
from tests.helpers import summary_of as _summary

ROOT = Path(__file__).resolve().parent.parent
#: Without the diagnostics, on 8x8 synthetic images: what these tests check does not depend on either.
FAST = (*helpers.FAST, "data.source.image_size=8")


def test_divergence_stops_the_run_and_records_the_step(make_cfg, tmp_path):
    s = train(make_cfg(*FAST, "norm=none", "shortcut=none", "optimizer.lr=1000"))
    on_disk = _summary(tmp_path)
    assert on_disk["status"] == s["status"] == "diverged"
    assert 1 <= on_disk["steps"] <= 10 and "training loss became nan" in on_disk["reason"]
    assert on_disk["test_error"] is None
    assert list((tmp_path / "tensorboard" / "plain-8-norm_none").glob("events.out.tfevents.*"))


def test_diverged_run_exits_zero_from_the_command_line(tmp_path, capsys, monkeypatch):
    code, output = run_cli(capsys, monkeypatch, "experiment=smoke", "norm=none", "shortcut=none",
                           "optimizer.lr=1000", *FAST, run_dir=tmp_path)
    assert code == 0, output[-2000:]
    assert _summary(tmp_path)["status"] == "diverged"


class _SignalAt(L.Callback):
    """Send this process a signal at a given step, as `kill -TERM` would mid-epoch."""

    def __init__(self, step: int, signum: int) -> None:
        self.step, self.signum = step, signum

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


# SIGINT from a terminal, end to end, is tests/test_interrupt.py; here it is slow.
@pytest.mark.parametrize("signum", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)])
def test_interrupted_run_resumes_to_the_same_metrics_as_an_uninterrupted_one(make_cfg, tmp_path, signum, monkeypatch):
    overrides = (*FAST, "deterministic=true", "trainer.max_steps=24", "trainer.val_check_interval=12", "data.batch_size=16")
    straight = train(make_cfg(*overrides, output_dir=tmp_path / "straight"))

    cfg = make_cfg(*overrides, output_dir=tmp_path / "cut")
    (tmp_path / "cut" / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, tmp_path / "cut" / ".hydra" / "config.yaml")
    import residual_lab.run as run_module

    real_build = run_module.build
    monkeypatch.setattr(run_module, "build", lambda c, extra_callbacks=(): real_build(
        c, extra_callbacks=[_SignalAt(13, signum), *extra_callbacks]))  # mid-epoch (112 batches/epoch)
    cut = train(cfg)
    assert cut["status"] == "interrupted" and cut["steps"] == 13
    assert (tmp_path / "cut" / "checkpoints" / "interrupted.ckpt").exists()
    monkeypatch.setattr(run_module, "build", real_build)

    resumed = train(load_run_config(tmp_path / "cut", []), resume=True)
    assert resumed["status"] == "completed" and resumed["steps"] == 24
    for key in ("train_error", "train_loss", "val_error", "val_loss", "test_error", "test_loss"):
        assert resumed[key] == straight[key], key
    assert not (tmp_path / "cut" / "checkpoints" / "interrupted.ckpt").exists()
    # One TensorBoard run: the resumed process appends to the same directory.
    assert [p.name for p in (tmp_path / "cut" / "tensorboard").iterdir()] == ["resnet-8-identity"]


def test_deterministic_runs_repeat_exactly(make_cfg, tmp_path):
    short = (*FAST, "deterministic=true", "trainer.max_steps=8", "trainer.val_check_interval=4", "data.batch_size=16")
    a = train(make_cfg(*short, output_dir=tmp_path / "a"))
    b = train(make_cfg(*short, output_dir=tmp_path / "b"))
    assert a["val_error"] is not None and a["test_error"] is not None  # every compared number exists
    for key in ("train_error", "train_loss", "val_error", "val_loss", "test_error", "test_loss"):
        assert a[key] == b[key], key


def test_a_failing_job_does_not_stop_the_sweep(tmp_path, capsys, monkeypatch):
    # in process: the basic launcher runs the jobs one after the other in this interpreter
    code, output = run_cli(capsys, monkeypatch, "-m", "experiment=smoke", "trainer.max_steps=10",
                           "trainer.precision=32-true,bogus", *FAST, f"hydra.sweep.dir={tmp_path}",
                           run_dir=tmp_path / "unused")
    # every job ran; the sweep's exit code says one was refused (tests/test_entry_points.py)
    assert code == 2, output[-2000:]
    assert "residual_lab: 1 of 2 jobs failed, 1 of them on bad input" in output
    (ok,) = tmp_path.glob("0_*")
    (bad,) = tmp_path.glob("1_*")
    assert _summary(ok)["status"] == "completed"
    failed = _summary(bad)
    assert failed["status"] == "failed" and "bogus" in failed["reason"]


@pytest.mark.slow  # 60 s; tests/test_sweep_resume.py kills a real multirun too (also slow)
def test_a_killed_sweep_job_leaves_the_others_intact_and_resumes_to_completion(tmp_path):
    """Fault injection: three jobs of a sweep as separate processes (as the joblib and
    submitit launchers run them); job 1 gets SIGKILL after its first periodic checkpoint."""
    common = ["experiment=smoke", "trainer.max_steps=40", "callbacks.last_checkpoint.every_n_train_steps=10",
              "trainer.val_check_interval=20", *FAST, "~callbacks.progress_bar"]
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"} | {"OMP_NUM_THREADS": "1"}
    jobs = [subprocess.Popen([sys.executable, "-m", "residual_lab.run", *common, f"seed={i}",
                              f"hydra.run.dir={tmp_path / f'{i}_job'}"], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(3)]
    victim = tmp_path / "1_job"
    deadline = time.monotonic() + 240
    while not (victim / "checkpoints" / "last.ckpt").exists():
        assert time.monotonic() < deadline and jobs[1].poll() is None, "job 1 ended before its first checkpoint"
        time.sleep(0.05)
    jobs[1].send_signal(signal.SIGKILL)
    assert jobs[1].wait() == -signal.SIGKILL
    assert jobs[0].wait(timeout=300) == 0 and jobs[2].wait(timeout=300) == 0
    for i in (0, 2):
        s = _summary(tmp_path / f"{i}_job")
        assert s["status"] == "completed" and s["steps"] == 40 and s["seed"] == i
        assert torch.load(tmp_path / f"{i}_job" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 40
    assert not (victim / "summary.json").exists()  # killed: no summary, and no half-written one
    assert not list(victim.glob(".summary.json.*"))

    proc = _cli(f"resume={victim}", f"hydra.run.dir={tmp_path / 'resume_log'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    s = _summary(victim)
    assert s["status"] == "completed" and s["steps"] == 40 and s["seed"] == 1
    assert s["resumed_from"].endswith("last.ckpt")


# --- bad input: one short message naming the value and what is valid --------------------

@pytest.mark.parametrize("override,message", [
    ("depth=57", "depth 57 is not 6n+2 for block=basic; nearest valid depths: 56, 62"),
    ("shortcut=skip", "unknown shortcut 'skip'; valid choices: full_projection, identity, none, projection"),
    ("block=dense", "unknown block 'dense'; valid choices: basic, bottleneck, preact, preact_bottleneck"),
    ("norm=layer", "unknown norm 'layer'; valid choices: batch, none"),
    ("optimizer.lr=0", "optimizer.lr must be > 0, got 0"),
    ("optimizer.lr=-0.1", "optimizer.lr must be > 0, got -0.1"),
    ("data.batch_size=0", "data.batch_size must be >= 1, got 0"),
    ("trainer.max_steps=0", "trainer.max_steps must be >= 1 (or -1 to use max_epochs), got 0"),
])
def test_bad_values_are_named(make_cfg, override, message):
    with pytest.raises(UserFacingError) as err:
        build(make_cfg(override))
    assert str(err.value) == message


def test_subset_larger_than_the_data_is_named(make_cfg):
    with pytest.raises(UserFacingError, match=r"data.subset=5000 is larger than the training split \(1792 images\)"):
        train(make_cfg("data.subset=5000"))


def test_bad_input_on_the_command_line_exits_nonzero_without_traceback(capsys, monkeypatch, tmp_path):
    code, output = run_cli(capsys, monkeypatch, "experiment=smoke", "depth=57", run_dir=tmp_path / "run")
    assert code == 2
    assert "Traceback" not in output
    assert "residual_lab: depth 57 is not 6n+2 for block=basic; nearest valid depths: 56, 62\n" in output
    assert not (tmp_path / "run").exists()  # refused before it began: no "failed" run directory


def test_a_checkpoint_of_another_architecture_is_refused_with_the_mismatching_keys(make_cfg, tmp_path):
    train(make_cfg(*FAST, "trainer.max_steps=2", output_dir=tmp_path / "run"))
    # resume= refuses depth=14 before any checkpoint is read (tests/test_run_dir.py); a config of
    # another depth that reaches the checkpoint all the same is refused by the checkpoint's keys.
    with pytest.raises(UserFacingError) as err:
        train(make_cfg(*FAST, "depth=14", "shortcut=projection", output_dir=tmp_path / "run"), resume=True)
    msg = str(err.value)
    assert "is of another architecture" in msg
    # ResNet-14 (B) has 48 state keys a ResNet-8 (A) checkpoint lacks; the first three are named.
    assert "48 missing from the checkpoint (net.stages.0.blocks.1.residual.conv1.weight" in msg
    assert "(+45 more)" in msg


def test_checkpoints_hold_only_weights_only_loadable_objects(make_cfg, tmp_path):
    train(make_cfg(*FAST, "trainer.max_steps=2"))
    checkpoints = sorted((tmp_path / "checkpoints").glob("*.ckpt"))
    # The best-validation checkpoint and the resumable last.ckpt; none at all must fail, not pass.
    assert [p.name for p in checkpoints] == ["best-step2.ckpt", "last.ckpt"]
    for ckpt in checkpoints:
        state = torch.load(ckpt, weights_only=True)  # raises on any pickled class
        assert state["global_step"] == 2 and state["state_dict"] and "callbacks" in state, ckpt.name
