"""The two protocols, the schedule of an extended run, and what summary.json says of them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from residual_lab.run import build, hparam_metrics, load_run_config, train
from tests import helpers
from tests.helpers import compose_config

#: Without the diagnostics, on 8x8 synthetic images: what these tests check does not depend on either.
FAST = (*helpers.FAST, "data.source.image_size=8")


def test_paper_protocol_trains_on_every_training_image_and_tests_the_final_weights(make_cfg, tmp_path):
    summary = train(make_cfg(*FAST, "protocol=paper", "trainer.max_steps=6", "data.batch_size=16"))
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["protocol"] == summary["protocol"] == "paper"
    assert on_disk["tested_checkpoint"] == "final" and on_disk["best_checkpoint"] is None
    assert on_disk["val_error"] is None and on_disk["test_error"] is not None
    assert not list((tmp_path / "checkpoints").glob("best-step*.ckpt"))
    assert on_disk["steps"] == 6
    # Every one of the 2048 synthetic training images trains; none is held out.
    for protocol, n_train in (("paper", 2048), ("heldout", 2048 - 256)):
        _, datamodule, _ = build(make_cfg(f"protocol={protocol}"))
        datamodule.setup("fit")
        assert datamodule.num_train == n_train, protocol


def test_heldout_protocol_is_the_default_and_tests_the_best_validation_checkpoint(make_cfg, tmp_path):
    summary = train(make_cfg(*FAST, "trainer.max_steps=6", "trainer.val_check_interval=3", "data.batch_size=16"))
    assert summary["protocol"] == "heldout" and summary["tested_checkpoint"] == "best-val"
    assert summary["dataset"] == "synthetic"
    assert Path(summary["best_checkpoint"]).name.startswith("best-step")


@pytest.mark.parametrize("preset", ["table6", "preact", "fig6"])
def test_paper_presets_use_the_paper_protocol(preset, tmp_path):
    cfg = compose_config(f"experiment={preset}", output_dir=tmp_path)
    assert cfg.protocol.name == "paper" and cfg.data.val_size == 0
    assert cfg.callbacks.get("model_checkpoint") is None


def test_preact_bottleneck_variants_use_projection_shortcuts(tmp_path):
    for variant, shortcut in [("preact_164", "projection"), ("preact_1001", "projection"),
                              ("preact_110", "identity"), ("original_110", "identity")]:
        cfg = compose_config("experiment=preact", f"variant={variant}", output_dir=tmp_path)
        assert cfg.shortcut == shortcut, variant


def test_dataset_is_named_by_the_image_folder(tmp_path):
    from residual_lab.summary import dataset_name

    cfg = compose_config("data=imagefolder", "data.root=/somewhere/cifar10-jpeg", output_dir=tmp_path)
    assert dataset_name(cfg.data) == "cifar10-jpeg"
    assert dataset_name(compose_config("data=cifar100", output_dir=tmp_path).data) == "cifar100"


def _lrs(run_dir: Path) -> dict[int, float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(next((run_dir / "tensorboard").iterdir())))
    acc.Reload()
    tag = next(t for t in acc.Tags()["scalars"] if t.startswith("lr-"))
    return {e.step: e.value for e in acc.Scalars(tag)}


def test_extending_a_finished_run_continues_its_lr_schedule(make_cfg, tmp_path):
    # An 8-step run divides lr 0.1 by 10 at steps 4 and 6 (milestones 0.5, 0.75). Extended to
    # 16 steps it must go on at 0.001, not lay the milestones out again at 8 and 12 (which
    # would put the lr back to 0.01 at step 8).
    cfg = make_cfg(*FAST, "trainer.max_steps=8", "trainer.log_every_n_steps=1", "data.batch_size=16")
    (tmp_path / ".hydra").mkdir()
    OmegaConf.save(cfg, tmp_path / ".hydra" / "config.yaml")
    train(cfg)
    extended = load_run_config(tmp_path, ["trainer.max_steps=16"])
    assert extended.task.schedule_steps == 8
    summary = train(extended, resume=True)
    assert summary["status"] == "completed" and summary["steps"] == 16
    lrs = _lrs(tmp_path)
    assert lrs[2] == pytest.approx(0.1) and lrs[5] == pytest.approx(0.01)
    later = {s: v for s, v in lrs.items() if s >= 7}
    assert max(later) >= 15 and len(later) >= 8
    assert all(v == pytest.approx(0.001) for v in later.values()), later


def test_resuming_without_extension_keeps_the_schedule_of_the_run(make_cfg, tmp_path):
    cfg = make_cfg(*FAST, "trainer.max_steps=20")
    (tmp_path / ".hydra").mkdir()
    OmegaConf.save(cfg, tmp_path / ".hydra" / "config.yaml")
    assert load_run_config(tmp_path, []).task.schedule_steps is None
    assert load_run_config(tmp_path, ["trainer.max_steps=20"]).task.schedule_steps is None


def test_hparams_write_a_zero_val_error_as_zero_and_leave_out_a_missing_one():
    assert hparam_metrics({"train_error": 1.5, "val_error": 0.0, "test_error": 2.0}) == {
        "hp/train_error": 1.5, "hp/val_error": 0.0, "hp/test_error": 2.0}
    assert hparam_metrics({"train_error": 1.5, "val_error": None, "test_error": 2.0}) == {
        "hp/train_error": 1.5, "hp/test_error": 2.0}
