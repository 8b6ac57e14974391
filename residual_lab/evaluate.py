"""Score a saved net on its test split or on any folder of images, without training.

    python -m residual_lab.evaluate run_dir=<run dir>                 # the checkpoint the run tested
    python -m residual_lab.evaluate ckpt=<run dir>/checkpoints/last.ckpt
    python -m residual_lab.evaluate run_dir=<run dir> folder=<dir>    # <dir>/<class>/*.png|jpg...
    python -m residual_lab.evaluate run_dir=<run dir> data.root=<dir> out=<file.json>

``residual-lab evaluate ...`` is the same command. Prints the test error, accuracy, macro
recall and macro F1 (percent) and the mean cross-entropy loss, the metrics ``run`` logs under
``test/``; ``out=<file>`` also writes them as JSON with the same names summary.json uses.

The net and its data come from the run's own ``.hydra/config.yaml`` (``run.load_run_config``,
as ``resume`` rebuilds a run, but without resume's refusal of values that change the
experiment) and are built by ``run.build``, so a net is scored exactly as ``run`` tested it:
the same model code, test split and normalisation. Without ``ckpt=`` the checkpoint is the one
the run's summary.json says it tested (the best-validation checkpoint under protocol=heldout,
the final weights under protocol=paper), else ``last.ckpt``. Loading is strict: a checkpoint
of another architecture is refused, never half-loaded.

``folder=<dir>`` scores the images in ``<dir>/<class>/`` (or ``<dir>/test/<class>/``), whose
class folders must be the run's classes; they are normalised with the run's training-split
statistics, so the run's own data must be readable (``data.root=<dir>`` points at it).
``image_size=N`` resizes the folder's images to N x N pixels. Other ``key=value`` arguments
override plain values of the run's config (``data.eval_batch_size=1000``,
``trainer.accelerator=cpu``). Bad input ends with one sentence and exit code 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from residual_lab.console import quiet_library_noise, say
from residual_lab.errors import USAGE_EXIT_CODE, UserFacingError, entry_point
from residual_lab.io import write_json

#: This command's own arguments; every other ``key=value`` overrides the run's config.
OPTIONS = ("ckpt", "run_dir", "folder", "image_size", "out")
USAGE = ("usage: python -m residual_lab.evaluate run_dir=<run dir> | ckpt=<file.ckpt> "
         "[folder=<image folder>] [image_size=N] [out=<file.json>] [key=value ...]")
#: summary.json's names of the metrics ``test`` logs.
METRICS = {"test/error": "test_error", "test/accuracy": "test_accuracy", "test/recall": "test_recall_macro",
           "test/f1": "test_f1_macro", "test/loss": "test_loss"}


def parse_args(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """This command's options and the overrides of the run's config, from ``key=value`` args."""
    options, overrides = {}, []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or not key:
            raise UserFacingError(f"{arg!r} is not key=value; {USAGE}")
        if key in OPTIONS:
            options[key] = value
        else:
            overrides.append(arg)
    if not options.get("ckpt") and not options.get("run_dir"):
        raise UserFacingError(f"name the net with run_dir=<run dir> or ckpt=<file.ckpt>; {USAGE}")
    return options, overrides


def _has_config(run_dir: Path) -> bool:
    return (run_dir / ".hydra" / "config.yaml").is_file()


def tested_checkpoint(run_dir: Path) -> Path:
    """The checkpoint the run's ``test`` scored (summary.json), else ``last.ckpt`` or the newest."""
    from residual_lab.analyze import find_checkpoint

    summary_file = run_dir / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    if summary.get("tested_checkpoint") == "best-val" and summary.get("best_checkpoint"):
        best = Path(summary["best_checkpoint"])
        for candidate in (best, run_dir / "checkpoints" / best.name):  # the run directory may have moved
            if candidate.is_file():
                return candidate
    return find_checkpoint(run_dir)


def locate(options: dict[str, str]) -> tuple[Path, Path]:
    """The run directory (its config) and the checkpoint file to score."""
    ckpt = Path(options["ckpt"]).expanduser().resolve() if options.get("ckpt") else None
    if ckpt is not None and not ckpt.is_file():
        raise UserFacingError(f"ckpt={ckpt}: no such file")
    if options.get("run_dir"):
        run_dir = Path(options["run_dir"]).expanduser().resolve()
        if not _has_config(run_dir):
            raise UserFacingError(f"run_dir={run_dir}: no .hydra/config.yaml there; point run_dir at a run "
                                  f"directory (it holds summary.json, checkpoints/ and .hydra/)")
    else:
        run_dir = ckpt.parent.parent
        if not _has_config(run_dir):
            raise UserFacingError(f"ckpt={ckpt}: no run directory around it ({run_dir / '.hydra' / 'config.yaml'} "
                                  f"is missing); add run_dir=<the run that saved it>")
    return run_dir, ckpt or tested_checkpoint(run_dir)


def _check_readable(ckpt: Path) -> None:
    """A file torch can load as a Lightning checkpoint (torch's own message runs to a page)."""
    import torch

    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
    except Exception as err:
        raise UserFacingError(f"ckpt={ckpt} is not a checkpoint torch can read ({type(err).__name__})") from None
    if not isinstance(state, dict) or "state_dict" not in state:
        raise UserFacingError(f"ckpt={ckpt} is not a Lightning checkpoint (no state_dict in it)")


def _check_overrides(run_dir: Path, overrides: list[str]) -> None:
    """Plain values only: a config group (``data=imagefolder``) would rebuild another net or data
    than the one the checkpoint was trained with."""
    saved = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if "/" in key or OmegaConf.is_dict(OmegaConf.select(saved, key, default=None)):
            raise UserFacingError(f"evaluate overrides plain values of the run's config (data.root=<dir>, "
                                  f"data.eval_batch_size=1000, trainer.accelerator=cpu), not {override!r}; "
                                  f"folder=<dir> scores other images")


def run_config(run_dir: Path, overrides: list[str]) -> DictConfig:
    """The run's own config with plain values overridden. Not resume's guard: scoring continues no
    experiment, so ``data.root=<dir>`` (the data elsewhere) and ``data.eval_batch_size`` may change."""
    from residual_lab.run import load_run_config

    _check_overrides(run_dir, overrides)
    return load_run_config(run_dir, overrides, same_experiment=False)


def _image_size(value: str | None) -> int | None:
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise UserFacingError(f"image_size must be a whole number of pixels >= 1, got {value!r}")
    return int(value)


def evaluate(options: dict[str, str], overrides: list[str]) -> dict[str, Any]:
    """Build the run's net and data, load the checkpoint strictly, test; return the metrics."""
    from residual_lab.data.image_folder import read_class_folders
    from residual_lab.run import build
    from residual_lab.validation import check_checkpoint_matches

    run_dir, ckpt = locate(options)
    _check_readable(ckpt)
    cfg = run_config(run_dir, overrides)
    with open_dict(cfg):  # score only: no diagnostics, no logs or checkpoints written into the run
        cfg.callbacks, cfg.logger = None, None
        cfg.trainer.enable_progress_bar = False
        cfg.trainer.enable_checkpointing = False
    module, datamodule, trainer = build(cfg)
    check_checkpoint_matches(module, ckpt)
    what = f"the test split of {run_dir.name}"
    if options.get("folder"):
        folder = Path(options["folder"]).expanduser().resolve()
        datamodule.setup("test")  # the run's data: its training split's normalisation statistics
        images = read_class_folders(folder / "test" if (folder / "test").is_dir() else folder,
                                    image_size=_image_size(options.get("image_size")))
        if images.classes != datamodule.classes:
            raise UserFacingError(f"folder={folder} has the classes {images.classes}, but the net was trained "
                                  f"on {datamodule.classes}")
        datamodule.splits["test"] = (images.test_images, images.test_labels)
        what = str(folder)
    tested = trainer.test(module, datamodule=datamodule, ckpt_path=str(ckpt), verbose=False, weights_only=True)[0]
    result = {"run_name": cfg.run_name, "run_dir": str(run_dir), "checkpoint": str(ckpt), "data": what,
              "images": len(datamodule.splits["test"][1]),
              **{name: float(tested[tag]) for tag, name in METRICS.items()}}
    if options.get("out"):
        write_json(Path(options["out"]).expanduser(), result)
    return result


def report(result: dict[str, Any]) -> str:
    """The two lines the command prints."""
    return (f"{result['run_name']} ({result['checkpoint']}) on {result['data']}, {result['images']} images:\n"
            f"  error {result['test_error']:.2f} %  accuracy {result['test_accuracy']:.2f} %  "
            f"recall (macro) {result['test_recall_macro']:.2f} %  F1 (macro) {result['test_f1_macro']:.2f} %  "
            f"loss {result['test_loss']:.4f}")


@entry_point
def main(argv: list[str] | None = None) -> None:
    """``python -m residual_lab.evaluate``: bad input and unwritable outputs end in one sentence
    and exit code 2 (:func:`residual_lab.errors.entry_point`)."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__ if argv else USAGE, file=sys.stdout if argv else sys.stderr)
        sys.exit(0 if argv else USAGE_EXIT_CODE)
    quiet_library_noise()
    say(report(evaluate(*parse_args(argv))))


if __name__ == "__main__":
    main()
