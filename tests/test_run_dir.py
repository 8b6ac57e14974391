"""A run directory belongs to one run: a lock while it runs, no second run over a finished one,
a sweep relaunched with other values keeps the old results and runs the changed jobs elsewhere,
and a damaged summary.json is rebuilt, not retrained or reported as a killed run."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from residual_lab.errors import UserFacingError
from residual_lab.run import load_run_config
from tests import helpers
from tests.helpers import run_cli
from tests.helpers import summary_of as _summary

#: Without the diagnostics, on 8x8 synthetic images, 4 steps: what these tests check is the run
#: directory, not the training.
FAST = ("experiment=smoke", *helpers.FAST, "~callbacks.progress_bar", "data.source.image_size=8",
        "trainer.max_steps=4", "trainer.val_check_interval=2", "trainer.log_every_n_steps=2", "data.batch_size=16")


def _events(d: Path) -> list[Path]:
    return sorted((d / "tensorboard").rglob("events.out.tfevents.*"))


# --- one run per directory ------------------------------------------------------------------

def test_a_second_run_into_a_run_directory_is_refused_and_the_first_run_is_kept(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    code, output = run_cli(capsys, monkeypatch, *FAST, "seed=0", run_dir=run)
    assert code == 0, output[-2000:]
    first = (run / "summary.json").read_bytes()
    ckpt_mtime = (run / "checkpoints" / "last.ckpt").stat().st_mtime_ns
    events = _events(run)

    code, output = run_cli(capsys, monkeypatch, *FAST, "seed=1", run_dir=run)
    assert code == 2 and "Traceback" not in output
    assert f"residual_lab: {run} already holds a run (summary.json, checkpoints/); continue it with " \
           f"resume={run} or give this run its own hydra.run.dir\n" in output
    assert (run / "summary.json").read_bytes() == first  # the first run's record, untouched
    assert (run / "checkpoints" / "last.ckpt").stat().st_mtime_ns == ckpt_mtime
    assert _events(run) == events  # no second run's curves in the first one's TensorBoard folder
    # Hydra rewrote .hydra/ for the refused launch; the run's own is back (a later resume= reads it).
    assert OmegaConf.load(run / ".hydra" / "config.yaml").seed == 0
    assert OmegaConf.load(run / ".hydra" / "overrides.yaml")[-1] == "seed=0"
    assert not (run / "run.lock").exists()


def test_a_bad_value_into_a_taken_run_directory_names_the_value_first(tmp_path, capsys, monkeypatch):
    """The typo is what the person fixes first; "already holds a run" hid it until the next try.
    The earlier run is kept as when the directory alone is the problem."""
    run = tmp_path / "run"
    code, output = run_cli(capsys, monkeypatch, *FAST, "seed=0", run_dir=run)
    assert code == 0, output[-2000:]
    first = (run / "summary.json").read_bytes()

    code, output = run_cli(capsys, monkeypatch, *FAST, "seed=-1", run_dir=run)
    assert code == 2 and "Traceback" not in output
    assert output.rstrip().splitlines()[-1] == ("residual_lab: seed must be from 0 to 4294967295 (the seeds numpy "
                                                "accepts), got -1")
    assert (run / "summary.json").read_bytes() == first
    assert OmegaConf.load(run / ".hydra" / "config.yaml").seed == 0  # the run's own .hydra/ is back


def test_a_run_directory_in_use_is_refused(tmp_path, capsys, monkeypatch):
    from residual_lab.run_dir import RunLock

    run = tmp_path / "run"
    run.mkdir()
    with RunLock(run):  # another run holds it (flock is per open file: this process's second open conflicts)
        code, output = run_cli(capsys, monkeypatch, *FAST, run_dir=run)
    assert code == 2 and "Traceback" not in output
    assert f"residual_lab: {run} is in use by another run (pid {os.getpid()}" in output
    assert not (run / "summary.json").exists()


def test_a_sweep_job_refused_by_the_lock_is_counted_without_writing_into_the_locked_directory(
        tmp_path, capsys, monkeypatch):
    """The job's directory is another run's while it runs: no failed summary goes there, and the
    sweep's count of failed jobs still includes it (from the sweep's own ledger)."""
    from residual_lab.run_dir import RunLock

    sweep = tmp_path / "sweep"
    job0 = sweep / "0_resnet-8-identity"
    job0.mkdir(parents=True)
    with RunLock(job0):
        code, output = run_cli(capsys, monkeypatch, "-m", *FAST, "optimizer.lr=0.05,0.01", f"hydra.sweep.dir={sweep}",
                               run_dir=tmp_path / "unused")
    assert code == 2, output[-2000:]
    assert f"residual_lab: {job0} is in use by another run" in output
    assert "residual_lab: 1 of 2 jobs failed, 1 of them on bad input" in output
    assert not (job0 / "summary.json").exists()
    assert _summary(sweep / "1_resnet-8-identity")["status"] == "completed"


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_line_saying_so(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.lock").write_text("999999999 somehost\n")  # pid beyond pid_max: never running
    code, output = run_cli(capsys, monkeypatch, *FAST, run_dir=run)
    assert code == 0, output[-2000:]
    assert f"residual_lab: {run}: took over the lock of pid 999999999, which is not running\n" in output
    assert _summary(run)["status"] == "completed"
    assert not (run / "run.lock").exists()


# --- a sweep launched again with other values ------------------------------------------------

def test_a_sweep_relaunched_with_changed_values_keeps_the_old_jobs_and_runs_the_new_ones_beside(
        tmp_path, capsys, monkeypatch):
    sweep = tmp_path / "sweep"

    def launch(lrs: str) -> str:
        code, output = run_cli(capsys, monkeypatch, "-m", *FAST, f"optimizer.lr={lrs}", f"hydra.sweep.dir={sweep}",
                               run_dir=tmp_path / "unused")
        assert code == 0, output[-2000:]
        return output

    launch("0.05,0.01")
    job0, job1 = sweep / "0_resnet-8-identity", sweep / "1_resnet-8-identity"
    kept = (job1 / "summary.json").read_bytes()

    output = launch("0.05,0.2")
    assert "job 0_resnet-8-identity: completed before: skipped" in output
    assert ("job 1_resnet-8-identity: its directory holds a run with optimizer.lr=0.01 (this launch: 0.2); "
            "running this one in 1_resnet-8-identity-2") in output
    assert "job 1_resnet-8-identity: completed before: skipped" not in output
    moved = sweep / "1_resnet-8-identity-2"
    assert _summary(moved)["lr"] == 0.2 and _summary(moved)["status"] == "completed"
    assert OmegaConf.load(moved / ".hydra" / "config.yaml").optimizer.lr == 0.2
    assert (job1 / "summary.json").read_bytes() == kept  # lr 0.01's result, untouched
    assert OmegaConf.load(job1 / ".hydra" / "config.yaml").optimizer.lr == 0.01  # restored after Hydra's rewrite
    assert _summary(job0)["lr"] == 0.05

    output = launch("0.05,0.2")  # the same values again: every job is found done
    assert "job 0_resnet-8-identity: completed before: skipped" in output
    assert "job 1_resnet-8-identity: completed before in 1_resnet-8-identity-2: skipped" in output
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == [
        "0_resnet-8-identity", "1_resnet-8-identity", "1_resnet-8-identity-2"]


def test_job_home_is_the_directory_whose_recorded_config_equals_the_job(tmp_path):
    """Without training: config_resolved.yaml files as runs leave them, paths inside them included."""
    from residual_lab.run_dir import describe, job_home
    from tests.helpers import compose_config

    job = tmp_path / "0_resnet-8-identity"

    def record(directory: Path, *overrides: str) -> None:
        directory.mkdir()
        cfg = compose_config(*FAST, *overrides, output_dir=directory)
        (directory / "config_resolved.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        (directory / "summary.json").write_text('{"status": "completed"}')

    def new(*overrides: str):
        return compose_config(*FAST, *overrides, output_dir=job)

    assert job_home(job, new()) == (job, [])  # not there yet
    record(job, "optimizer.lr=0.05")
    assert job_home(job, new("optimizer.lr=0.05", "paths.log_dir=/elsewhere")) == (job, [])
    moved, changes = job_home(job, new("optimizer.lr=0.2"))
    assert moved == tmp_path / "0_resnet-8-identity-2" and changes == [("optimizer.lr", 0.05, 0.2)]
    record(moved, "optimizer.lr=0.2")  # its checkpoint folder and TensorBoard folder name -2
    assert job_home(job, new("optimizer.lr=0.2")) == (moved, [("optimizer.lr", 0.05, 0.2)])
    assert job_home(job, new("optimizer.lr=0.5"))[0] == tmp_path / "0_resnet-8-identity-3"
    _, changes = job_home(job, new("depth=14", "shortcut=projection"))
    assert describe(changes, first={"depth", "shortcut"}) == (
        "depth=8, shortcut=identity, model.depth=8 (+3 more)", "14, projection, 14 (+3 more)")


# --- resume= continues the same experiment -----------------------------------------------------

@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished ResNet-8, launched as the command line does (its .hydra/ is resume's source)."""
    from hydra.core.global_hydra import GlobalHydra

    from residual_lab.run import main

    run = tmp_path_factory.mktemp("finished") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("HYDRA_FULL_ERROR", raising=False)
        mp.setattr(sys, "argv", ["residual_lab.run", *FAST, f"hydra.run.dir={run}"])
        GlobalHydra.instance().clear()
        try:
            main()
        finally:
            GlobalHydra.instance().clear()
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"
    return run


def test_a_record_without_its_config_is_judged_on_what_was_asked_not_on_what_lightning_substituted(tmp_path):
    """A run from before config_resolved.yaml: its summary says ``precision: bf16-mixed`` with
    ``requested: {precision: 16-mixed}`` (a CPU ran bf16 for 16-mixed). The same job launched
    again (``16-mixed``) is that run, not another experiment to run beside it."""
    from residual_lab.run_dir import job_home
    from residual_lab.summary import config_fields
    from tests.helpers import compose_config

    job = tmp_path / "0_resnet-8-identity"
    job.mkdir()
    cfg = compose_config(*FAST, "trainer.precision=16-mixed", output_dir=job)
    summary = {**config_fields(cfg), "status": "completed", "precision": "bf16-mixed",
               "requested": {"precision": "16-mixed"}}
    (job / "summary.json").write_text(json.dumps(summary))
    assert job_home(job, cfg) == (job, [])
    moved, changes = job_home(job, compose_config(*FAST, "trainer.precision=32-true", output_dir=job))
    assert moved.name == "0_resnet-8-identity-2" and changes == [("precision", "16-mixed", "32-true")]


@pytest.mark.parametrize("override,message", [
    ("shortcut=none", "cannot change shortcut from 'identity' to 'none'"),
    ("seed=3", "cannot change seed from 0 to 3"),
    ("optimizer.lr=0.5", "cannot change optimizer.lr from 0.1 to 0.5"),
    ("optimizer.momentum=0", "cannot change optimizer.momentum from 0.9 to 0"),
    ("data.batch_size=8", "cannot change data.batch_size from 16 to 8"),
    ("depth=14", "cannot change depth from 8 to 14"),
    ("optimizer=adam", "cannot change optimizer from 'sgd' to 'adam'"),
    ("~callbacks.model_checkpoint", "cannot delete callbacks.model_checkpoint"),
])
def test_resume_refuses_overrides_that_change_the_experiment(finished_run, override, message):
    with pytest.raises(UserFacingError) as err:
        load_run_config(finished_run, [override])
    assert str(err.value) == (f"resume={finished_run} {message}: that is another experiment (resume may change "
                              f"only trainer.max_steps and where outputs and logs go); start it as a new run")


@pytest.mark.parametrize("override", ["trainer.max_steps=8", "seed=0", "optimizer.lr=0.1", "shortcut=identity",
                                      "paths.log_dir=/elsewhere", "trainer.enable_progress_bar=true"])
def test_resume_accepts_the_run_length_where_outputs_go_and_unchanged_values(finished_run, override):
    cfg = load_run_config(finished_run, [override])
    key, value = override.split("=")
    assert str(OmegaConf.select(cfg, key)).lower() == value.lower()


def test_resume_with_another_shortcut_exits_2_with_one_sentence(finished_run, tmp_path, capsys, monkeypatch):
    summary = (finished_run / "summary.json").read_bytes()
    code, output = run_cli(capsys, monkeypatch, f"resume={finished_run}", "shortcut=none", run_dir=tmp_path / "unused")
    assert code == 2 and "Traceback" not in output
    assert output.strip().splitlines()[-1] == (
        f"residual_lab: resume={finished_run} cannot change shortcut from 'identity' to 'none': that is another "
        f"experiment (resume may change only trainer.max_steps and where outputs and logs go); start it as a new run")
    assert (finished_run / "summary.json").read_bytes() == summary


# --- a damaged summary.json ---------------------------------------------------------------------

def test_a_sweep_relaunch_rebuilds_a_damaged_summary_instead_of_retraining(tmp_path, capsys, monkeypatch):
    sweep = tmp_path / "sweep"
    args = ("-m", *FAST, "seed=0", f"hydra.sweep.dir={sweep}")
    code, output = run_cli(capsys, monkeypatch, *args, run_dir=tmp_path / "unused")
    assert code == 0, output[-2000:]
    job = sweep / "0_resnet-8-identity"
    original = _summary(job)
    text = (job / "summary.json").read_text()
    (job / "summary.json").write_text(text[: len(text) // 2])  # truncated: a full disk, a bad copy
    ckpt_mtime = (job / "checkpoints" / "last.ckpt").stat().st_mtime_ns

    code, output = run_cli(capsys, monkeypatch, *args, run_dir=tmp_path / "unused")
    assert code == 0, output[-2000:]
    assert "Traceback" not in output and "JSONDecodeError" not in output
    assert ("job 0_resnet-8-identity: summary.json was damaged; rebuilt from checkpoints/last.ckpt and the "
            "TensorBoard events (kept as summary.json.damaged): skipped") in output
    assert (job / "checkpoints" / "last.ckpt").stat().st_mtime_ns == ckpt_mtime  # not trained again
    rebuilt = _summary(job)
    assert rebuilt["status"] == "completed" and rebuilt["steps"] == 4 == original["steps"]
    for key in ("test_error", "test_loss", "val_error", "val_loss", "best_val_error", "seed", "lr", "params",
                "run_name", "protocol", "tested_checkpoint"):
        assert rebuilt[key] == original[key], key
    assert rebuilt["rebuilt_from"] == ["checkpoints/last.ckpt", "tensorboard events"]
    assert (job / "summary.json.damaged").read_text() == text[: len(text) // 2]

    code, output = run_cli(capsys, monkeypatch, *args, run_dir=tmp_path / "unused")  # and from then on, skipped
    assert "job 0_resnet-8-identity: completed before: skipped" in output


def test_the_report_names_a_damaged_summary_and_reads_what_can_be_rebuilt(tmp_path, capsys, monkeypatch):
    from residual_lab.report import problems_markdown
    from residual_lab.results.loading import find_runs

    rebuildable, lost = tmp_path / "rebuildable", tmp_path / "lost"
    code, output = run_cli(capsys, monkeypatch, *FAST, run_dir=rebuildable)
    assert code == 0, output[-2000:]
    original = _summary(rebuildable)
    (rebuildable / "summary.json").write_text('{"status": "compl')
    lost.mkdir()
    (lost / ".hydra").mkdir()
    (lost / ".hydra" / "config.yaml").write_text("seed: 5\n")
    (lost / "summary.json").write_bytes(b"\x00" * 100)  # no checkpoint to rebuild from

    runs = {r.path.name: r for r in find_runs(tmp_path)}
    assert runs["rebuildable"].status == "completed" and runs["rebuildable"].damaged
    assert runs["rebuildable"].get("test_error") == original["test_error"]
    assert runs["lost"].status == "damaged" and runs["lost"].summary is None
    table = problems_markdown(list(runs.values()))
    assert "killed or still running" not in table
    assert ("| lost | 5 | damaged | – | summary.json unreadable (not JSON) and no finished checkpoint to rebuild "
            "it from | `lost` |") in table
    assert ("| resnet-8-identity | 0 | completed (summary rebuilt) | 4 | summary.json was damaged; read from "
            "checkpoints/last.ckpt and the TensorBoard events | `rebuildable` |") in table
