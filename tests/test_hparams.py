"""TensorBoard's HParams table over the runs of one logdir: every hyper-parameter
that differs between the runs is marked as differing, so the table shows it.

Read back as TensorBoard builds the table: the hparams plugin data of every event file under
the logdir (``EventMultiplexer``), turned into the experiment by TensorBoard's own
``backend_context.Context.experiment_from_metadata``."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from residual_lab.loggers import TensorBoardLogger, run_hparams
from residual_lab.run import train


def hparams_table(logdir: Path) -> dict[str, bool]:
    """``{hyper-parameter: differs}`` of TensorBoard's HParams table for ``logdir``."""
    from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer
    from tensorboard.plugins.hparams import backend_context, metadata

    mux = EventMultiplexer()
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    content = mux.PluginRunToTagToContent(metadata.PLUGIN_NAME)
    experiment = backend_context.Context(None).experiment_from_metadata(
        None, "", include_metrics=False, hparams_run_to_tag_to_content=content, data_provider_hparams=[])
    return {info.name: info.differs for info in experiment.hparam_infos}


def test_hparams_mark_every_key_that_differs_across_the_runs_of_a_logdir(make_cfg, tmp_path):
    """Before: each run wrote its own "experiment" summary, TensorBoard took the first as the
    logdir's, and every key read "not differing" (shortcut hidden in a plain-vs-residual sweep)."""
    for shortcut, momentum in (("none", 0.9), ("identity", 0.8)):
        summary = train(make_cfg(f"shortcut={shortcut}", f"optimizer.momentum={momentum}", "trainer.max_steps=10",
                                 output_dir=tmp_path / "logs" / shortcut))
        assert summary["status"] == "completed"
    table = hparams_table(tmp_path / "logs")
    assert {k for k, differs in table.items() if differs} == {"shortcut", "optimizer.momentum"}  # option A: no params
    assert {"depth", "seed", "lr", "params", "model", "optimizer", "scheduler", "optimizer.weight_decay"} <= set(table)


def test_run_hparams_name_the_optimizer_and_schedule_settings():
    cfg = OmegaConf.create({"optimizer": {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1,
                                          "momentum": 0.9, "nesterov": False},
                            "scheduler": {"_target_": "residual_lab.schedules.multistep_schedule",
                                          "milestones": [0.5, 0.75], "warmup_steps": 0}})
    summary = {"depth": 20, "shortcut": "none", "lr": 0.1, "optimizer": "SGD", "init": None, "status": "completed"}
    assert run_hparams(cfg, summary) == {
        "depth": 20, "shortcut": "none", "optimizer": "SGD", "lr": 0.1, "optimizer.momentum": 0.9,
        "optimizer.nesterov": False, "scheduler": "multistep_schedule", "scheduler.milestones": "[0.5, 0.75]",
        "scheduler.warmup_steps": 0}


def test_a_logger_without_results_writes_no_session(tmp_path):
    logger = TensorBoardLogger(save_dir=tmp_path, name="run", version="", default_hp_metric=False)
    logger.log_hyperparams({"depth": 8})
    logger.finalize("success")
    assert hparams_table(tmp_path) == {}
    assert logger.hparams == {"depth": 8}
