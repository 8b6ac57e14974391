"""Measure why residual nets train: one command per measurement of :mod:`residual_lab.probes`.

    python -m residual_lab.analyze signal depth=110 shortcut=none norm=none
    python -m residual_lab.analyze signal -m depth=20,56,110 shortcut=none,identity norm=batch,none
    python -m residual_lab.analyze lesion run_dir=<a finished run> analyze.images=2000
    python -m residual_lab.analyze shatter analyze.depths=[1,8,24,50]
    python -m residual_lab.analyze hessian depth=56 shortcut=none
    python -m residual_lab.analyze jacobian -m depth=20,56 shortcut=none,identity norm=batch,none
    python -m residual_lab.analyze gradient_noise run_dir=<a finished run>

Without an analysis name (or with a misspelt one) it lists the analyses, one line each, and
exits with status 2.

The config is the run config (conf/config.yaml: depth, shortcut, block, norm, model.init,
data ... compose exactly as for ``residual_lab.run``) plus the ``analyze`` node of
conf/analyze/<name>.yaml. With ``run_dir=<dir>`` the net is that run's, rebuilt from its
``.hydra/config.yaml`` and loaded strictly from ``checkpoints/last.ckpt`` (else the newest
``*.ckpt``); data is the run's too, unless ``data``/``data.*`` overrides are given. Without
it the net is freshly initialised with ``seed``.

Every analysis writes into its own Hydra output directory
(``logs/analyze/<name>/<date>/<time>_<label>``, label = run name or ``trained_<run dir name>``):

- ``<name>.json``: ``{"analysis": name, "meta": {...}, "result": {...}}``. ``meta`` holds the
  net's run name and config fields (depth, shortcut, block, width, norm, init, seed, data), ``params``,
  ``trained``, ``max_steps`` (the trained run's budget), ``run_dir``, ``checkpoint``, the ``options`` (the ``analyze`` node),
  ``device``, ``torch``, ``wall_time_s``, ``cpu_time_s`` (this process' CPU time: on a
  shared machine the better measure of cost); ``result`` is the probe's, schema in its module
  docstring (:mod:`residual_lab.probes.signal` ...).
- ``<name>_<figure>.png`` and ``tensorboard/`` (the same figures and the probe's series).
"""

from __future__ import annotations

import logging
import platform
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from residual_lab.console import quiet_library_noise
from residual_lab.conf_dir import hydra_config_dir
from residual_lab.errors import UserFacingError, entry_point, single_run_job
from residual_lab.io import atomic_write, write_json
from residual_lab.probes import DESCRIPTIONS, PROBES
from residual_lab.resolvers import analysis_label
from residual_lab.validation import check_checkpoint_matches, validate_config

log = logging.getLogger(__name__)




def find_checkpoint(run_dir: Path) -> Path:
    """``checkpoints/last.ckpt`` (the final weights), else the newest ``*.ckpt`` there."""
    last = run_dir / "checkpoints" / "last.ckpt"
    if last.exists():
        return last
    found = sorted((run_dir / "checkpoints").glob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise UserFacingError(f"run_dir={run_dir}: no checkpoint in {run_dir / 'checkpoints'}")
    return found[-1]


def load_net(run_dir: str | Path, device: str = "cpu") -> tuple[torch.nn.Module, DictConfig, Path]:
    """A trained run's net (strict load of the Lightning checkpoint's ``net.*`` keys), its
    config and the checkpoint's path."""
    run_dir = Path(run_dir).expanduser().resolve()
    saved = run_dir / ".hydra" / "config.yaml"
    if not saved.exists():
        raise UserFacingError(f"run_dir={run_dir}: no .hydra/config.yaml there; point run_dir at a "
                              f"run directory (it holds summary.json, checkpoints/ and .hydra/)")
    run_cfg = OmegaConf.load(saved)
    net = instantiate(run_cfg.model)
    ckpt = find_checkpoint(run_dir)
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    prefix = "net._orig_mod." if any(k.startswith("net._orig_mod.") for k in state) else "net."
    if prefix == "net.":  # names the keys that differ, not Lightning's wall of them
        check_checkpoint_matches(torch.nn.ModuleDict({"net": net}), ckpt)
    state = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise UserFacingError(f"checkpoint {ckpt} does not match the net of its run's config: "
                              f"{str(err).splitlines()[0]}") from None
    return net.to(device), run_cfg, ckpt


def _data_node(cfg: DictConfig, run_cfg: DictConfig | None) -> DictConfig:
    """The run's data config, unless the command line overrides data (then the composed one)."""
    if run_cfg is None:
        return cfg.data
    try:
        overrides = HydraConfig.get().overrides.task
    except ValueError:  # called outside a Hydra app (tests): no command line
        overrides = []
    if any(o.lstrip("+~").split("=")[0].split(".")[0] == "data" for o in overrides):
        return cfg.data
    return run_cfg.data


def _meta(cfg: DictConfig, net: torch.nn.Module) -> dict[str, Any]:
    return {"run_name": str(cfg.run_name), "depth": cfg.depth, "shortcut": cfg.shortcut, "block": cfg.block, "width": cfg.width,
            "norm": cfg.norm, "init": cfg.model.get("init"), "seed": cfg.seed,
            "data": cfg.data.source._target_.rsplit(".", 1)[-1], "data_root": cfg.data.get("root"),
            "params": sum(p.numel() for p in net.parameters())}


def save_png(fig, path: Path, dpi: int = 90) -> Path:
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return atomic_write(path, lambda f: f.write(buf.getvalue()), mode="wb")


def analyze(cfg: DictConfig) -> dict[str, Any]:
    """Build or load the net, run the probe ``cfg.analyze.name``, write JSON, PNGs, TensorBoard."""
    name = cfg.analyze.name
    if name not in PROBES:
        raise UserFacingError(f"unknown analysis {name!r}; valid: {', '.join(PROBES)}")
    probe = PROBES[name]
    validate_config(cfg, nodes={"analyze": probe.Options})  # analyze.batch_size=0 measured nothing: NaNs
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.get("torch_threads"):
        torch.set_num_threads(int(cfg.torch_threads))
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    start, cpu_start = time.perf_counter(), time.process_time()
    device = cfg.get("device", "cpu")
    run_cfg, ckpt = None, None
    if cfg.get("run_dir"):
        net, run_cfg, ckpt = load_net(cfg.run_dir, device)
    else:
        try:
            net = instantiate(cfg.model).to(device)
        except Exception as err:  # bad depth/init...: the target's ValueError names the choices
            cause = err.__cause__ if err.__cause__ is not None else err
            if isinstance(cause, ValueError):
                raise UserFacingError(str(cause)) from None
            raise
    missing = [m for m in getattr(probe, "REQUIRES", ()) if not hasattr(net, m)]
    if missing:
        raise UserFacingError(f"analyze {name} needs the net's {', '.join(m + '()' for m in missing)}, which "
                              f"residual_lab's own models have and {type(net).__module__}.{type(net).__qualname__} "
                              f"(model=external) has not; the analyses that take any net: "
                              f"{', '.join(n for n, p in PROBES.items() if not getattr(p, 'REQUIRES', ()))}")
    datamodule = instantiate(_data_node(cfg, run_cfg))
    trained = run_cfg is not None
    result = probe.analyze(net, datamodule, cfg.analyze, trained)
    meta = {**_meta(run_cfg if trained else cfg, net), "trained": trained,
            # how long the weights trained: what tells a 1500-step run's record from a 3000-step one's
            "max_steps": int(run_cfg.trainer.max_steps) if trained else None,
            "run_dir": str(Path(cfg.run_dir).resolve()) if trained else None,
            "checkpoint": str(ckpt) if ckpt else None,
            "options": OmegaConf.to_container(cfg.analyze, resolve=True), "device": str(device),
            "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(), "wall_time_s": time.perf_counter() - start,
            "cpu_time_s": time.process_time() - cpu_start}
    record = {"analysis": name, "meta": meta, "result": result}
    write_json(out / f"{name}.json", record)

    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(out / "tensorboard"))
    try:
        for tag, values in probe.scalars(result).items():
            for step, v in enumerate(values):
                if v is not None:
                    writer.add_scalar(tag, float(v), step)
        for key, fig in probe.figures(result).items():
            save_png(fig, out / f"{name}_{key}.png")
            writer.add_figure(f"{name}/{key}", fig)
    finally:
        writer.close()
    log.info("%s of %s: wrote %s", name, analysis_label(cfg.get("run_dir"), cfg.run_name), out / f"{name}.json")
    return record


@hydra.main(version_base="1.3", config_path=hydra_config_dir(), config_name="analyze")
@single_run_job
def _main(cfg: DictConfig) -> None:
    analyze(cfg)


#: Hydra's flags that take a value (``--cfg job``): that value is not the analysis' name.
_VALUED_FLAGS = {"-c", "--cfg", "-p", "--package", "-cp", "--config-path", "-cn", "--config-name",
                 "-cd", "--config-dir", "--info", "--experimental-rerun"}


#: Hydra's flags that print and exit: they need no analysis named (``analyze --help``).
_INFO_FLAGS = {"-h", "--help", "--hydra-help", "--info", "-i", "-c", "--cfg", "--shell-completion", "-sc"}


def usage(problem: str) -> str:
    """``problem``, then how to call the command and every analysis with its one-line description."""
    width = max(map(len, PROBES))
    lines = [f"{problem}; usage: python -m residual_lab.analyze <analysis> [overrides], analyses:"]
    lines += [f"  {name:<{width}}  {DESCRIPTIONS[name]}" for name in PROBES]
    return "\n".join(lines)


def translate_argv(argv: list[str]) -> list[str]:
    """``analyze signal -m depth=56`` -> ``-m depth=56 analyze=signal``: the first bare word
    names the probe; it goes last, so Hydra sees its overrides in one run of positionals.

    Raises a :class:`UserFacingError` listing the analyses when the word is not one, or when
    no analysis is named at all (no bare word, no ``analyze=`` override, no help flag).
    """
    for i, arg in enumerate(argv):
        if arg.startswith("-") or "=" in arg or (i > 0 and argv[i - 1] in _VALUED_FLAGS):
            continue
        if arg not in PROBES:
            raise UserFacingError(usage(f"unknown analysis {arg!r}"))
        return [*argv[:i], *argv[i + 1:], f"analyze={arg}"]
    if not any(a.startswith("analyze=") or a in _INFO_FLAGS for a in argv):
        raise UserFacingError(usage("no analysis named"))
    return argv


@entry_point
def main() -> None:
    """``python -m residual_lab.analyze <analysis> [overrides]``: with no or a misspelt analysis,
    the list of analyses (exit code 2); bad input and unwritable outputs end in one sentence and
    exit code 2 (:func:`residual_lab.errors.entry_point`)."""
    try:
        sys.argv = [sys.argv[0], *translate_argv(sys.argv[1:])]
    except UserFacingError as err:
        print(f"residual_lab.analyze: {err}", file=sys.stderr)
        sys.exit(2)
    quiet_library_noise()
    _main()


if __name__ == "__main__":
    main()
