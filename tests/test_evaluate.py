"""``python -m residual_lab.evaluate``: a saved net's test metrics, equal to what ``run`` tested,
on its test split or on a folder of images; bad paths end with one sentence and exit code 2."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from residual_lab import cli, console, evaluate
from residual_lab.run import train
from tests.helpers import summary_of as _summary


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A finished 40-step smoke run (protocol=heldout: test scored the best-val checkpoint),
    with the .hydra/config.yaml a Hydra run writes. ``model_checkpoint.mode=max`` makes the
    step-20 checkpoint the "best" one, so it differs from last.ckpt (the final weights)."""
    from tests.helpers import compose_config

    out = tmp_path_factory.mktemp("run")
    cfg = compose_config("experiment=smoke", "callbacks.model_checkpoint.mode=max", "~callbacks.diagnostic_figures",
                         "~callbacks.progress_bar", "trainer.enable_progress_bar=false", output_dir=out)
    (out / ".hydra").mkdir()
    OmegaConf.save(cfg, out / ".hydra" / "config.yaml")
    train(cfg)
    return out


def _evaluate(capsys, *args: str) -> tuple[int, str, str]:
    code = 0
    try:
        evaluate.main(list(args))
    except SystemExit as stop:
        code = stop.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def test_run_dir_scores_the_checkpoint_the_run_tested_with_the_runs_numbers(run_dir, capsys, tmp_path):
    code, out, _ = _evaluate(capsys, f"run_dir={run_dir}", f"out={tmp_path / 'eval.json'}")
    assert code == 0
    result = json.loads((tmp_path / "eval.json").read_text())
    summary = _summary(run_dir)
    assert Path(result["checkpoint"]).name == Path(summary["best_checkpoint"]).name == "best-step20.ckpt"
    assert result["images"] == 512  # the synthetic test split
    for key in ("test_error", "test_accuracy", "test_recall_macro", "test_f1_macro"):
        assert result[key] == pytest.approx(summary[key], abs=0.005), key  # summary.json rounds to 0.01
    assert result["test_loss"] == pytest.approx(summary["test_loss"], rel=5e-4)  # 4 significant digits there
    assert f"error {result['test_error']:.2f} %  accuracy {result['test_accuracy']:.2f} %" in out


def test_ckpt_scores_that_checkpoint_the_final_weights_here(run_dir, capsys, tmp_path):
    code, _, _ = _evaluate(capsys, f"ckpt={run_dir / 'checkpoints' / 'last.ckpt'}", f"out={tmp_path / 'e.json'}")
    assert code == 0
    result = json.loads((tmp_path / "e.json").read_text())
    # the final weights' own test error, which the run measured beside the best-val one
    assert result["test_error"] == pytest.approx(_summary(run_dir)["test_error_final"], abs=0.005)
    assert result["test_error"] == pytest.approx(100 - result["test_accuracy"])


def test_the_documented_overrides_of_plain_values_are_applied_not_refused_as_a_resume(run_dir, capsys, tmp_path):
    """evaluate loaded the run through resume's loader, whose guard refused the module doc's own
    examples (data.eval_batch_size=1000, data.root=<dir>) as "another experiment": scoring a net
    continues no experiment."""
    code, _, err = _evaluate(capsys, f"run_dir={run_dir}", "data.eval_batch_size=100", f"out={tmp_path / 'e.json'}")
    assert code == 0, err
    result, summary = json.loads((tmp_path / "e.json").read_text()), _summary(run_dir)
    assert result["test_error"] == pytest.approx(summary["test_error"], abs=0.005)
    cfg = evaluate.run_config(run_dir, ["data.eval_batch_size=100", "+data.root=/elsewhere"])
    assert (cfg.data.eval_batch_size, cfg.data.root) == (100, "/elsewhere")


def test_a_folder_of_the_test_images_scores_as_the_test_split(run_dir, capsys, tmp_path):
    from residual_lab.data import SyntheticSource

    data = SyntheticSource(seed=0).load()  # the smoke run's data (seed 0)
    for i, (image, label) in enumerate(zip(data.test_images, data.test_labels)):
        folder = tmp_path / "images" / data.classes[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{i}.png")  # lossless
    code, out, _ = _evaluate(capsys, f"run_dir={run_dir}", f"folder={tmp_path / 'images'}", f"out={tmp_path / 'f.json'}")
    assert code == 0, out
    result = json.loads((tmp_path / "f.json").read_text())
    assert result["images"] == 512 and result["data"] == str(tmp_path / "images")
    assert result["test_error"] == pytest.approx(_summary(run_dir)["test_error"], abs=0.005)


def _bad(tmp_path: Path, run_dir: Path) -> list[tuple[list[str], str]]:
    not_a_ckpt = tmp_path / "notes.ckpt"
    not_a_ckpt.write_text("not a checkpoint")
    wrong_classes = tmp_path / "wrong" / "cat"
    wrong_classes.mkdir(parents=True)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(wrong_classes / "0.png")
    import torch

    other = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    other["state_dict"].pop(next(k for k in other["state_dict"] if k.endswith("conv1.weight")))
    torch.save(other, tmp_path / "other.ckpt")  # one weight fewer: another architecture
    return [
        ([f"run_dir={run_dir}", f"ckpt={tmp_path / 'other.ckpt'}"],
         f"checkpoint {tmp_path / 'other.ckpt'} is of another architecture: 1 missing from the checkpoint"),
        ([f"run_dir={tmp_path / 'nowhere'}"], f"run_dir={tmp_path / 'nowhere'}: no .hydra/config.yaml there"),
        ([f"ckpt={tmp_path / 'missing.ckpt'}"], f"ckpt={tmp_path / 'missing.ckpt'}: no such file"),
        ([f"ckpt={not_a_ckpt}"], f"ckpt={not_a_ckpt}: no run directory around it"),
        ([f"run_dir={run_dir}", f"ckpt={not_a_ckpt}"], f"ckpt={not_a_ckpt} is not a checkpoint torch can read"),
        ([f"run_dir={run_dir}", f"folder={tmp_path / 'none'}"], f"folder={tmp_path / 'none'} is not a directory"),
        ([f"run_dir={run_dir}", f"folder={tmp_path / 'wrong'}"], f"folder={tmp_path / 'wrong'} has the classes ['cat']"),
        ([f"run_dir={run_dir}", "data=imagefolder"], "evaluate overrides plain values of the run's config"),
        ([f"run_dir={run_dir}", f"folder={tmp_path / 'wrong'}", "image_size=big"],
         "image_size must be a whole number of pixels >= 1, got 'big'"),
        (["depth"], "'depth' is not key=value"),
        (["data.root=x"], "name the net with run_dir=<run dir> or ckpt=<file.ckpt>"),
    ]


def test_bad_paths_and_arguments_end_with_one_sentence_and_exit_code_2(run_dir, capsys, tmp_path):
    for args, message in _bad(tmp_path, run_dir):
        code, out, err = _evaluate(capsys, *args)
        assert code == 2, args
        assert err.startswith(f"\nresidual_lab: {message}") and err.count("\n") == 3, (args, err)
        assert "Traceback" not in out + err


def test_no_argument_prints_the_usage_and_exits_2(capsys):
    code, _, err = _evaluate(capsys)
    assert code == 2 and err.startswith("usage: python -m residual_lab.evaluate run_dir=<run dir> | ckpt=<file.ckpt>")


# runpy warns when the module was imported before (here by this file); `residual-lab` does not.
@pytest.mark.filterwarnings("ignore:'residual_lab.evaluate' found in sys.modules:RuntimeWarning")
def test_console_script_has_an_evaluate_command(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(console, "PROGRAM", None)
    monkeypatch.setattr(sys, "argv", ["residual-lab"])
    with pytest.raises(SystemExit) as done:
        cli.main(["evaluate", f"run_dir={tmp_path}"])
    assert done.value.code == 2
    assert f"residual_lab: run_dir={tmp_path}: no .hydra/config.yaml there" in capsys.readouterr().err
