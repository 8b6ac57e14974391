"""Every experiment preset composes and expands to exactly the runs its paper figure needs."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

import residual_lab  # noqa: F401  (resolvers)
from residual_lab.run import CONFIG_DIR


def expand(*overrides: str) -> list:
    """The configs ``python -m residual_lab.run -m <overrides>`` would run, as Hydra's basic
    sweeper expands them (the preset's ``hydra.sweeper.params``, then the command line)."""
    parser = OverridesParser.create()
    fixed = [o.input_line for o in parser.parse_overrides(list(overrides)) if not o.is_sweep_override()]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        primary = compose("config", overrides=fixed, return_hydra_config=True)
        params = [f"{k}={v}" for k, v in (primary.hydra.sweeper.params or {}).items()]
        parsed = parser.parse_overrides(params + list(overrides))
        jobs = BasicSweeper.split_arguments(parsed, max_batch_size=None)[0]
        return [compose("config", overrides=job) for job in jobs]


def names(cfgs) -> list[str]:
    return [c.run_name for c in cfgs]


def test_fig6_is_plain_and_residual_at_four_depths():
    cfgs = expand("experiment=fig6")
    assert names(cfgs) == ["plain-20", "resnet-20-identity", "plain-32", "resnet-32-identity",
                           "plain-44", "resnet-44-identity", "plain-56", "resnet-56-identity"]
    assert {c.trainer.max_steps for c in cfgs} == {64000}
    assert {c.scheduler.warmup_steps for c in cfgs} == {0}


@pytest.mark.parametrize("budget, steps, warmup_110", [("paper", 64000, 400), ("short", 16000, 100), ("cpu", 500, 3)])
def test_table6_warms_up_only_resnet110_scaled_with_the_budget(budget, steps, warmup_110):
    cfgs = expand("experiment=table6", f"budget={budget}")
    assert names(cfgs) == [f"resnet-{d}-identity" for d in (20, 32, 44, 56, 110)]
    assert [c.trainer.max_steps for c in cfgs] == [steps] * 5
    assert [c.scheduler.warmup_steps for c in cfgs] == [0, 0, 0, 0, warmup_110]
    assert {(c.scheduler.warmup_factor, c.scheduler.warmup_mode) for c in cfgs} == {(0.1, "constant")}


def test_table6_takes_1202_and_seeds_from_the_command_line():
    cfgs = expand("experiment=table6", "depth=1202", "seed=0,1,2")
    assert [(c.depth, c.seed, c.scheduler.warmup_steps) for c in cfgs] == [(1202, 0, 400), (1202, 1, 400), (1202, 2, 400)]


def test_ladder_rungs_keep_five_measuring_points_each_and_the_500_step_rung_is_fig6s():
    """The curve callbacks (train_split_error) measure every trainer.val_check_interval steps:
    scaled with the rung (100 at 500 steps, as fig6's budget=cpu runs), 5 points per run, so a
    6000-step rung does not spend 60 full measurements."""
    cfgs = expand("experiment=ladder", "budget=cpu", "seed=0")
    assert len(cfgs) == 16
    by_steps = {c.trainer.max_steps: c.trainer.val_check_interval for c in cfgs}
    assert by_steps == {500: 100, 1500: 300, 3000: 600, 6000: 1200}
    assert {c.protocol.test_weights for c in cfgs} == {"final"}
    assert {c.scheduler.warmup_steps for c in cfgs} == {200}


def test_shortcuts_are_options_a_b_c_at_20_and_56():
    assert names(expand("experiment=shortcuts")) == [
        "resnet-20-identity", "resnet-20-projection", "resnet-20-full_projection",
        "resnet-56-identity", "resnet-56-projection", "resnet-56-full_projection"]


def test_preact_is_original_and_preactivation_110_and_bottleneck_164():
    cfgs = expand("experiment=preact", "budget=cpu")
    assert [(c.depth, c.block) for c in cfgs] == [(110, "basic"), (110, "preact"), (164, "preact_bottleneck")]
    assert names(cfgs) == ["resnet-110-identity", "resnet-110-identity-preact",
                           "resnet-164-projection-preact_bottleneck"]  # He et al. 2016 appendix: projections
    assert [c.scheduler.warmup_steps for c in cfgs] == [3, 3, 3]


def test_no_norm_is_plain_and_residual_without_normalisation():
    cfgs = expand("experiment=no_norm", "budget=cpu")
    assert names(cfgs) == ["plain-20-norm_none", "resnet-20-identity-norm_none",
                           "plain-56-norm_none", "resnet-56-identity-norm_none"]
    assert {c.model.norm for c in cfgs} == {"none"}


@pytest.mark.parametrize("budget, steps", [("paper", 64000), ("short", 16000), ("cpu", 500), ("cpu_long", 3000)])
def test_budget_sets_the_run_length_and_milestones_stay_fractions(budget, steps):
    (cfg,) = expand(f"budget={budget}")
    assert cfg.trainer.max_steps == steps
    assert list(cfg.scheduler.milestones) == [0.5, 0.75]


def test_default_budget_is_paper_and_smoke_keeps_its_own_length():
    (default,) = expand()
    assert default.trainer.max_steps == 64000
    (smoke,) = expand("experiment=smoke", "budget=cpu")  # budget comes before experiment
    assert smoke.trainer.max_steps == 40 and smoke.trainer.val_check_interval == 20
    (cpu,) = expand("budget=cpu")
    assert (cpu.trainer.val_check_interval, cpu.trainer.check_val_every_n_epoch) == (100, None)


def test_cpu_budget_warms_every_net_up_linearly_for_200_steps():
    cfgs = expand("experiment=fig6", "budget=cpu")
    assert {(c.scheduler.warmup_steps, c.scheduler.warmup_mode, c.scheduler.warmup_factor) for c in cfgs} == {
        (200, "linear", 0.1)}
    assert {c.trainer.max_steps for c in cfgs} == {500}


def test_cpu_long_is_budget_cpu_six_times_longer_with_the_same_warm_up_and_sweep_layout():
    (cpu,), (long,) = expand("experiment=fig6", "budget=cpu", "depth=56", "shortcut=identity", "seed=0"), \
        expand("experiment=fig6", "budget=cpu_long", "depth=56", "shortcut=identity", "seed=0")
    assert (long.trainer.max_steps, long.trainer.val_check_interval) == (3000, 500)
    assert long.scheduler == cpu.scheduler and long.protocol == cpu.protocol
    assert long.trainer.log_every_n_steps == cpu.trainer.log_every_n_steps == 10


def test_cpu_budget_sweeps_run_one_job_per_core_with_the_cores_shared_out(monkeypatch):
    from residual_lab.sweep import threads_per_job

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["budget=cpu"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_ == "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    assert OmegaConf.to_container(cfg)["torch_threads"] == "${threads_per_job:${hydra:mode},${hydra:launcher.n_jobs}}"
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert threads_per_job("RunMode.MULTIRUN", 2) == 1   # two 1-thread jobs side by side
    assert threads_per_job("MULTIRUN", 1) == 2
    assert threads_per_job("RunMode.RUN", 2) is None     # a single run keeps every core
