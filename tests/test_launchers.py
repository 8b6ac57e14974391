"""Scale-out through existing engines: Hydra's joblib and submitit launchers, Lightning DDP."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from residual_lab.run import CONFIG_DIR
from tests import helpers

TINY = ["experiment=smoke", "depth=8", "data.source.image_size=8", "trainer.max_steps=4", "trainer.log_every_n_steps=2",
        "trainer.val_check_interval=4", "trainer.check_val_every_n_epoch=null", "trainer.enable_progress_bar=false",
        "callbacks=none", "data.source.num_train=384", "data.source.num_test=128", "data.val_size=128",
        "data.eval_batch_size=128"]


def multirun(sweep_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    return helpers.multirun(sweep_dir, *TINY, *overrides)


def summaries(sweep_dir: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sweep_dir.glob("*/summary.json")}


def test_joblib_launcher_runs_a_two_job_sweep_in_worker_processes(tmp_path):
    sweep = tmp_path / "joblib"
    proc = multirun(sweep, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "shortcut=none,identity")
    assert "Joblib.Parallel(n_jobs=2" in proc.stdout + proc.stderr
    done = summaries(sweep)
    assert sorted(done) == ["0_plain-8", "1_resnet-8-identity"]  # our sweep subdir naming survives
    assert {(s["status"], s["steps"]) for s in done.values()} == {("completed", 4)}
    lines = proc.stdout.splitlines()  # the sweep names its directory first and last
    assert lines[0] == f"residual_lab: sweep directory {sweep}"
    assert f"residual_lab: sweep finished: {sweep}" in lines[-3:]


@pytest.mark.slow  # an optional launcher; the default suite runs a real joblib sweep above
def test_submitit_local_launcher_runs_one_job(tmp_path):
    sweep = tmp_path / "submitit"
    multirun(sweep, "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", "shortcut=identity")
    done = summaries(sweep)
    assert list(done) == ["0_resnet-8-identity"]
    assert (done["0_resnet-8-identity"]["status"], done["0_resnet-8-identity"]["steps"]) == ("completed", 4)
    assert list((sweep / ".submitit").iterdir())  # submitit's own job folder: it really went through submitit


def test_shipped_slurm_launcher_config_composes_onto_submitit_slurm():
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"],
                      return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.timeout_min, launcher.gpus_per_node, launcher.cpus_per_task, launcher.partition) == (720, 1, 8, "gpu")
    # the project's hydra settings stay (unresolved: hydra.job.num exists only in a running sweep)
    assert OmegaConf.to_container(cfg.hydra.sweep)["subdir"] == "${hydra.job.num}_${run_name}"


def test_ddp_trainer_is_lightning_ddp_on_all_gpus():
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["trainer=ddp"])
    t = cfg.trainer
    assert (t._target_, t.strategy, t.devices, t.accelerator, t.max_steps) == (
        "lightning.pytorch.Trainer", "ddp", "auto", "gpu", 64000)


def test_a_sweep_with_no_parallel_jobs_is_refused_before_any_job(capsys, monkeypatch, tmp_path):
    """joblib's ``n_jobs=0`` ended the sweep in a traceback ("n_jobs == 0 in Parallel has no meaning")."""
    from tests.helpers import run_cli

    code, output = run_cli(capsys, monkeypatch, "-m", "experiment=smoke", "hydra/launcher=joblib",
                           "hydra.launcher.n_jobs=0", "seed=0,1", f"hydra.sweep.dir={tmp_path / 'sweep'}",
                           run_dir=tmp_path / "unused")
    assert code == 2 and "Traceback" not in output
    assert output.rstrip().splitlines()[-1] == ("residual_lab: hydra.launcher.n_jobs must be a number of parallel "
                                                "jobs >= 1, or negative (-1: one per CPU core), got 0")
    assert not list((tmp_path / "sweep").glob("*/summary.json"))


def test_a_slurm_sweep_on_a_machine_without_slurm_is_refused_in_one_sentence(capsys, monkeypatch, tmp_path):
    """submitit raised "Could not detect "srun", are you indeed on a slurm cluster?" as a traceback, exit 1."""
    import shutil

    from tests.helpers import run_cli

    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == "srun" else "/usr/bin/" + name)
    code, output = run_cli(capsys, monkeypatch, "-m", "experiment=smoke", "hydra/launcher=slurm", "seed=0",
                           f"hydra.sweep.dir={tmp_path / 'sweep'}", run_dir=tmp_path / "unused")
    assert code == 2 and "Traceback" not in output
    assert output.rstrip().splitlines()[-1] == (
        "residual_lab: hydra/launcher=slurm submits each job with SLURM, but this machine has no srun on its "
        "PATH; launch the sweep where SLURM runs (a login node), or here with hydra/launcher=joblib or "
        "hydra/launcher=submitit_local")
