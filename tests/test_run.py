"""The entry point end to end on synthetic data: it trains, tests and writes its summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from residual_lab.naming import run_name
from residual_lab.run import train
from tests.helpers import run_process as _cli

ROOT = Path(__file__).resolve().parent.parent


def test_smoke_experiment_trains_well_below_chance_and_writes_its_outputs(make_cfg, tmp_path):
    summary = train(make_cfg("trainer.max_steps=60", figures=True))
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["status"] == "completed"
    assert on_disk["steps"] == 60 and on_disk["depth"] == 8 and on_disk["params"] == 75_290
    assert on_disk["test_error"] == summary["test_error"] < 30.0  # chance is 90%
    for key in ("train_error", "val_error", "wall_time_s", "train_images_per_s", "epochs", "seed",
                "shortcut", "block", "width", "norm"):
        assert on_disk[key] is not None, key
    events = list((tmp_path / "tensorboard" / "resnet-8-identity").glob("events.out.tfevents.*"))
    assert events
    # The demo shows the per-layer gradient diagnostics (measured every 10 of its steps).
    assert on_disk["diagnostics"]["grad_norm"]["step"] == 59 and len(on_disk["diagnostics"]["grad_norm"]["layers"]) == 8
    assert on_disk["diagnostics"]["block_grad"]["blocks"] == ["s1.b0", "s2.b0", "s3.b0"]
    assert (tmp_path / "diagnostics" / "grad_norm_heatmap.png").is_file()
    assert (tmp_path / "checkpoints" / "last.ckpt").exists()
    assert len(list((tmp_path / "checkpoints").glob("best-step*.ckpt"))) == 1


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> tuple[dict, Path]:
    """One 40-step smoke run shared by the tests that only read what it logged: its summary
    and output directory. ``model_checkpoint.mode=max`` makes the step-20 checkpoint "best"
    (the net improves), so the tested checkpoint's train window (steps 10-19) is not the
    final one (steps 30-39)."""
    from tests.helpers import compose_config

    out = tmp_path_factory.mktemp("smoke")
    cfg = compose_config("experiment=smoke", "callbacks.model_checkpoint.mode=max", "~callbacks.diagnostic_figures",
                         "~callbacks.progress_bar", "trainer.enable_progress_bar=false", output_dir=out)
    return train(cfg), out


def _scalars(run_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard" / "resnet-8-identity"))
    acc.Reload()
    return acc


def test_logged_scalars_have_the_documented_names(smoke_run):
    acc = _scalars(smoke_run[1])
    tags = set(acc.Tags()["scalars"])
    for tag in ("train/loss", "train/error", "val/loss", "val/error", "val/accuracy", "val/recall",
                "val/f1", "test/error", "test/loss", "test/accuracy", "test/recall", "test/f1"):
        assert tag in tags, tag
    steps = [e.step for e in acc.Scalars("train/error")]
    assert steps == [9, 19, 29, 39]  # every log_every_n_steps=10 optimizer steps (0-based)


def test_summary_train_error_is_the_final_window_not_the_tested_checkpoints(smoke_run):
    """Testing loads the best-val checkpoint, which carries the train window of its own step;
    summary.json must still report the window of the final step."""
    summary, run_dir = smoke_run
    assert Path(summary["best_checkpoint"]).name == "best-step20.ckpt"
    logged = {e.step: e.value for e in _scalars(run_dir).Scalars("train/error")}
    assert logged[19] != pytest.approx(logged[39], abs=1e-3)  # the two windows differ
    assert summary["train_error"] == pytest.approx(logged[39], abs=0.005)  # summary.json rounds to 0.01


def test_every_documented_override_key_composes(make_cfg):
    cfg = make_cfg("depth=14", "shortcut=projection", "block=preact", "width=8", "norm=none", "seed=3",
                   "data.batch_size=32", "data.subset=100", "data.val_size=50", "optimizer=adamw",
                   "optimizer.lr=0.01", "scheduler=cosine", "trainer.max_steps=7", "trainer.max_epochs=2",
                   "trainer.accelerator=cpu", "trainer.precision=bf16-mixed")
    net = instantiate(cfg.model)
    assert (net.depth, net.shortcut, net.block, net.norm) == (14, "projection", "preact", "none")
    assert cfg.run_name == "resnet-14-projection-preact-w8-norm_none"
    assert cfg.data.shuffle_seed == 3 and cfg.data.subset == 100
    assert OmegaConf.select(cfg, "optimizer._target_") == "torch.optim.AdamW"


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "rmsprop", "adagrad"])
def test_every_optimizer_builds(make_cfg, name):
    import torch

    opt = instantiate(make_cfg(f"optimizer={name}").optimizer)(params=[torch.zeros(1, requires_grad=True)])
    assert type(opt).__name__.lower() == name


def test_run_names_say_what_the_run_is():
    assert run_name(56, "none") == "plain-56"
    assert run_name(56, "identity") == "resnet-56-identity"
    assert run_name(110, "identity", "preact") == "resnet-110-identity-preact"


def test_missing_cifar_stops_with_one_clear_paragraph_and_no_traceback(tmp_path):
    proc = _cli(f"data.root={tmp_path / 'none'}", "data.source.download=false",
                f"hydra.run.dir={tmp_path / 'run'}", cwd=ROOT)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr + proc.stdout
    assert f"cifar10 was not found under data.root={tmp_path / 'none'}" in proc.stderr
    assert "data=imagefolder data.root=" in proc.stderr


@pytest.mark.slow  # a real process; in-process the same message is BAD_INPUTS' optimizer=lion (tests/test_schema.py)
def test_unknown_group_option_lists_the_available_ones(tmp_path):
    proc = _cli("optimizer=lion", f"hydra.run.dir={tmp_path}", cwd=ROOT)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "residual_lab: unknown optimizer 'lion'; valid choices: adagrad, adam, adamw, rmsprop, sgd\n" in proc.stderr
