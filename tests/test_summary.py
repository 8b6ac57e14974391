"""summary.json and the console read well: outcome first, one unit for every rate, rounding."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from residual_lab.callbacks.progress import ProgressBar
from residual_lab.results.loading import find_runs, load_run
from residual_lab.run import load_run_config, train
from residual_lab.summary import ORDER, SUMMARY_VERSION, summary_line, tidy
from residual_lab.summary_repair import rebuild_summary
from tests.helpers import FAST

ROOT = Path(__file__).resolve().parent.parent
FIRST_KEYS = ["status", "reason",
              "test_error", "best_val_error", "val_error", "train_error_full", "train_error", "test_error_final",
              "test_accuracy", "test_recall_macro", "test_f1_macro", "test_loss", "val_loss", "train_loss_full",
              "train_loss", "test_loss_final",
              "run_name", "model", "depth", "shortcut", "block", "width", "norm", "init", "params", "dataset",
              "data_root", "data", "protocol", "train_images", "val_images", "test_images", "seed", "batch_size",
              "world_size", "global_batch", "optimizer", "lr", "max_steps", "precision",
              "steps", "epochs", "wall_time_s", "train_images_per_s", "tested_checkpoint", "best_checkpoint",
              "resumed_from", "output_dir", "summary_version"]


def test_summary_reads_outcome_first_in_percent_and_rounded(make_cfg, tmp_path):
    train(make_cfg(*FAST, "trainer.max_steps=4", "trainer.val_check_interval=4"))
    text = (tmp_path / "summary.json").read_text()
    s = json.loads(text)
    assert list(s) == FIRST_KEYS + ["diagnostics"]
    assert s["summary_version"] == SUMMARY_VERSION == 4
    # One unit: accuracy is 100 - error, recall and F1 are percentages too.
    assert s["test_accuracy"] == pytest.approx(100 - s["test_error"], abs=0.011)
    assert 1 < s["test_recall_macro"] <= 100 and 1 < s["test_f1_macro"] <= 100
    for key in ("test_error", "val_error", "train_error_full", "train_error", "test_error_final", "test_accuracy", "test_recall_macro", "test_f1_macro"):
        assert s[key] == round(s[key], 2), key
    assert s["test_loss"] == float(f"{s['test_loss']:.4g}")
    assert s["epochs"] == round(4 * 64 / 1792, 2) == 0.14  # 4 steps of 64 of the 1792 training images
    assert (s["dataset"], s["data_root"], s["data"]) == ("synthetic", None, "SyntheticSource")


def test_tensorboard_rates_are_in_percent(make_cfg, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(make_cfg("callbacks=none", "trainer.max_steps=2", "trainer.val_check_interval=2"))
    acc = EventAccumulator(str(tmp_path / "tensorboard" / "resnet-8-identity")).Reload()
    for split in ("val", "test"):
        error, accuracy = acc.Scalars(f"{split}/error")[-1].value, acc.Scalars(f"{split}/accuracy")[-1].value
        assert accuracy == pytest.approx(100 - error, abs=1e-3)
        assert acc.Scalars(f"{split}/recall")[-1].value > 1 and acc.Scalars(f"{split}/f1")[-1].value > 1


@pytest.mark.parametrize("checkpoint", ["timer", "before_timer"])
def test_wall_time_adds_up_over_resumes(make_cfg, tmp_path, monkeypatch, checkpoint):
    """A resumed run's wall time = the first session's training time (Lightning's Timer state in
    the checkpoint, or the key a checkpoint from before the Timer kept) + the second session's."""
    import residual_lab.run as run_module

    cfg = make_cfg(*FAST, "trainer.max_steps=2", "trainer.val_check_interval=2", output_dir=tmp_path / "run")
    train(cfg)
    (tmp_path / "run" / ".hydra").mkdir()
    OmegaConf.save(cfg, tmp_path / "run" / ".hydra" / "config.yaml")
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    state = torch.load(last, weights_only=False)
    first = state["callbacks"]["Timer"]["time_elapsed"]["train"]
    assert 0 < first < 600
    if checkpoint == "before_timer":
        del state["callbacks"]["Timer"]
        state["wall_time_s"] = first = 1000.0  # as if the first session had run 1000 s
        torch.save(state, last)
    assert rebuild_summary(tmp_path / "run")["wall_time_s"] == round(first, 1)  # a damaged summary's stand-in
    clock = iter([100.0, 107.5])  # the second session: 7.5 s from start to summary
    monkeypatch.setattr(run_module, "time", SimpleNamespace(perf_counter=lambda: next(clock)))
    resumed = train(load_run_config(tmp_path / "run", ["trainer.max_steps=4"]), resume=True)
    assert resumed["steps"] == 4
    assert resumed["wall_time_s"] == round(first + 7.5, 1)


def test_old_run_records_load_in_todays_units():
    """experiments/init/runs holds version-1 summaries: accuracy, recall and F1 as fractions."""
    run = load_run(ROOT / "experiments" / "init" / "runs" / "resnet-56-identity-seed2")
    raw = json.loads((run.path / "summary.json").read_text())
    assert "summary_version" not in raw and raw["test_accuracy"] == pytest.approx(0.1828, abs=1e-4)
    assert run.summary["test_accuracy"] == 18.28 and run.summary["test_error"] == raw["test_error"]
    assert run.get("test_f1_macro") == round(raw["test_f1_macro"] * 100, 2)
    records = ROOT / "experiments" / "init" / "runs"
    assert len(find_runs(records)) == len(list(records.glob("*/summary.json"))) == 12  # every record is found


def test_committed_records_read_the_block_gradient_rms_under_its_new_name():
    """fig6's records store the block-input gradient RMS as ``block_grad.grad_norm`` (the old
    name); read back, it is ``grad_rms``, the name the callback writes today."""
    run = load_run(ROOT / "experiments" / "fig6" / "runs" / "plain-20-seed0")
    raw = json.loads((run.path / "summary.json").read_text())["diagnostics"]["block_grad"]
    assert "grad_rms" not in raw and len(raw["grad_norm"]) == 9  # plain-20: 3 stages x 3 blocks
    assert run.diagnostics["block_grad"]["grad_rms"] == raw["grad_norm"]
    assert "grad_norm" not in run.diagnostics["block_grad"]
    assert run.diagnostics["grad_norm"] == run.summary["diagnostics"]["grad_norm"]  # weight norms: unchanged


def test_committed_records_read_the_block_rms_under_its_new_name():
    """The per-block RMS callback was ``signal`` when fig6's records were written; read back, it
    is ``block_rms`` (``analyze signal`` is another measurement)."""
    run = load_run(ROOT / "experiments" / "fig6" / "runs" / "plain-20-seed0")
    raw = json.loads((run.path / "summary.json").read_text())["diagnostics"]
    assert "block_rms" not in raw and len(raw["signal"]["rms_in"]) == 9
    assert run.diagnostics["block_rms"] == raw["signal"] and "signal" not in run.diagnostics


def test_tidy_orders_rounds_and_keeps_unknown_fields():
    s = tidy({"diagnostics": {"grad_norm": {"grad_norm": [0.0123456789, 1e-9]}}, "extra": 1.23456789,
              "test_error": 8.123456, "status": "completed", "wall_time_s": 12.3456, "lr": 0.123456})
    assert list(s) == ["status", "test_error", "lr", "wall_time_s", "extra", "diagnostics"]
    assert s["test_error"] == 8.12 and s["wall_time_s"] == 12.3 and s["lr"] == 0.123456 and s["extra"] == 1.235
    assert s["diagnostics"]["grad_norm"]["grad_norm"] == [0.01235, 1e-9]
    assert set(ORDER) >= set(FIRST_KEYS) | {"requested"}


def test_final_console_line_rounds_every_error_with_a_percent_sign():
    line = summary_line({"run_name": "plain-20", "status": "completed", "steps": 500, "epochs": 1.4222,
                         "train_error_full": 11.111, "train_error": 12.3456, "val_error": 10.0,
                         "best_val_error": 9.996, "test_error": 8.0})
    assert line == ("plain-20 completed after 500 steps (1.42 epochs): train (eval mode, whole split) error "
                    "11.11%, train (last window) error 12.35%, val error 10.00%, best val error 10.00%, "
                    "test error 8.00%")


def test_the_final_console_line_says_what_ran_where_the_config_asked_otherwise():
    """``protocol=heldout data.val_size=0`` runs (and records) the paper's protocol, ``16-mixed`` on
    a CPU runs bf16-mixed: summary.json said so under ``requested``, the console did not."""
    line = summary_line({"run_name": "resnet-8", "status": "completed", "steps": 4, "test_error": 79.3,
                         "protocol": "paper", "precision": "bf16-mixed",
                         "requested": {"protocol": "heldout", "precision": "16-mixed"}})
    assert line == ("resnet-8 completed after 4 steps: test error 79.30%; ran as protocol paper (asked: heldout), "
                    "precision bf16-mixed (asked: 16-mixed)")


def test_progress_bar_shows_running_train_loss_and_error_and_last_val_error():
    trainer = SimpleNamespace(progress_bar_metrics={"train/loss": torch.tensor(0.693147), "train/error": 23.4375,
                                                    "val/error": torch.tensor(21.0938), "lr-SGD": 0.1})
    assert ProgressBar().get_metrics(trainer, None) == {"loss": "0.6931", "error": "23.44%", "val error": "21.09%"}
