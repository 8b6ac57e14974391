"""One error path for every command: bad input and unwritable outputs end in one sentence and exit
code 2; refused input leaves no run directory; a failed sweep exits non-zero; a full disk keeps
the last good checkpoint; the printed resume command reads back for any directory name."""

from __future__ import annotations

import errno
import json
import os
import shlex
import subprocess
import sys

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from residual_lab.errors import UserFacingError
from tests.helpers import compose_config, run_cli
from tests import helpers

#: Without the diagnostics, on 8x8 synthetic images, 4 steps.
FAST = ("experiment=smoke", *helpers.FAST,
        "~callbacks.progress_bar", "data.source.image_size=8", "trainer.max_steps=4",
        "trainer.val_check_interval=2", "trainer.log_every_n_steps=2", "data.batch_size=16")


def _exit_code(main, *args) -> int:
    try:
        main(*args)
    except SystemExit as stop:
        return stop.code or 0
    return 0


def _hydra_command(main, argv: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    """A Hydra command (bench, analyze) run in this process: (exit code, stdout, stderr)."""
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.setattr(sys, "argv", ["cmd", *argv])
    GlobalHydra.instance().clear()
    try:
        code = _exit_code(main)
    finally:
        GlobalHydra.instance().clear()
    out = capsys.readouterr()
    return code, out.out, out.err


# --- report -----------------------------------------------------------------------------------

def test_report_on_an_empty_folder_exits_2_instead_of_saying_all_runs_completed(tmp_path, capsys):
    from residual_lab.report import main

    assert _exit_code(main, [str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == (f"\nresidual_lab: no runs or analyses under {tmp_path} (no summary.json, .hydra/ or analysis "
                   f"record in it); point report at a run or sweep directory\n\n")
    assert not (tmp_path / "report.md").exists()


def test_report_into_a_path_that_is_a_file_names_it_and_exits_2(tmp_path, capsys):
    from residual_lab.report import main

    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({  # a failed run: a table row, no curves to draw
        "run_name": "resnet-56-identity", "depth": 56, "shortcut": "identity", "block": "basic", "width": 16,
        "norm": "batch", "seed": 0, "max_steps": 64000, "batch_size": 128, "data": "TorchvisionCIFAR",
        "dataset": "cifar10", "protocol": "paper", "optimizer": "SGD", "lr": 0.1, "precision": "32-true",
        "status": "failed", "reason": "RuntimeError: a bug", "params": 853_018}))
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert _exit_code(main, [str(run), "--out", str(blocker)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 3
    assert err.startswith(f"\nresidual_lab: {blocker}: File exists; nothing was written over earlier files")


def test_a_refused_run_prints_our_sentence_alone_not_hydras_job_line(capsys, monkeypatch, tmp_path):
    """Hydra writes "Error executing job with overrides: [...]" before re-raising a job's error;
    the run keeps its error until Hydra has returned, so the sentence is all the person reads."""
    missing = tmp_path / "no_such_copy"
    code, output = run_cli(capsys, monkeypatch, "experiment=smoke", "data=imagefolder", f"data.root={missing}",
                           run_dir=tmp_path / "run")
    assert code == 2 and "Traceback" not in output and "Error executing job" not in output
    assert output.rstrip().splitlines()[-1].startswith(f"residual_lab: data.root={missing} is missing or empty.")
    code, output = run_cli(capsys, monkeypatch, "experiment=smoke", "seed=-1", run_dir=tmp_path / "run2")
    assert code == 2 and "Error executing job" not in output
    assert output.rstrip().splitlines()[-1] == "residual_lab: seed must be from 0 to 4294967295 (the seeds numpy accepts), got -1"


# --- bench and analyze --------------------------------------------------------------------------

def test_bench_with_a_bad_value_exits_2_with_one_sentence(tmp_path, capsys, monkeypatch):
    from residual_lab.bench import main

    code, out, err = _hydra_command(main, [*FAST, "depth=57", f"hydra.run.dir={tmp_path / 'b'}"], monkeypatch, capsys)
    assert code == 2 and "Traceback" not in out + err
    assert "Error executing job" not in out + err  # Hydra's job line (errors.single_run_job)
    assert err.strip().splitlines()[-1] == ("residual_lab: depth 57 is not 6n+2 for block=basic; "
                                                "nearest valid depths: 56, 62")


def test_export_to_an_unwritable_out_is_one_sentence_and_exit_code_2(tmp_path, capsys):
    import shutil

    from residual_lab.results.export import main

    record = sorted((helpers.ROOT / "experiments" / "ladder" / "runs").iterdir())[0]  # a committed record
    shutil.copytree(record, tmp_path / "run")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert _exit_code(main, [str(tmp_path / "run"), "--out", str(blocker / "runs")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 3
    assert err.startswith(f"\nresidual_lab: {blocker / 'runs'}")
    assert ": Not a directory; nothing was written over earlier files there" in err


def test_analyze_with_a_missing_run_exits_2_with_our_sentence_alone_not_hydras_job_line(tmp_path, capsys, monkeypatch):
    """Exit code 2 and one sentence, without Hydra's "Error executing job with overrides: [...]"."""
    from residual_lab.analyze import main

    missing = tmp_path / "no_run"
    code, out, err = _hydra_command(main, ["hessian", f"run_dir={missing}", f"hydra.run.dir={tmp_path / 'a'}"],
                                    monkeypatch, capsys)
    assert code == 2 and "Traceback" not in out + err and "Error executing job" not in out + err
    assert err.strip().splitlines()[-1] == (f"residual_lab: run_dir={missing}: no .hydra/config.yaml there; point "
                                                "run_dir at a run directory (it holds summary.json, checkpoints/ and "
                                                ".hydra/)")


def test_analyze_on_a_checkpoint_of_another_depth_names_the_keys_in_one_sentence(make_cfg, tmp_path):
    from residual_lab.analyze import load_net
    from residual_lab.run import train

    run = tmp_path / "run"
    train(make_cfg(*FAST[1:], "trainer.max_steps=2", output_dir=run))
    (run / ".hydra").mkdir(exist_ok=True)
    OmegaConf.save(make_cfg("depth=14", output_dir=run), run / ".hydra" / "config.yaml")
    with pytest.raises(UserFacingError) as err:
        load_net(run)
    message = str(err.value)
    assert "\n" not in message and "is of another architecture" in message
    assert "missing from the checkpoint (net.stages.0.blocks.1.residual.conv1.weight" in message


# --- run: resume, refused input, quoting ---------------------------------------------------------

def test_resume_from_a_truncated_config_is_one_sentence(tmp_path):
    from residual_lab.run import load_run_config

    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    text = OmegaConf.to_yaml(compose_config("experiment=smoke", output_dir=run))
    (run / ".hydra" / "config.yaml").write_text(text[: len(text) // 3])  # a full disk, a bad copy
    with pytest.raises(UserFacingError) as err:
        load_run_config(run, [])
    assert str(err.value).startswith(f"resume={run}: {run / '.hydra' / 'config.yaml'} is damaged (")
    assert str(err.value).endswith("cut short or edited); resume needs the config the run started with, so start "
                                   "the run again")


def test_refused_input_leaves_no_run_directory(tmp_path, capsys, monkeypatch):
    run = tmp_path / "logs" / "run"
    code, output = run_cli(capsys, monkeypatch, *FAST, "depth=57", run_dir=run)
    assert code == 2 and "Traceback" not in output
    assert output.strip().splitlines()[-1] == ("residual_lab: depth 57 is not 6n+2 for block=basic; "
                                               "nearest valid depths: 56, 62")
    assert not run.exists()  # tensorboard --logdir logs/ lists no empty run


def test_the_printed_resume_command_reads_back_for_a_non_ascii_directory(tmp_path, capsys):
    from residual_lab.console import say_how_to_resume

    run = tmp_path / "résumé run"
    say_how_to_resume(run, "SIGTERM", ["trainer.max_steps=8"], resumable=True)
    printed = capsys.readouterr().out.splitlines()[-1]
    args = shlex.split(printed)  # as the shell hands them to the command
    overrides = OverridesParser.create().parse_overrides(args[args.index("-m") + 2:])
    assert [(o.key_or_group, o.value()) for o in overrides] == [("resume", str(run)), ("trainer.max_steps", 8)]


# --- sweeps -------------------------------------------------------------------------------------

def test_a_sweep_with_a_job_refused_for_bad_input_exits_2_and_says_how_many(tmp_path, capsys, monkeypatch):
    code, output = run_cli(capsys, monkeypatch, "-m", *FAST, "depth=8,57", f"hydra.sweep.dir={tmp_path}",
                           run_dir=tmp_path / "unused")
    assert code == 2, output[-2000:]
    assert "residual_lab: 1 of 2 jobs failed, 1 of them on bad input; each one's summary.json says why" in output
    assert json.loads((tmp_path / "0_resnet-8-identity" / "summary.json").read_text())["status"] == "completed"


def test_a_sweep_in_which_every_job_failed_exits_1(tmp_path, capsys, monkeypatch):
    import residual_lab.run

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in building the net")

    monkeypatch.setattr(residual_lab.run, "build", broken)
    code, output = run_cli(capsys, monkeypatch, "-m", *FAST, "seed=0,1", f"hydra.sweep.dir={tmp_path}",
                           run_dir=tmp_path / "unused")
    assert code == 1, output[-2000:]
    assert "residual_lab: 2 of 2 jobs failed; each one's summary.json says why" in output


# --- a full disk ----------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB file system (tmpfs; needs root), unmounted after the test."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def test_a_full_disk_keeps_the_last_good_checkpoint(make_cfg, small_disk):
    from residual_lab.run import build

    _, _, trainer = build(make_cfg(*FAST[1:]))
    save = trainer.strategy.checkpoint_io.save_checkpoint
    path = small_disk / "last.ckpt"
    save({"step": 1, "w": torch.zeros(10_000)}, path)  # 40 kB: fits
    with pytest.raises(OSError) as err:
        save({"step": 2, "w": torch.zeros(100_000)}, path)  # 400 kB: the disk fills up mid-write
    assert err.value.errno == errno.ENOSPC
    assert torch.load(path, weights_only=True)["step"] == 1  # whole, the one before
    assert [p.name for p in small_disk.iterdir()] == ["last.ckpt"]  # no half-written file left


def test_the_advice_for_an_unwritable_output_fits_the_error():
    """"free some space" was the advice for a file standing where a directory must go too."""
    import errno

    from residual_lab.errors import os_error_message

    full = os_error_message(OSError(errno.ENOSPC, "No space left on device", "/out/x"))
    blocked = os_error_message(FileExistsError(errno.EEXIST, "File exists", "/out/report"))
    read_only = os_error_message(PermissionError(errno.EACCES, "Permission denied", "/out"))
    assert full == ("/out/x: No space left on device; nothing was written over earlier files there: free some "
                    "space or give the outputs a directory on another disk (hydra.run.dir=<dir>, --out <dir>)")
    assert blocked == ("/out/report: File exists; nothing was written over earlier files there: a file stands where "
                       "a directory must go, or the reverse; give the outputs another path (hydra.run.dir=<dir>, "
                       "--out <dir>)")
    assert read_only == ("/out: Permission denied; nothing was written over earlier files there: give the outputs "
                         "a writable directory (hydra.run.dir=<dir>, --out <dir>)")


@pytest.mark.parametrize("module", ["residual_lab.report", "residual_lab.results.export"])
def test_the_usage_line_names_the_command_people_type_not_the_file(module, capsys):
    """argparse named the file ("usage: report.py [-h] ..."), which nobody types."""
    import importlib

    main = importlib.import_module(module).main
    assert _exit_code(main, ["--help"]) == 0
    usage = " ".join(capsys.readouterr().out.split("\n\n")[0].split())  # argparse wraps a long one
    assert usage.startswith("usage: ") and f" -m {module} [-h]" in usage, usage
