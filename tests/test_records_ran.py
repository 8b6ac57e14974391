"""summary.json records what ran: the precision Lightning substituted, the processes
and global batch, the tested checkpoint and the protocol that follows, the split sizes; a
resumed or rebuilt record keeps what it measured; the report keeps unlike runs apart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

from residual_lab.report import registered_statistic, runs_markdown, setup_markdown, unmeasured
from residual_lab.results import aggregate
from residual_lab.run import build, load_run_config, train
from residual_lab.summary import config_fields, run_summary
from residual_lab.summary_repair import NOT_EVALUATED, NOT_RAN, rebuild_summary
from tests.test_report import fake_run
from tests import helpers

ROOT = Path(__file__).resolve().parent.parent
#: A 4-step run on 8x8 synthetic images without the diagnostics: what is recorded, not what is learnt.
FAST = (*helpers.FAST, "data.source.image_size=8",
        "trainer.max_steps=4", "trainer.val_check_interval=2", "trainer.log_every_n_steps=2", "data.batch_size=16")


def test_precision_is_the_one_lightning_ran_and_the_requested_one_is_kept(make_cfg, tmp_path):
    # Lightning runs `16-mixed` on a CPU as bf16-mixed (its accelerator connector says so once).
    s = train(make_cfg(*FAST, "trainer.precision=16-mixed"))
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert s["precision"] == on_disk["precision"] == "bf16-mixed"
    assert on_disk["requested"] == {"precision": "16-mixed"}
    assert (on_disk["world_size"], on_disk["global_batch"]) == (1, 16)
    # The whole splits, as the datamodule holds them: 2048 synthetic training images, 256 held out.
    assert (on_disk["train_images"], on_disk["val_images"], on_disk["test_images"]) == (1792, 256, 512)


def test_a_run_without_a_validation_split_records_the_final_weights_and_the_paper_protocol(make_cfg, tmp_path):
    s = train(make_cfg(*FAST, "data.val_size=0"))  # protocol=heldout (the default), but nothing held out
    assert s["tested_checkpoint"] == "final" and s["best_checkpoint"] is None
    assert s["protocol"] == "paper" and s["requested"] == {"protocol": "heldout"}
    assert (s["train_images"], s["val_images"]) == (2048, 0)


def test_resuming_a_completed_run_keeps_its_validation_error(make_cfg, tmp_path):
    cfg = make_cfg(*FAST)
    (tmp_path / ".hydra").mkdir()
    OmegaConf.save(cfg, tmp_path / ".hydra" / "config.yaml")
    first = train(cfg)
    again = train(load_run_config(tmp_path, []), resume=True)  # nothing left to fit: no validation ran
    assert again["steps"] == first["steps"] == 4
    assert first["val_error"] is not None
    assert (again["val_error"], again["val_loss"]) == (first["val_error"], first["val_loss"])
    assert again["test_error"] == first["test_error"]


def _trainer(world_size: int, precision: str, accumulate: int = 1) -> SimpleNamespace:
    """What :func:`run_summary` reads of a Lightning Trainer, for a DDP fit this test cannot afford."""
    module = SimpleNamespace(train_window=lambda: {"train_loss": 2.0, "train_error": 80.0}, wall_time_before=0.0)
    datamodule = SimpleNamespace(batch_size=64, num_train=1792,
                                 splits={k: (None, [0] * n) for k, n in (("train", 1792), ("val", 256), ("test", 512))})
    return SimpleNamespace(lightning_module=module, checkpoint_callback=None, callbacks=[], global_step=10,
                           datamodule=datamodule, world_size=world_size, precision=precision,
                           accumulate_grad_batches=accumulate)


def test_the_summary_records_the_processes_and_the_global_batch(make_cfg):
    cfg = make_cfg("data.batch_size=64", "trainer.devices=4")
    s = run_summary(cfg, _trainer(4, "32-true", accumulate=2), params=1, status="interrupted", reason=None, val={},
                    test={}, best=None, resumed_from=None, elapsed_s=1.0)
    assert (s["world_size"], s["global_batch"], s["batch_size"]) == (4, 64 * 4 * 2, 64)
    assert s["epochs"] == round(10 * 64 * 4 / 1792, 2)
    assert "requested" not in s and s["protocol"] == "heldout"  # 32-true ran as asked; not tested: as planned
    # What the config asks for (a failed run's summary has only this); Lightning decides for devices=auto.
    assert (config_fields(cfg)["world_size"], config_fields(cfg)["global_batch"]) == (4, 256)
    assert config_fields(make_cfg("trainer.devices=auto"))["world_size"] is None


def test_a_trainer_with_two_cpu_processes_reports_its_world_size(make_cfg):
    _, _, trainer = build(make_cfg(*FAST, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
                                   "trainer.precision=32-true"))
    assert trainer.world_size == 2  # what run_summary records: Lightning's count, not the config's text


def test_the_report_keeps_runs_of_other_world_sizes_and_precisions_apart(tmp_path):
    one = [fake_run(tmp_path, s, 10.0 + s, world_size=1, global_batch=128, summary_version=4) for s in range(3)]
    four = [fake_run(tmp_path, s, 20.0 + s, world_size=4, global_batch=512, summary_version=4) for s in range(3)]
    bf16 = [fake_run(tmp_path, s, 30.0 + s, world_size=1, global_batch=128, precision="bf16-mixed",
                     requested={"precision": "16-mixed"}, summary_version=4) for s in range(3)]
    rows = aggregate(one + four + bf16)
    assert sorted((r.key["world_size"], r.key["precision"], r.n) for r in rows) == [
        (1, "32-true", 3), (1, "bf16-mixed", 3), (4, "32-true", 3)]
    assert sorted(r.label for r in rows) == ["world_size=1, global_batch=128, precision=32-true",
                                             "world_size=1, global_batch=128, precision=bf16-mixed",
                                             "world_size=4, global_batch=512, precision=32-true"]
    header = setup_markdown(one + four + bf16)
    assert "processes (world size): 1 (6 runs), 4 (3 runs); global batch: 128 (6 runs), 512 (3 runs)" in header
    assert "**Runs on different numbers of processes and precisions are kept apart**" in header
    assert "**Ran otherwise than configured** (summary.json `requested`): precision 16-mixed ran as bf16-mixed (3 runs)." in header


def test_old_records_are_taken_as_one_process_and_say_so(tmp_path):
    old = fake_run(tmp_path, 0, 10.0)  # summary_version < 4: no world_size
    new = fake_run(tmp_path, 1, 11.0, world_size=1, global_batch=128, summary_version=4)
    assert (old.get("world_size"), old.get("global_batch"), old.derived) == (1, 128, ("world_size", "global_batch"))
    assert [r.n for r in aggregate([old, new])] == [2]  # one process both: seeds of one experiment
    assert "1 runs predate summary.json's `world_size` (summary_version < 4) and are taken as 1 process" in \
        setup_markdown([old, new])


def test_the_report_states_the_split_sizes_the_records_hold(tmp_path):
    runs = [fake_run(tmp_path, s, 10.0, protocol="heldout", dataset="synthetic", train_images=1792, val_images=256,
                     test_images=512) for s in range(2)]
    old = fake_run(tmp_path, 2, 10.0, protocol="heldout", dataset="synthetic")
    text = setup_markdown(runs)
    assert "train/val/test images 1,792/256/512." in text and "45k" not in text and "50k" not in text
    assert ("train/val/test images 1,792/256/512 (2 runs), not recorded (1 runs before summary_version 4)"
            in setup_markdown([*runs, old]))


def test_a_rebuilt_summary_measures_the_final_weights_again(make_cfg, tmp_path):
    train(make_cfg(*FAST))
    original = json.loads((tmp_path / "summary.json").read_text())
    (tmp_path / "summary.json").write_text('{"status": "compl')
    rebuilt = rebuild_summary(tmp_path)
    for key in ("train_error_full", "test_error_final", "train_images", "val_images", "world_size", "global_batch",
                "precision", "protocol", "epochs"):
        assert rebuilt[key] == original[key], key
    assert rebuilt["train_loss_full"] == pytest.approx(original["train_loss_full"], rel=1e-3)
    assert "not_rebuilt" not in rebuilt


def test_a_rebuilt_summary_says_what_ran_where_the_run_ran_not_on_the_rebuilding_machine(make_cfg, tmp_path,
                                                                                          monkeypatch):
    """A GPU run's ``16-mixed`` rebuilt on a CPU would read ``bf16-mixed`` if the rebuilding
    machine's Lightning were asked: what ran is read from the checkpoint."""
    import lightning

    train(make_cfg(*FAST))
    (tmp_path / "summary.json").write_text('{"status": "compl')

    class OtherMachine(lightning.Trainer):  # what Lightning would make of the config elsewhere
        precision = "bf16-mixed"
        world_size = 4

    monkeypatch.setattr(lightning, "Trainer", OtherMachine)
    rebuilt = rebuild_summary(tmp_path)
    assert (rebuilt["precision"], rebuilt["world_size"], rebuilt["global_batch"]) == ("32-true", 1, 16)
    assert "requested" not in rebuilt


def test_a_rebuilt_summary_of_a_checkpoint_that_does_not_say_what_ran_says_so(make_cfg, tmp_path):
    """Checkpoints from before the record: precision is the config's, the world size is the
    config's where it fixes the devices and absent where Lightning chose (``devices=auto``), and
    ``not_rebuilt`` says so, rather than a guess from this machine."""
    import torch

    train(make_cfg(*FAST))
    (tmp_path / "summary.json").write_text('{"status": "compl')
    last = tmp_path / "checkpoints" / "last.ckpt"
    state = torch.load(last, map_location="cpu", weights_only=True)
    del state["ran"]
    torch.save(state, last)
    rebuilt = rebuild_summary(tmp_path)
    assert (rebuilt["precision"], rebuilt["world_size"], rebuilt["not_rebuilt"]) == ("32-true", 1, [NOT_RAN])
    config = OmegaConf.load(tmp_path / "config_resolved.yaml")
    config.trainer.devices = "auto"
    OmegaConf.save(config, tmp_path / "config_resolved.yaml")
    rebuilt = rebuild_summary(tmp_path)
    assert (rebuilt["world_size"], rebuilt["global_batch"], rebuilt["not_rebuilt"]) == (None, None, [NOT_RAN])


def test_a_rebuilt_run_that_could_not_measure_keeps_the_report_on_the_registered_statistic(tmp_path):
    full = [fake_run(tmp_path, s, 10.0, train_error_full=5.0 + s, summary_version=4) for s in range(3)]
    lost = fake_run(tmp_path, 3, 10.0, summary_version=4, not_rebuilt=[NOT_EVALUATED])
    rows = aggregate([*full, lost])
    assert registered_statistic(rows) == "train_error_full" and unmeasured(rows) == [lost]
    assert rows[0].cell("train_error_full") == "6.00 ± 1.00 (n=3)"
    text = "\n".join(runs_markdown([*full, lost], tmp_path))
    assert f"- `{lost.path}` (resnet-56-identity, seed 3)" in text
    # A record from before train_error_full existed still puts the whole report on the window.
    assert registered_statistic(aggregate([*full, fake_run(tmp_path, 4, 10.0)])) == "train_error"


@pytest.mark.slow
def test_two_cpu_processes_record_their_world_size_and_global_batch(tmp_path):
    """A real DDP run (two processes on the CPU, Lightning's launcher): what it records."""
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "residual_lab.run", "experiment=smoke", *FAST, "~callbacks.progress_bar",
           "trainer.enable_progress_bar=false", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
           "trainer.precision=16-mixed", f"hydra.run.dir={run_dir}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "RESIDUAL_LAB_ROOT": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    s = json.loads((run_dir / "summary.json").read_text())
    assert (s["world_size"], s["global_batch"], s["precision"]) == (2, 32, "bf16-mixed")
    assert s["requested"] == {"precision": "16-mixed"}
