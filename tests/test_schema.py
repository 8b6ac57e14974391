"""The typed config: every bad value stops the run with one sentence and exit code 2.

The command line runs in this process (``residual_lab.run.main`` with ``sys.argv`` set), so
each case costs a config composition, not a Python start-up.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from pathlib import Path

import lightning
import pytest

from residual_lab.errors import UserFacingError
from residual_lab.schema import check_config, config_type, trainer_schema
from residual_lab.validation import validate_config
from tests.helpers import FAST, run_cli
from tests.helpers import image_folder as _image_folder

MAX_SEED = 4294967295


# The inputs first, then more of the kinds a person types.
BAD_INPUTS = [
    (["trainer.max_steps=abc"], "trainer.max_steps must be an integer >= 1 (or -1 to use max_epochs), got 'abc'"),
    (["seed=-1"], f"seed must be from 0 to {MAX_SEED} (the seeds numpy accepts), got -1"),
    (["seed=1099511627776"], f"seed must be from 0 to {MAX_SEED} (the seeds numpy accepts), got 1099511627776"),
    (["data.subset=500"],  # 7 steps per epoch of batch 64; the smoke run validates every 20 steps
     "trainer.val_check_interval=20 steps is longer than an epoch (7 steps of data.batch_size=64 over 500 "
     "training images); set trainer.val_check_interval to at most 7, or trainer.check_val_every_n_epoch=null "
     "to count the interval across epochs"),
    (["optimizer=lion"], "unknown optimizer 'lion'; valid choices: adagrad, adam, adamw, rmsprop, sgd"),
    (["+detph=56"], "unknown config key 'detph' (set to 56); did you mean 'depth'?"),
    (["detph=56"], "unknown config key 'detph' (set to 56); did you mean 'depth'?"),
    (["++detph=56"], "unknown config key 'detph' (set to 56); did you mean 'depth'?"),
    (["trainer.max_stpes=500"],
     "unknown config key 'trainer.max_stpes' (set to 500); did you mean 'trainer.max_steps'?"),
    (["+trainer.fast_dev_rn=1"], "unknown config key 'trainer.fast_dev_rn' (set to 1): lightning.pytorch.Trainer "
                                 "takes no 'fast_dev_rn'; did you mean 'trainer.fast_dev_run'?"),
    (["+optimizer.momentm=0.9"], "unknown config key 'optimizer.momentm' (set to 0.9): torch.optim.SGD takes no "
                                 "'momentm'; did you mean 'optimizer.momentum'?"),
    (["experiment=smok"], "unknown experiment 'smok' (did you mean 'smoke'?); valid choices: debug, "
                          "depth_lstm, depth_mlp, depth_vit, external_resnet18, fig6, ladder, no_norm, preact, "
                          "seed_resnet18, shortcuts, smoke, table6"),
    (["+depth=5"], "'depth' is already a config key: set it without the +, as depth=5"),
    (["optimizer.lr=abc"], "optimizer.lr must be a number > 0, got 'abc'"),
    (["depth=twenty"], "depth must be an integer >= 1, or null, got 'twenty'"),  # null: model=external
    (["trainer.fast_dev_run=maybe"], "trainer.fast_dev_run must be an integer or a boolean (true/false), got 'maybe'"),
    (["torch_threads=0"], "torch_threads must be >= 1, got 0"),
    (["diagnostics.every_n_steps=0"], "diagnostics.every_n_steps must be >= 1, got 0"),
    (["callbacks.grad_norm.every_n_steps=-5"], "callbacks.grad_norm.every_n_steps must be >= 1, got -5"),
    (["trainer.gradient_clip_algorithm=l2"], "trainer.gradient_clip_algorithm must be norm or value, got 'l2'"),
    (["trainer.val_check_interval=1.5"], "trainer.val_check_interval must be optimizer steps >= 1 (an integer) or "
                                         "a fraction of an epoch from 0.0 to 1.0, got 1.5"),
    (["scheduler.warmup_mode=cubic"], "scheduler.warmup_mode must be constant or linear, got 'cubic'"),
    (["scheduler.milestones=[0.5,2]"], "scheduler.milestones must be a list of fractions of the run from 0.0 to "
                                       "1.0, got [0.5, 2]"),
    (["optimizer=adam", "optimizer.betas=[1.5,0.9]"],
     "optimizer.betas=[1.5, 0.9] is refused by torch.optim.Adam: Invalid beta parameter at index 0: 1.5"),
    (["data.source.num_classes=1"], "data.source.num_classes must be >= 2, got 1"),
    (["optimizer=adam", "optimizer.eps=0.001"],  # Adam takes eps; conf/optimizer/adam.yaml does not list it
     "'optimizer.eps' is not in the config, but torch.optim.Adam takes it: add it with +optimizer.eps=0.001"),
    (["optimizer=adam", "optimizer.epss=0.001"],
     "unknown config key 'optimizer.epss' (set to 0.001); did you mean 'optimizer.eps'?"),
    (["~detph"], "cannot delete 'detph' (~detph): the config has no such key"),
    (["+optimizer.xyzzy=1"],  # not `params`: the optimizer node is partial, the module passes them
     "unknown config key 'optimizer.xyzzy' (set to 1): torch.optim.SGD takes no 'xyzzy'; valid keys under "
     "optimizer: dampening, differentiable, foreach, fused, lr, maximize, momentum, nesterov, weight_decay"),
    (["+scheduler.xyzzy=1"],
     "unknown config key 'scheduler.xyzzy' (set to 1): residual_lab.schedules.multistep_schedule takes no 'xyzzy'; "
     "valid keys under scheduler: gamma, milestones, warmup_factor, warmup_mode, warmup_steps"),
    (["optimizer.nesterov=true", "optimizer.momentum=0"],
     "optimizer.momentum=0.0 is refused by torch.optim.SGD: Nesterov momentum requires a momentum and zero dampening"),
    (["trainer.max_steps=-1", "trainer.max_epochs=-1"],  # Lightning would train until stopped
     "trainer.max_steps=-1 and trainer.max_epochs=-1 give the run no end, so the lr schedule, laid out over the "
     "run, has no length; set trainer.max_steps, trainer.max_epochs or task.schedule_steps"),
    (["hydra.launcher.n_jobs=2"],  # experiment=smoke keeps Hydra's basic launcher (docs/scaling.md: joblib)
     "unknown config key 'hydra.launcher.n_jobs' (set to 2): hydra._internal.core_plugins.basic_launcher."
     "BasicLauncher takes no 'n_jobs'; no key can be set under hydra.launcher"),
    (["depth=[1"], "cannot read an override: no viable alternative at input '[1' (the syntax is key=value; "
                   "https://hydra.cc/docs/advanced/override_grammar/basic)"),
]


@pytest.mark.parametrize("args,message", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_stops_with_one_sentence_and_exit_code_2(capsys, monkeypatch, tmp_path, args, message):
    code, output = run_cli(capsys, monkeypatch, "experiment=smoke", *args, run_dir=tmp_path)
    assert code == 2
    assert "Traceback" not in output
    assert f"\nresidual_lab: {message}\n" in output


def test_trainer_schema_is_lightnings_trainer_signature():
    """Every argument, in order, with Lightning's default and the type a config can hold."""
    TrainerSchema = trainer_schema()
    params = [p for name, p in inspect.signature(lightning.Trainer.__init__).parameters.items() if name != "self"]
    fields = [f for f in dataclasses.fields(TrainerSchema) if f.name != "_target_"]
    hints = typing.get_type_hints(TrainerSchema)
    assert [f.name for f in fields] == [p.name for p in params]
    assert [f.default for f in fields] == [p.default for p in params]
    assert [hints[p.name] for p in params] == [config_type(p.annotation) for p in params]


def test_any_trainer_argument_is_reachable_as_trainer_name(make_cfg):
    cfg = make_cfg("trainer.detect_anomaly=true", "trainer.limit_val_batches=0.5", "trainer.max_time=00:00:10:00")
    trainer = cfg.trainer
    assert (trainer.detect_anomaly, trainer.limit_val_batches, trainer.max_time) == (True, 0.5, "00:00:10:00")
    validate_config(cfg)


def test_values_omegaconf_can_convert_reach_the_run_typed(make_cfg):
    cfg = make_cfg("seed='7'", "compile=no")  # quoted: a string on the command line
    check_config(cfg, overrides=[])
    assert cfg.seed == 7 and cfg.compile is False


def test_a_value_a_library_refuses_at_build_names_its_key(make_cfg):
    from residual_lab.run import build

    with pytest.raises(UserFacingError) as err:
        build(make_cfg("trainer.max_epochs=-5", "trainer.max_steps=-1"))
    assert str(err.value) == "trainer.max_epochs must be >= 0 (or -1 for no limit), got -5"
    with pytest.raises(UserFacingError) as err:
        build(make_cfg("trainer.strategy=fsdp_on_toasters"))
    assert str(err.value).startswith("trainer.strategy='fsdp_on_toasters' is refused by lightning.pytorch.Trainer: "
                                     "You selected an invalid strategy name")


# --- the number of classes and the image format come from the data --------------------------

def test_an_image_folder_of_2_classes_trains_with_2_outputs(make_cfg, tmp_path):
    from residual_lab.run import train

    root = _image_folder(tmp_path / "two", per_class=12)
    cfg = make_cfg("data=imagefolder", f"data.root={root}", "data.val_size=8", "data.batch_size=8",
                   "data.eval_batch_size=8", "trainer.max_steps=2", "trainer.val_check_interval=1", *FAST,
                   output_dir=tmp_path / "run")
    assert cfg.data.num_classes == cfg.model.num_classes == cfg.task.num_classes == 2
    summary = train(cfg)
    assert summary["status"] == "completed" and summary["dataset"] == "two"
    assert summary["data_root"] == str(root.resolve())
    import torch

    state = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert state["net.head.fc.weight"].shape[0] == 2


def test_grayscale_images_become_rgb_and_image_size_resizes(tmp_path):
    from residual_lab.data import ImageFolderSource

    root = _image_folder(tmp_path / "gray", per_class=2, size=(20, 24), mode="L")
    data = ImageFolderSource(str(root), cache_dir=str(tmp_path / "c")).load()
    assert tuple(data.train_images.shape) == (4, 3, 24, 20)
    assert (data.train_images[:, 0] == data.train_images[:, 2]).all()  # the gray value in every channel
    resized = ImageFolderSource(str(root), cache_dir=str(tmp_path / "c"), image_size=32).load()
    assert tuple(resized.train_images.shape) == (4, 3, 32, 32)


def test_images_of_mixed_sizes_are_refused_naming_the_option(tmp_path):
    from PIL import Image

    from residual_lab.data import ImageFolderSource

    root = _image_folder(tmp_path / "mixed", per_class=2)
    Image.new("RGB", (40, 40)).save(root / "train" / "dog" / "9.png")
    with pytest.raises(UserFacingError) as err:
        ImageFolderSource(str(root), cache_dir=str(tmp_path / "c")).load()
    assert str(err.value) == (f"image {root}/train/dog/9.png is 40x40 but {root}/train/cat/0.png is 32x32; "
                              f"set data.source.image_size=N to resize every image to N x N (e.g. 32)")
    resized = ImageFolderSource(str(root), cache_dir=str(tmp_path / "c"), image_size=32).load()
    assert resized.train_images.shape[-2:] == (32, 32)


def test_a_missing_image_folder_is_named_when_the_config_is_checked(make_cfg, tmp_path):
    cfg = make_cfg("data=imagefolder", f"data.root={tmp_path / 'nowhere'}")
    with pytest.raises(UserFacingError, match=rf"^data.root={tmp_path / 'nowhere'} is missing or empty\. "):
        validate_config(cfg)


@pytest.mark.parametrize("name", ["", "a/b"])
def test_a_run_name_that_cannot_name_a_directory_is_refused(capsys, monkeypatch, tmp_path, name):
    """run_name names the run's directory, its TensorBoard run and its exported records: empty, the
    records were named "-seed0"; with a "/", each landed one directory deeper."""
    code, output = run_cli(capsys, monkeypatch, "experiment=smoke", f"run_name={name}", run_dir=tmp_path)
    assert code == 2
    assert (f"\nresidual_lab: run_name must be a name without '/' (it names the run's directory and its "
            f"records), got '{name}'\n") in output


def test_a_converted_top_level_value_reaches_the_keys_that_interpolate_it(make_cfg):
    """``deterministic=2`` is true to OmegaConf; it was refused as ``trainer.deterministic``, a key
    the person never typed, because the Trainer's node was checked with the value before conversion."""
    cfg = make_cfg("deterministic=2")
    check_config(cfg, overrides=[])
    assert cfg.deterministic is True and cfg.trainer.deterministic is True


@pytest.mark.parametrize("args,message", [
    (["init=fixup"], "unknown config key 'init' (set to 'fixup'); did you mean 'model.init'?"),
    (["lr=0.05"], "unknown config key 'lr' (set to 0.05); did you mean 'optimizer.lr'?"),
    (["max_steps=500"], "unknown config key 'max_steps' (set to 500); did you mean 'trainer.max_steps'?"),
    (["+init=fixup"], "unknown config key 'init' (set to 'fixup'); did you mean 'model.init'?"),
])
def test_a_top_level_key_that_lives_one_node_down_is_named_there(capsys, monkeypatch, tmp_path, args, message):
    """``init=fixup`` listed the 25 top-level keys; the key is ``model.init``."""
    code, output = run_cli(capsys, monkeypatch, "experiment=smoke", *args, run_dir=tmp_path)
    assert code == 2
    assert f"\nresidual_lab: {message}\n" in output
