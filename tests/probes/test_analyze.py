"""The analyze app: composes like run, writes <name>.json/PNG/TensorBoard, loads runs strictly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from residual_lab.analyze import analyze, load_net, translate_argv
from residual_lab.errors import UserFacingError
from residual_lab.run import CONFIG_DIR

TINY = ["data=synthetic", "data.source.num_train=48", "data.source.num_test=16", "data.val_size=8",
        "depth=8", "width=4"]


def _compose(name: str, *overrides: str, out: Path):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("analyze", overrides=[f"analyze={name}", f"paths.output_dir={out}", *TINY, *overrides])


def test_first_bare_word_names_the_analysis():
    assert translate_argv(["signal", "depth=56"]) == ["depth=56", "analyze=signal"]
    assert translate_argv(["signal", "-m", "depth=8,20"]) == ["-m", "depth=8,20", "analyze=signal"]
    assert translate_argv(["--cfg", "job", "lesion"]) == ["--cfg", "job", "analyze=lesion"]
    assert translate_argv(["analyze=hessian", "depth=8"]) == ["analyze=hessian", "depth=8"]
    assert translate_argv(["--help"]) == ["--help"]


@pytest.mark.parametrize("argv,problem", [([], "no analysis named"), (["depth=56"], "no analysis named"),
                                          (["hesian", "depth=56"], "unknown analysis 'hesian'")])
def test_no_or_a_misspelt_analysis_lists_every_analysis_and_exits_2(argv, problem, monkeypatch, capsys):
    """The bare command, or a wrong name, prints one line per analysis (name and
    description) and exits with status 2, without a traceback and without running Hydra."""
    from residual_lab import analyze as app
    from residual_lab.probes import DESCRIPTIONS, PROBES

    with pytest.raises(UserFacingError, match=problem):
        translate_argv(argv)
    monkeypatch.setattr("sys.argv", ["analyze", *argv])
    monkeypatch.setattr(app, "_main", lambda: pytest.fail("Hydra must not run"))
    with pytest.raises(SystemExit) as exit_info:
        app.main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert problem in err.splitlines()[0] and "Traceback" not in err
    listed = [line.split()[0] for line in err.splitlines()[1:]]
    assert listed == list(PROBES) == list(DESCRIPTIONS)
    for line, name in zip(err.splitlines()[1:], PROBES):
        assert line.strip().endswith(DESCRIPTIONS[name])


@pytest.mark.parametrize("name,options", [
    ("hessian", ["analyze.images=8", "analyze.batch_size=8", "analyze.lanczos_steps=3", "analyze.slq_runs=1",
                 "analyze.trace_probes=2", "analyze.top_k=2"]),
    ("jacobian", ["analyze.images=2", "analyze.calibration_images=8", "analyze.probes=2", "analyze.lanczos_steps=3"]),
    ("gradient_noise", ["analyze.batch_size=4", "analyze.batches=3"])])
def test_curvature_analyses_write_their_record_and_figure(tmp_path, name, options):
    """hessian, jacobian, gradient_noise through the app: the record names the three blocks
    of the depth-8 net and the options it ran with, and the figure is written."""
    from residual_lab.probes import PROBES

    record = analyze(_compose(name, *options, out=tmp_path))
    saved = json.loads((tmp_path / f"{name}.json").read_text())
    assert saved["analysis"] == name and saved["meta"]["options"]["name"] == name
    assert [b for b in saved["result"]["blocks"] if b not in ("stem", "head")] == ["s1.b0", "s2.b0", "s3.b0"]
    assert list(PROBES[name].figures(record["result"])) == [p.stem.removeprefix(name + "_")
                                                              for p in sorted(tmp_path.glob(f"{name}_*.png"))]


@pytest.mark.parametrize("name,options,passes", [
    # ResNet-8: one block a stage, each removable (its skip stays): the intact net, 3 blocks
    # alone, 2 draws for k = 1, 2 and the one set of all 3, no stage with two blocks to swap
    ("lesion", ["analyze.images=8", "analyze.draws=2"], 1 + 3 + (2 + 2 + 1)),
    ("landscape", ["analyze.images=8", "analyze.points_1d=3", "analyze.points_2d=2"], 3 + 2 * 2),
    ("hessian", ["analyze.images=8", "analyze.batch_size=8", "analyze.lanczos_steps=3", "analyze.slq_runs=1",
                 "analyze.trace_probes=2", "analyze.top_k=2"], 2 + 1 * 3)])
def test_long_analyses_count_their_passes_on_stderr(tmp_path, capsys, name, options, passes):
    """lesion ran 100 s without a line; each long analysis now shows a bar that counts the
    passes over its images to the total computed by hand."""
    import re

    analyze(_compose(name, *options, out=tmp_path))
    err = capsys.readouterr().err
    assert re.search(rf"{name}: 100%\|.*\| {passes}/{passes} ", err), err[-400:]


def test_fresh_net_writes_json_png_and_tensorboard(tmp_path):
    cfg = _compose("signal", "analyze.batch_size=8", "shortcut=none", "norm=none", out=tmp_path)
    record = analyze(cfg)
    saved = json.loads((tmp_path / "signal.json").read_text())
    assert saved["analysis"] == "signal" and saved["meta"]["trained"] is False
    assert saved["meta"]["depth"] == 8 and saved["meta"]["shortcut"] == "none" and saved["meta"]["norm"] == "none"
    assert saved["result"]["blocks"] == record["result"]["blocks"] == ["s1.b0", "s2.b0", "s3.b0"]
    assert (tmp_path / "signal_plot.png").stat().st_size > 0
    assert any((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def _fake_run(tmp_path: Path, *overrides: str) -> tuple[Path, torch.nn.Module]:
    """A run directory as residual_lab.run leaves it: .hydra/config.yaml and a Lightning checkpoint."""
    run = tmp_path / "run"
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[*TINY, *overrides])
    (run / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, run / ".hydra" / "config.yaml")
    torch.manual_seed(1)
    net = instantiate(cfg.model)
    (run / "checkpoints").mkdir()
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}}, run / "checkpoints" / "last.ckpt")
    return run, net


@pytest.mark.parametrize("init,norm", [("kaiming_fan_in", "batch"), ("skipinit", "none"), ("fixup", "none")])
def test_run_dir_loads_the_runs_net_strictly(tmp_path, init, norm):
    run, net = _fake_run(tmp_path, f"model.init={init}", f"norm={norm}")
    loaded, run_cfg, ckpt = load_net(run)
    assert ckpt.name == "last.ckpt" and run_cfg.model.init == init
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in loaded.state_dict().items())
    state = torch.load(ckpt, weights_only=True)
    state["state_dict"].pop(next(iter(state["state_dict"])))
    torch.save(state, ckpt)
    with pytest.raises(UserFacingError, match="of another architecture: 1 missing from the checkpoint"):
        load_net(run)


def test_analysis_of_a_run_uses_its_net_and_data(tmp_path):
    run, _ = _fake_run(tmp_path, "shortcut=projection")
    out = tmp_path / "out"
    cfg = _compose("responses", f"run_dir={run}", "shortcut=none", out=out)  # the run's config wins
    saved = analyze(cfg)
    assert saved["meta"]["trained"] and saved["meta"]["shortcut"] == "projection"
    assert saved["meta"]["checkpoint"].endswith("last.ckpt") and saved["result"]["images"] == 16
    # the budget the weights trained for: what keeps a 1500-step net's record from a 3000-step one's
    assert saved["meta"]["max_steps"] == OmegaConf.load(run / ".hydra" / "config.yaml").trainer.max_steps
    assert (out / "responses.json").exists() and (out / "responses_std.png").exists()


def test_report_lists_the_analyses_it_finds_and_not_as_runs(tmp_path):
    """An analysis output directory (``.hydra/config.yaml`` with the analyze node, <name>.json,
    figures) under the report's directory: a table row with the probe's headline numbers and
    a working link to each figure; it is not counted as an incomplete run."""
    from residual_lab.report import write_report

    out = tmp_path / "analyses" / "0_plain-8"
    cfg = _compose("signal", "analyze.batch_size=8", "shortcut=none", out=out)
    record = analyze(cfg)
    (out / ".hydra").mkdir()
    OmegaConf.save(cfg, out / ".hydra" / "config.yaml")  # as Hydra leaves it
    report = write_report(tmp_path / "analyses", out=tmp_path / "report").read_text()

    assert report.splitlines()[2] == "0 runs.  "
    assert "## Analyses" in report and "### `signal`" in report
    row = next(line for line in report.splitlines() if line.startswith("| plain-8-w4 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    res = record["result"]
    assert cells[:4] == ["plain-8-w4", "kaiming_fan_in", "at init", "0"]
    assert cells[4:10] == [f"{v:.4g}" for v in (res["var"][0], res["var"][-1], res["mean_sq"][-1],
                                                 res["grad_rms"][0], res["grad_rms"][-1], res["loss"])]
    link = cells[10].split("(")[1].rstrip(")")
    assert (tmp_path / "report" / link).resolve() == (out / "signal_plot.png").resolve()


def test_lesion_headline_is_the_median_and_worst_single_removal():
    from residual_lab.probes import lesion

    result = {"base_error": 12.0, "single": [10.0, None, 30.0, 20.0, 50.0], "images": 100,
              "random": {"k": [1, 2, 3], "errors": [[14.0, 16.0], [20.0, 30.0], [90.0]]}}
    head = lesion.headline(result)
    assert head == {"intact %": 12.0, "one removed, median %": 30.0, "one removed, worst %": 50.0,
                    "removable": 4, "k=1 mean %": 15.0, "largest k": 3, "largest k mean %": 90.0,
                    "images": 100}


EXTERNAL = ["model=external", "depth=null", "width=null", "model.factory=tests.models.test_external.tiny_torchvision_resnet"]


@pytest.mark.parametrize("name,options", [
    ("hessian", ["analyze.images=8", "analyze.batch_size=8", "analyze.lanczos_steps=3", "analyze.slq_runs=1",
                 "analyze.trace_probes=2", "analyze.top_k=2"]),
    ("gradient_noise", ["analyze.batch_size=4", "analyze.batches=3"])])
def test_curvature_analyses_of_an_external_net_group_by_its_traced_blocks(tmp_path, name, options):
    """model=external (torchvision's ResNet, one block a stage) has no named_blocks(): the
    blocks are the ones its residual additions mark, so the per-block tables name layer1.0 ...
    layer4.0, between the parameters outside every block (conv1, bn1, fc)."""
    saved = analyze(_compose(name, *EXTERNAL, *options, out=tmp_path))
    blocks = saved["result"]["blocks"]
    assert [b for b in blocks if b.startswith("layer")] == ["layer1.0", "layer2.0", "layer3.0", "layer4.0"]
    assert set(blocks) - {"layer1.0", "layer2.0", "layer3.0", "layer4.0"} == {"conv1", "bn1", "fc"}


@pytest.mark.parametrize("name,needs", [("jacobian", "forward_features(), named_blocks()"), ("lesion", "named_blocks()")])
def test_an_analysis_that_needs_our_nets_refuses_an_external_one_in_one_sentence(tmp_path, name, needs):
    with pytest.raises(UserFacingError) as info:
        analyze(_compose(name, *EXTERNAL, out=tmp_path))
    assert str(info.value) == (f"analyze {name} needs the net's {needs}, which residual_lab's own models have and "
                               "torchvision.models.resnet.ResNet (model=external) has not; the analyses that take any "
                               "net: signal, responses, landscape, shatter, hessian, gradient_noise")
    assert not (tmp_path / f"{name}.json").exists()
