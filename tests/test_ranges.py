"""Values a type allows but no run can use: each stops with one sentence and exit 2.

Each case once trained nonsense (momentum 2, a warm-up longer than the run, a ViT patch that
drops pixel rows), hung (``num_nodes=2`` on one machine) or ended in a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from residual_lab.errors import UserFacingError
from tests.helpers import run_cli

SHORT = ["trainer.max_steps=2", "trainer.val_check_interval=1"]  # where today's code would train
CORES = os.cpu_count() or 1

REFUSED = [
    (["optimizer.momentum=2"], "optimizer.momentum must be >= 0 and < 1 (the fraction of the last update kept), got 2"),
    (["scheduler.warmup_steps=5"], "scheduler.warmup_steps=5 is not shorter than the run (2 steps): the lr would "
                                   "never reach optimizer.lr; set scheduler.warmup_steps below 2"),
    (["model=vit", "model.patch=5"], "model.patch=5 must divide the image side, 32 pixels (model.image_size): "
                                     "2 rows and columns would be dropped; try model.patch=4"),
    (["model=vit", "model.patch=64"], "model.patch=64 must divide the image side, 32 pixels (model.image_size): "
                                      "no patch fits; try model.patch=4"),
    (["model=vit", "model.patch=0"], "model.patch must be >= 1, got 0"),
    (["model=vit", "model.heads=0"], "model.heads must be >= 1, got 0"),
    (["model=vit", "model.heads=3"], "model.heads=3 must divide width=128 (each head takes width / heads features)"),
    (["model=vit", "data.source.image_size=64"], "model=vit is made for 32x32 images (model.image_size=32) but the "
                                                 "data's are 64x64; set +model.image_size=64"),
    (["model=lstm", "data.source.image_size=64"], "model=lstm reads rows of 32 pixels (model.row_features=96) but "
                                                  "the data's images are 64x64; set +model.row_features=192"),
    (["trainer.num_nodes=2"], "trainer.num_nodes=2 needs a launcher that starts this run on every "
                              "machine (SLURM, torchrun); alone, this machine would wait for the others forever; set "
                              "trainer.num_nodes=1"),
    ([f"trainer.devices={CORES + 2}"], f"trainer.devices={CORES + 2} CPU processes but this machine has {CORES} "
                                       f"cores; set trainer.devices to at most {CORES}"),
    (["trainer.precision=64"], "trainer.precision must be one of 32-true, 16-mixed, bf16-mixed (64-bit, 16-true, "
                               "bf16-true and transformer-engine are not supported), got 64"),
    (["trainer.precision=transformer-engine"], "trainer.precision must be one of 32-true, 16-mixed, bf16-mixed "
                                               "(64-bit, 16-true, bf16-true and transformer-engine are not "
                                               "supported), got 'transformer-engine'"),
]


@pytest.mark.parametrize("args,message", REFUSED,
                         ids=[" ".join(c.values[0] if hasattr(c, "values") else c[0]) for c in REFUSED])
def test_a_value_no_run_can_use_stops_with_one_sentence_and_exit_code_2(capsys, monkeypatch, tmp_path, args,
                                                                         message):
    for launcher in ("SLURM_NTASKS", "SLURM_JOB_NAME", "WORLD_SIZE", "NODE_RANK", "LSB_JOBID", "OMPI_COMM_WORLD_SIZE"):
        monkeypatch.delenv(launcher, raising=False)  # a cluster launcher would start the other nodes
    code, output = run_cli(capsys, monkeypatch, "experiment=smoke", *SHORT, *args, run_dir=tmp_path)
    assert "Traceback" not in output
    assert f"\nresidual_lab: {message}\n" in output
    assert code == 2


def test_the_values_just_inside_each_range_pass(make_cfg):
    from residual_lab.validation import validate_config

    validate_config(make_cfg("optimizer.momentum=0.99", "scheduler.warmup_steps=39", "model=vit", "model.patch=8",
                             "model.heads=8", f"trainer.devices={CORES}", "trainer.precision=bf16-mixed"))
    validate_config(make_cfg("model=vit", "data.source.image_size=64", "+model.image_size=64"))
    validate_config(make_cfg("model=lstm", "data.source.image_size=16", "+model.row_features=48"))


def test_an_analysis_of_no_images_is_refused(tmp_path):
    """``analyze.batch_size=0`` measured nothing and wrote an all-NaN record, exit code 0."""
    from tests.probes.test_analyze import _compose

    from residual_lab.analyze import analyze

    with pytest.raises(UserFacingError, match=r"^analyze.batch_size must be >= 1, got 0$"):
        analyze(_compose("signal", "analyze.batch_size=0", out=tmp_path))
    assert not (tmp_path / "signal.json").exists()


#: A probe's own options (conf/analyze/<probe>.yaml): each once ended in a traceback (ZeroDivisionError,
#: IndexError, a TypeError of ``abc`` as a slice) or wrote a record of nothing (an empty landscape, a
#: density broadened by a negative width, bn_mode=foo measured as eval).
PROBE_OPTIONS_REFUSED = [
    ("hessian", "analyze.top_k=abc", "analyze.top_k must be an integer >= 1, got 'abc'"),
    ("hessian", "analyze.lanczos_steps=0", "analyze.lanczos_steps must be >= 1, got 0"),
    ("hessian", "analyze.slq_runs=0", "analyze.slq_runs must be >= 1, got 0"),
    ("hessian", "analyze.trace_probes=0", "analyze.trace_probes must be >= 1, got 0"),
    ("hessian", "analyze.sigma_rel=-1", "analyze.sigma_rel must be > 0, got -1"),
    ("jacobian", "analyze.probes=0", "analyze.probes must be >= 1, got 0"),
    ("landscape", "analyze.points_1d=1", "analyze.points_1d must be >= 2 (a line needs both ends), got 1"),
    ("landscape", "analyze.points_2d=1", "analyze.points_2d must be 0 (no plane) or >= 2, got 1"),
    ("landscape", "analyze.span=0", "analyze.span must be > 0, got 0"),
    ("lesion", "analyze.draws=0", "analyze.draws must be >= 1, got 0"),
    ("shatter", "analyze.points=1", "analyze.points must be >= 2 (a line needs both ends), got 1"),
    ("shatter", "analyze.depths=[0,8]", "analyze.depths must be a list of depths >= 1, got [0, 8]"),
    ("shatter", "analyze.x_range=[2.0,-2.0]", "analyze.x_range must be [low, high] with low < high, got [2.0, -2.0]"),
    ("signal", "analyze.bn_mode=foo", "analyze.bn_mode must be one of 'auto', 'train', 'eval', got 'foo'"),
    ("signal", "analyze.split=foo", "analyze.split must be one of 'train', 'val', 'test', got 'foo'"),
    ("gradient_noise", "analyze.bn_mode=auto", "analyze.bn_mode must be one of 'train', 'eval', got 'auto'"),
    ("responses", "+analyze.top_k=3", "unknown config key 'analyze.top_k' (set to 3); valid keys under analyze: "
                                      "batch_size, images, name, seed, split"),
]


@pytest.mark.parametrize("probe,override,message", PROBE_OPTIONS_REFUSED,
                         ids=[f"{p} {o}" for p, o, _ in PROBE_OPTIONS_REFUSED])
def test_a_probe_option_no_measurement_can_use_is_refused_before_anything_is_written(tmp_path, probe, override,
                                                                                      message):
    from tests.probes.test_analyze import _compose

    from residual_lab.analyze import analyze

    with pytest.raises(UserFacingError) as err:
        analyze(_compose(probe, override, out=tmp_path))
    assert str(err.value) == message
    assert not (tmp_path / f"{probe}.json").exists()


def test_every_probe_declares_the_options_its_yaml_sets():
    """The types and ranges (the probe's ``Options``) and the values (conf/analyze/<probe>.yaml)
    name the same keys: a key the yaml adds unchecked, or one the types name that no yaml sets,
    fails here, as does a type that does not resolve (the check would then know the names alone)."""
    import dataclasses
    import typing

    from omegaconf import OmegaConf

    from residual_lab.analyze import PROBES
    from residual_lab.conf_dir import CONFIG_DIR

    for name, probe in PROBES.items():
        yaml_keys = set(OmegaConf.load(Path(CONFIG_DIR) / "analyze" / f"{name}.yaml"))
        assert {f.name for f in dataclasses.fields(probe.Options)} == yaml_keys, name
        assert set(typing.get_type_hints(probe.Options, include_extras=True)) == yaml_keys, name
