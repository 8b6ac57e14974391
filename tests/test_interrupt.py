"""Ctrl-C: the run exits 130, prints the command that resumes it, and that command, run as
printed, finishes the run in the same directory (one run directory, one run.log)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import lightning as L

ROOT = Path(__file__).resolve().parent.parent
STEPS = 6
TINY = ["experiment=smoke", f"trainer.max_steps={STEPS}", "trainer.log_every_n_steps=2",
        "trainer.val_check_interval=3", "trainer.check_val_every_n_epoch=null", "trainer.enable_progress_bar=false",
        "callbacks=none", "width=8", "data.batch_size=32", "data.source.num_train=384", "data.source.num_test=64",
        "data.val_size=64", "data.eval_batch_size=64"]
#: Library output that says nothing to a researcher (residual_lab.console drops it; our own saves
#: pass weights_only): none of it may reach the console of a run or of its resume.
NOISE = ("GPU available: False", "TPU available: False", "💡 Tip", "LeafSpec", "`weights_only` was not set",
         "exists and is not empty")


class CtrlCAt(L.Callback):
    """Presses Ctrl-C once, after optimizer step ``step``: SIGINT to the run's whole process
    group, as a terminal sends it. A resumed run starts past ``step`` and is left alone."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            os.killpg(os.getpgid(0), signal.SIGINT)


def test_ctrl_c_exits_130_and_the_printed_command_resumes_into_the_same_run_directory(tmp_path):
    # Outputs under tmp_path/logs (RESIDUAL_LAB_ROOT); ROOT on the path only for CtrlCAt.
    env = {**os.environ, "RESIDUAL_LAB_ROOT": str(tmp_path), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "residual_lab.run", *TINY,
               "+callbacks.ctrl_c._target_=tests.test_interrupt.CtrlCAt", "+callbacks.ctrl_c.step=2"]
    first = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
                           start_new_session=True)  # its own process group, like a terminal's job
    assert first.returncode == 130, first.stdout[-2000:] + first.stderr[-3000:]
    assert "Traceback" not in first.stdout + first.stderr
    assert [n for n in NOISE if n in first.stdout + first.stderr] == []
    [run_dir] = (tmp_path / "logs" / "runs").glob("*/*")
    lines = first.stdout.splitlines()
    said = next(i for i, line in enumerate(lines) if line.startswith("residual_lab: stopped by SIGINT"))
    assert lines[said] == f"residual_lab: stopped by SIGINT; resume into {run_dir} with:"
    printed = lines[said + 1].strip()
    assert printed.endswith(f"-m residual_lab.run resume={run_dir}")
    interrupted = json.loads((run_dir / "summary.json").read_text())
    assert interrupted["status"] == "interrupted" and interrupted["steps"] == 2  # checkpointed at that step's end
    first_log = (run_dir / "run.log").read_text()
    saved_config = (run_dir / ".hydra" / "config.yaml").read_text()

    again = subprocess.run(printed, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    assert list((tmp_path / "logs" / "runs").glob("*/*")) == [run_dir]  # no second run directory
    assert [n for n in NOISE if n in again.stdout + again.stderr] == []
    assert f"residual_lab: run directory {run_dir}" in again.stdout
    done = json.loads((run_dir / "summary.json").read_text())
    assert done["status"] == "completed" and done["steps"] == STEPS
    assert done["resumed_from"] == str(run_dir / "checkpoints" / "interrupted.ckpt")
    log = (run_dir / "run.log").read_text()
    assert log.startswith(first_log) and "resuming" in log[len(first_log):]  # appended, not replaced
    assert (run_dir / ".hydra" / "config.yaml").read_text() == saved_config  # what resume rebuilds from


def test_after_ctrl_c_with_the_progress_bar_on_the_resume_command_is_the_last_line(tmp_path):
    """What a terminal shows (stdout and stderr in one stream, the bar redrawn with carriage
    returns): nothing, not even a last redraw of the bar, comes after the resume command."""
    env = {**os.environ, "RESIDUAL_LAB_ROOT": str(tmp_path), "PYTHONPATH": str(ROOT)}
    shown = [a for a in TINY if a not in ("trainer.enable_progress_bar=false", "callbacks=none")]
    command = [sys.executable, "-m", "residual_lab.run", *shown, "callbacks.progress_bar.refresh_rate=1",
               "+callbacks.ctrl_c._target_=tests.test_interrupt.CtrlCAt", "+callbacks.ctrl_c.step=2"]
    first = subprocess.run(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=300, start_new_session=True)
    assert first.returncode == 130, first.stdout[-3000:]
    [run_dir] = (tmp_path / "logs" / "runs").glob("*/*")
    screen = [line.rsplit("\r", 1)[-1].rstrip() for line in first.stdout.split("\n")]  # what stays on screen
    screen = [line for line in screen if line]
    assert "Epoch" in first.stdout  # the bar was drawn
    assert screen[-2] == f"residual_lab: stopped by SIGINT; resume into {run_dir} with:", screen[-4:]
    assert screen[-1].strip().endswith(f"-m residual_lab.run resume={run_dir}"), screen[-4:]
