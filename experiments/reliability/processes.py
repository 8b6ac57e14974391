"""Bad inputs as real processes: for each, the exit code, whether a traceback was
printed, the last line printed and what the run's records say afterwards, as a markdown table.

The tests hold each behaviour in-process (docs/reliability.md names them); this is the same
inputs the way a user meets them, a fresh ``python -m residual_lab.<command>`` each, on a
ResNet-8 with 8x8 synthetic images (or tiny image folders), 4 steps.

    python experiments/reliability/processes.py --work <scratch dir> > experiments/reliability/table.md
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

#: A 4-step ResNet-8 on 8x8 synthetic images without the per-step diagnostics.
TINY = ["experiment=smoke", "~callbacks.grad_norm", "~callbacks.block_grad", "~callbacks.block_rms",
        "~callbacks.update_ratio", "~callbacks.token_stats", "~callbacks.resources", "~callbacks.diagnostic_figures",
        "~callbacks.progress_bar", "data.source.image_size=8", "data.source.num_train=256", "data.source.num_test=64",
        "data.val_size=32", "data.batch_size=16", "trainer.max_steps=4", "trainer.val_check_interval=2",
        "trainer.log_every_n_steps=2"]
#: The same on an image folder (``data.root`` added per case).
FOLDER = [*[o for o in TINY if not o.startswith("data.source") and o != "data.val_size=32"], "data=imagefolder",
          "trainer.check_val_every_n_epoch=null",
          "data.val_size=4", "data.num_classes=2"]


def run(work: Path, module: str, *args: str) -> tuple[int, bool, str]:
    """``python -m residual_lab.<module> <args>``: (exit code, traceback printed, last line)."""
    proc = subprocess.run([sys.executable, "-m", f"residual_lab.{module}", *args], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, cwd=work, timeout=900)  # one stream, in order
    out = proc.stdout
    lines = [line.strip() for line in re.split(r"[\r\n]", out) if line.strip()]
    last = lines[-1] if lines else ""
    return proc.returncode, "Traceback (most recent call last)" in out, last.replace(str(work), "<tmp>")


def summary(run_dir: Path, *keys: str) -> str:
    """The named fields of ``run_dir``'s summary.json, or why there are none."""
    path = run_dir / "summary.json"
    if not path.exists():
        return "no summary.json"
    try:
        data = json.loads(path.read_text())
    except ValueError:
        return "summary.json not JSON"
    return ", ".join(f"{k}={json.dumps(data.get(k))}" for k in keys)


def classes(run_dir: Path) -> str:
    """How many classes the trained net tells apart (its classifier's rows), from last.ckpt."""
    import torch

    path = run_dir / "checkpoints" / "last.ckpt"
    if not path.exists():
        return ""
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    return f", classes={[v for k, v in state.items() if k.endswith('weight') and v.dim() == 2][-1].shape[0]}"


def folder(root: Path, *, size: int = 8, test_size: int | None = None, empty: str | None = None,
           hidden: bool = False, sixteen_bit: bool = False, constant: bool = False) -> Path:
    """``root/{train,test}/{cat,dog}/<i>.png``: random 8-bit RGB, or one of the faults."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        side = test_size if split == "test" and test_size else size
        for c in ("cat", "dog"):
            (root / split / c).mkdir(parents=True, exist_ok=True)
            if c == empty:
                continue
            for i in range(12):
                if sixteen_bit:
                    Image.fromarray(rng.integers(0, 65535, (side, side), dtype=np.uint16)).save(root / split / c / f"{i}.png")
                elif constant:
                    Image.fromarray(np.full((side, side), 32768, np.uint16)).save(root / split / c / f"{i}.png")
                else:
                    Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")
        if hidden:
            (root / split / ".ipynb_checkpoints").mkdir(exist_ok=True)
            Image.fromarray(np.zeros((size, size, 3), np.uint8)).save(root / split / ".ipynb_checkpoints" / "0.png")
    return root


def cases(work: Path):
    """(input, command) pairs, each command run after the setup it needs; yields table rows."""
    sweep, one = work / "sweep", work / "one"
    run(work, "run", "-m", *TINY, "optimizer.lr=0.05,0.01", f"hydra.sweep.dir={sweep}")
    code = run(work, "run", "-m", *TINY, "optimizer.lr=0.5,0.2", f"hydra.sweep.dir={sweep}")
    yield ("sweep relaunched into its dir with `optimizer.lr=0.5,0.2` after `0.05,0.01`", code,
           "job dirs: " + ", ".join(sorted(p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))))
    first = summary(sweep / "0_resnet-8-identity", "lr", "status")
    yield ("(the same) what the first job's dir still says", None, first)

    run(work, "run", *TINY, f"hydra.run.dir={one}")
    before = (one / "summary.json").read_text()
    code = run(work, "run", *TINY, "seed=1", f"hydra.run.dir={one}")
    yield ("a second run (`seed=1`) into a finished run's `hydra.run.dir`", code,
           "first summary.json " + ("unchanged" if (one / "summary.json").read_text() == before else "CHANGED"))
    from residual_lab.run_dir import RunLock

    locked = work / "locked"
    (locked / "0_resnet-8-identity").mkdir(parents=True)
    with RunLock(locked / "0_resnet-8-identity"):  # another run holds job 0's directory
        code = run(work, "run", "-m", *TINY, "optimizer.lr=0.05,0.01", f"hydra.sweep.dir={locked}")
    yield ("a sweep whose job 0 directory is locked by a running run", code,
           f"job 0 summary.json: {(locked / '0_resnet-8-identity' / 'summary.json').exists()}; "
           + summary(locked / "1_resnet-8-identity", "status"))
    for override in ("shortcut=none", "seed=1", "optimizer.lr=0.5", "data.batch_size=32", "optimizer=adam"):
        yield f"`resume=<run> {override}`", run(work, "run", f"resume={one}", override), ""
    code = run(work, "run", f"resume={one}")
    yield "`resume=<completed run>` (same length)", code, summary(one, "status", "val_error", "val_loss")

    damaged = sweep / "1_resnet-8-identity" / "summary.json"
    damaged.write_text('{"status": "compl')
    code = run(work, "run", "-m", *TINY, "optimizer.lr=0.05,0.01", f"hydra.sweep.dir={sweep}")
    yield ("sweep relaunched after a job's summary.json was cut short", code,
           summary(damaged.parent, "status", "rebuilt_from") + f"; `.damaged` kept: {(damaged.parent / 'summary.json.damaged').exists()}")
    damaged.write_text('{"status": "compl')
    code = run(work, "report", str(sweep))
    report = (sweep / "report.md").read_text() if (sweep / "report.md").exists() else ""
    yield ("`report <sweep>` with that summary cut short again", code,
           "report.md: " + ("'completed (summary rebuilt)'" if "summary rebuilt" in report else "no 'summary rebuilt'")
           + ("; 'killed or still running' present" if "killed or still running" in report else ""))

    for name, kwargs in (("16-bit gray PNGs", {"sixteen_bit": True}), ("every image the same 16-bit gray", {"constant": True}), ("test split 16x16, train 8x8", {"test_size": 16}),
                         ("an empty class folder (dog/ in train)", {"empty": "dog"}),
                         ("a hidden `.ipynb_checkpoints/` beside the classes", {"hidden": True})):
        root = folder(work / "folders" / re.sub(r"\W+", "_", name), **kwargs)
        out = work / "folder_runs" / root.name
        code = run(work, "run", *FOLDER, f"data.root={root}", f"hydra.run.dir={out}")
        yield f"image folder: {name}", code, summary(out, "status", "train_images") + classes(out)

    for override, keys in (("data.val_size=0", ("protocol", "tested_checkpoint", "val_images")),
                           ("trainer.precision=16-mixed", ("precision", "requested")),
                           ("trainer.devices=4", ("world_size", "global_batch"))):
        out = work / "records" / re.sub(r"\W+", "_", override)
        yield f"`run {override}` (CPU)", run(work, "run", *TINY, override, f"hydra.run.dir={out}"), summary(out, *keys)

    for override in ("optimizer.momentum=2", "scheduler.warmup_steps=100", "model=vit model.patch=5"):
        out = work / "nonsense" / re.sub(r"\W+", "_", override)
        yield f"`run {override}`", run(work, "run", *TINY, *override.split(), f"hydra.run.dir={out}"), \
            f"run dir made: {out.exists()}"
    code = run(work, "analyze", "signal", f"run_dir={one}", "analyze.batch_size=0", f"hydra.run.dir={work / 'an'}")
    yield "`analyze signal run_dir=<run> analyze.batch_size=0`", code, ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=None, help="scratch directory (default: a new temporary one)")
    work = parser.parse_args().work or Path(tempfile.mkdtemp(prefix="residual_lab_reliability_"))
    work.mkdir(parents=True, exist_ok=True)
    print("| input | exit | traceback | last line printed | records afterwards |\n|---|---|---|---|---|")
    for what, result, after in cases(work.resolve()):
        code, traceback, last = result if result else ("", "", "")
        last = last.replace("|", "\\|")
        print(f"| {what} | {code} | {'yes' if traceback else ('no' if result else '')} | `{last}` | {after} |", flush=True)


if __name__ == "__main__":
    main()
