"""A sweep launched again picks up where it stopped; sweep jobs get one GPU each."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from residual_lab.sweep import gpu_for_job, plan_job
from tests import helpers
from tests.helpers import summary_of as _summary

ROOT = Path(__file__).resolve().parent.parent
FAST = (*helpers.FAST, "~callbacks.progress_bar")


@pytest.mark.slow  # ~100 s of real multirun; the default suite keeps test_plan_job_reads_each_outcome
def test_a_sweep_launched_again_skips_resumes_and_reruns_the_right_jobs(tmp_path):
    """The real multirun command, SIGKILLed during job 1 after its first periodic checkpoint;
    job 2 (never started) is given a 'failed' summary as an earlier failure would leave."""
    sweep = tmp_path / "sweep"
    command = [sys.executable, "-m", "residual_lab.run", "-m", "experiment=smoke", "seed=0,1,2",
               "trainer.max_steps=40", "callbacks.last_checkpoint.every_n_train_steps=10",
               "trainer.val_check_interval=20", *FAST, f"hydra.sweep.dir={sweep}"]
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"} | {"OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    victim = sweep / "1_resnet-8-identity"
    deadline = time.monotonic() + 240
    while not (victim / "checkpoints" / "last.ckpt").exists():
        assert time.monotonic() < deadline and first.poll() is None, "the sweep ended before job 1's checkpoint"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL
    assert _summary(sweep / "0_resnet-8-identity")["status"] == "completed"
    assert not (victim / "summary.json").exists()
    failed = sweep / "2_resnet-8-identity"
    failed.mkdir()
    (failed / "summary.json").write_text(json.dumps({"status": "failed", "reason": "RuntimeError: earlier"}))
    mtime_0 = (sweep / "0_resnet-8-identity" / "summary.json").stat().st_mtime_ns

    again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "job 0_resnet-8-identity: completed before: skipped" in again.stdout
    assert "job 1_resnet-8-identity: resuming from" in again.stdout
    assert "job 2_resnet-8-identity: failed before: running it again" in again.stdout
    assert (sweep / "0_resnet-8-identity" / "summary.json").stat().st_mtime_ns == mtime_0  # untouched
    resumed = _summary(victim)
    assert resumed["status"] == "completed" and resumed["steps"] == 40 and resumed["resumed_from"].endswith(".ckpt")
    rerun = _summary(failed)
    assert rerun["status"] == "completed" and rerun["steps"] == 40 and rerun["seed"] == 2
    assert rerun["resumed_from"] is None


def test_plan_job_reads_each_outcome(tmp_path):
    assert plan_job(tmp_path / "absent") == ("run", None)
    fresh = tmp_path / "fresh"  # what Hydra makes before the job starts
    (fresh / ".hydra").mkdir(parents=True)
    (fresh / "run.log").write_text("")
    assert plan_job(fresh) == ("run", None)
    for status, action in (("completed", "skip"), ("diverged", "skip"), ("failed", "rerun"), ("interrupted", "rerun")):
        d = tmp_path / status
        d.mkdir()
        (d / "summary.json").write_text(json.dumps({"status": status}))
        assert plan_job(d)[0] == action, status
    (tmp_path / "interrupted" / "checkpoints").mkdir()
    (tmp_path / "interrupted" / "checkpoints" / "interrupted.ckpt").write_bytes(b"")
    assert plan_job(tmp_path / "interrupted")[0] == "resume"
    killed = tmp_path / "killed"
    (killed / "checkpoints").mkdir(parents=True)
    assert plan_job(killed)[0] == "rerun"  # killed before its first checkpoint
    (killed / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert plan_job(killed)[0] == "resume"


def test_plan_job_reads_a_damaged_summary_without_a_traceback(tmp_path):
    """Unreadable summary.json, nothing to rebuild it from: start again; with a checkpoint of an
    unfinished run: resume from it (a finished one is rebuilt: tests/test_run_dir.py)."""
    d = tmp_path / "job"
    d.mkdir()
    (d / "summary.json").write_text('{"status": "comp')  # truncated
    assert plan_job(d) == ("rerun", {"status": "damaged", "reason": "summary.json not JSON"})
    (d / "checkpoints").mkdir()
    (d / "checkpoints" / "last.ckpt").write_bytes(b"")  # unreadable too: nothing to rebuild from
    assert plan_job(d)[0] == "resume"


@pytest.mark.parametrize("gpus,expected", [(4, [[0], [1], [2], [3], [0], [1]]), (1, [[0]] * 6), (3, [[0], [1], [2], [0], [1], [2]])])
def test_each_sweep_job_gets_one_gpu_round_robin(gpus, expected):
    assert [gpu_for_job(j, gpus) for j in range(6)] == expected


def test_gpu_per_job_configs_resolve_from_the_job_number(tmp_path, monkeypatch):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf, open_dict

    from residual_lab.run import CONFIG_DIR

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["trainer=gpu_per_job", "hydra/launcher=per_gpu",
                                           f"paths.output_dir={tmp_path}"], return_hydra_config=True)
    assert cfg.hydra.launcher.n_jobs == 4
    with open_dict(cfg):
        cfg.hydra.job.num = 6
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().set_config(cfg)
    assert OmegaConf.to_container(cfg.trainer, resolve=True)["devices"] == [2]
    assert cfg.trainer.accelerator == "gpu"
